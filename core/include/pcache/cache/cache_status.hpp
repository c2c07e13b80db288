// Status line, messages, counters and the invariant checker [dm_pcache.c].
#pragma once

#include <cctype>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
LogPos Cache<Pmem, Block>::key_head() const {
    std::lock_guard g(key_head_mutex_);
    return key_head_;
}
template <PmemDevice Pmem, BlockDevice Block>
LogPos Cache<Pmem, Block>::dirty_tail() const {
    std::lock_guard g(tail_mutex_);
    return dirty_tail_.pos;
}
template <PmemDevice Pmem, BlockDevice Block>
LogPos Cache<Pmem, Block>::key_tail() const {
    std::lock_guard g(tail_mutex_);
    return key_tail_.pos;
}
template <PmemDevice Pmem, BlockDevice Block>
std::uint32_t Cache<Pmem, Block>::segs_used() const {
    std::lock_guard g(seg_mutex_);
    return segs_used_;
}
template <PmemDevice Pmem, BlockDevice Block>
CacheCounters Cache<Pmem, Block>::counters() const {
    // Every counter is a uint64_t updated by relaxed atomic adds (count()) in one of the shards:
    // the background work's (counters_) and each lane's (writes and reads). Each is loaded so and
    // added into the same place of the sum.
    CacheCounters c;
    auto add = [&c](const CacheCounters& shard) {
        [[maybe_unused]] std::size_t fields = 0;
        for_each_counter(shard, [&](const char*, const std::uint64_t& field) {
            const auto at = static_cast<std::size_t>(reinterpret_cast<const std::byte*>(&field) -
                                                     reinterpret_cast<const std::byte*>(&shard));
            const std::uint64_t v =
                std::atomic_ref<std::uint64_t>(const_cast<std::uint64_t&>(field))
                    .load(std::memory_order_relaxed);
            std::uint64_t sum;
            std::memcpy(&sum, reinterpret_cast<const std::byte*>(&c) + at, sizeof sum);
            sum += v;
            std::memcpy(reinterpret_cast<std::byte*>(&c) + at, &sum, sizeof sum);
            ++fields;
        });
        assert(fields * sizeof(std::uint64_t) == sizeof(CacheCounters));  // every counter listed
    };
    add(counters_);
    for (const Lane& ln : lanes_) add(ln.counters);
    return c;
}
template <PmemDevice Pmem, BlockDevice Block>
bool Cache<Pmem, Block>::is_clean() const {
    for (const Lane& kb : lanes_) {
        std::lock_guard g(kb.mutex);
        if (kb.key_num != 0) return false;
    }
    return dirty_tail() == key_head();
}

// "%x %u %u %u %u %x %u:%u %u:%u %u:%u": sb flags, seg_num, cache segments, segments used,
// gc_percent, cache_info flags, key_head, dirty_tail, key_tail (dm-pcache-format.md 10.2).
template <PmemDevice Pmem, BlockDevice Block>
std::string Cache<Pmem, Block>::status_line() const {
    std::uint32_t flags;
    {
        std::lock_guard g(info_mutex_);
        flags = info_.flags;
    }
    const LogPos kh = key_head(), dt = dirty_tail(), kt = key_tail();
    char buf[160];
    std::snprintf(buf, sizeof buf, "%x %u %u %u %u %x %u:%u %u:%u %u:%u", sb_.flags, sb_.seg_num,
                  n_segs_, segs_used(), format::gc_percent_of(flags), flags, kh.seg, kh.off, dt.seg,
                  dt.off, kt.seg, kt.off);
    return buf;
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::set_gc_percent(std::uint32_t percent) {
    PCACHE_TRY(refuse_read_only("set_gc_percent"));
    if (percent > format::kGcPercentMax)
        return {Errc::invalid_argument,
                "gc_percent " + std::to_string(percent) + ": expected 0..90"};
    {
        std::lock_guard g(info_mutex_);
        info_.flags = (info_.flags & ~format::kCacheFlagGcPercentMask) |
                      (percent << format::kCacheFlagGcPercentShift);
    }
    return write_cache_info();
}

// The kernel's only message: "gc_percent <0..90>" (keyword case-insensitive, decimal value).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::message(const std::string& text) {
    std::istringstream in(text);
    std::string key, value, extra;
    in >> key >> value;
    if (key.empty() || value.empty() || (in >> extra))
        return {Errc::invalid_argument,
                "message \"" + text + "\": expected \"gc_percent <0..90>\""};
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (key != "gc_percent")
        return {Errc::invalid_argument,
                "unknown message \"" + key + "\": the only message is gc_percent"};
    if (value.size() > 9 || value.find_first_not_of("0123456789") != std::string::npos)
        return {Errc::invalid_argument,
                "gc_percent \"" + value + "\": expected a decimal number 0..90"};
    return set_gc_percent(static_cast<std::uint32_t>(std::stoul(value)));
}

// Always-on (verify.hpp): a key about to enter the index and the log lies inside the backing
// device, inside one subtree and inside its segment's data area, and is not newer than its
// segment (generations only grow). A few compares: cheap enough for every write.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::verify_key(const CacheKey& k) const {
    const auto what = [&] {
        return "key [" + std::to_string(k.off) + ", +" + std::to_string(k.len) + ") -> segment " +
               std::to_string(k.seg) + "+" + std::to_string(k.seg_off) + " gen " +
               std::to_string(k.gen);
    };
    PCACHE_VERIFY(k.len > 0 && k.off <= backing_bytes_ && k.len <= backing_bytes_ - k.off,
                  what() + " outside the backing device");
    PCACHE_VERIFY(k.off >> format::kSubtreeShift == (k.end() - 1) >> format::kSubtreeShift,
                  what() + " crosses a subtree boundary");
    PCACHE_VERIFY(
        k.seg < n_segs_ && k.seg_off <= seg_data_bytes() && k.len <= seg_data_bytes() - k.seg_off,
        what() + " outside its segment's data area");
    PCACHE_VERIFY(k.gen <= segs_[k.seg].gen.load(std::memory_order_relaxed),
                  what() + " newer than its segment");
    return {};
}

// Whole-structure check for tests (call it with no request in flight): the log walks from
// key_tail through dirty_tail to key_head (format/log_walk.hpp); every key of an unwritten (dirty)
// kset is live in a used segment (GC never reclaims dirty data); every segment's reference count is
// exactly the number of live keys pointing into it (in the log from key_tail and in the kset
// buffers) plus one for the data head; a used segment is referenced, the data head or in the log;
// the index is ordered and non-overlapping with every live key in a used segment; the segment count
// is consistent.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::check_invariants() {
    std::lock_guard wb(writeback_mutex_);
    std::lock_guard gc(gc_mutex_);
    std::vector<std::unique_lock<Mutex>> kset_locks;
    for (Lane& kb : lanes_) kset_locks.emplace_back(kb.mutex);
    const LogPos kt = key_tail(), dt = dirty_tail();
    LogPos kh;
    std::uint32_t log_next = kNoSeg;  // taken for the log by a failed close, not linked yet
    {
        std::lock_guard g(key_head_mutex_);
        kh = key_head_;
        log_next = log_next_seg_;
    }
    std::unique_lock seg_lock(seg_mutex_);
    std::vector<std::uint64_t> refs(n_segs_, 0);
    std::vector<bool> log_seg(n_segs_, false);
    auto count_ref = [&](std::uint32_t seg, std::uint64_t gen) {
        if (seg < n_segs_ && gen == segs_[seg].gen.load()) ++refs[seg];
    };
    const WalkSpec spec{.from = kt, .until = kh, .mark = dt};
    auto walked = walk_log(log_source(), spec, [&](const KsetAt& at) -> Result<WalkStep> {
        log_seg[at.pos.seg] = true;
        for (std::uint32_t i = 0; i < at.view.key_num(); ++i) {
            const auto k = at.view.key(i);
            count_ref(k.cache_seg_id, k.seg_gen);
            if (at.past_mark &&
                (k.cache_seg_id >= n_segs_ || !seg_used_[k.cache_seg_id] ||
                 k.seg_gen != segs_[k.cache_seg_id].gen.load() || segs_[k.cache_seg_id].refs == 0))
                return Status{Errc::corrupt, "dirty key at log position " + at.pos.str() +
                                                 " points into a reclaimed segment " +
                                                 std::to_string(k.cache_seg_id)};
        }
        return WalkStep::next;
    });
    PCACHE_TRY(walked.status());
    log_seg[kh.seg] = true;
    if (log_next != kNoSeg) log_seg[log_next] = true;
    const bool dirty = walked->mark_reached;
    for (const Lane& kb : lanes_)
        for (std::uint32_t i = 0; i < kb.key_num; ++i) {
            const auto k = format::load<format::KeyOnMedia>(kb.image, format::kset_bytes(i));
            count_ref(k.cache_seg_id, k.seg_gen);
        }
    for (const Lane& ln : lanes_)
        if (ln.head_seg != kNoSeg) ++refs[ln.head_seg];
    for (std::uint32_t s = 0; s < n_segs_; ++s) {
        if (segs_[s].refs.load() != refs[s])
            return {Errc::corrupt, "segment " + std::to_string(s) + " holds " +
                                       std::to_string(segs_[s].refs.load()) + " references but " +
                                       std::to_string(refs[s]) +
                                       " live keys and data heads point into it"};
        if (refs[s] > 0 && !seg_used_[s])
            return {Errc::corrupt, "segment " + std::to_string(s) + " is referenced but free"};
        if (seg_used_[s] && refs[s] == 0 && !log_seg[s])
            return {Errc::corrupt, "segment " + std::to_string(s) +
                                       " is in use but holds no live key, no data head and no "
                                       "kset of the log (leaked)"};
    }
    if (!dirty) return {Errc::corrupt, "dirty_tail is not between key_tail and key_head"};
    std::uint32_t used = 0;
    for (std::uint32_t s = 0; s < n_segs_; ++s) used += seg_used_[s] ? 1 : 0;
    if (used != segs_used_)
        return {Errc::corrupt, "segs_used " + std::to_string(segs_used_) + " but " +
                                   std::to_string(used) + " marked"};
    seg_lock.unlock();
    kset_locks.clear();
    for (std::size_t i = 0; i < subtrees_.size(); ++i) {
        Subtree& st = subtrees_[i];
        std::lock_guard g(st.mutex);
        if (!st.check_invariants())
            return {Errc::corrupt, "subtree " + std::to_string(i) + " keys overlap"};
        for (const auto& [off, k] : st.keys()) {
            if (k.off >> format::kSubtreeShift != i)
                return {Errc::corrupt,
                        "key at " + std::to_string(off) + " in subtree " + std::to_string(i)};
            std::lock_guard sg(seg_mutex_);
            if (key_is_stale(k)) continue;
            if (!seg_used_[k.seg] || segs_[k.seg].refs == 0)
                return {Errc::corrupt, "live key at " + std::to_string(off) +
                                           " points into free segment " + std::to_string(k.seg)};
            if (k.seg_off + std::uint64_t(k.len) > seg_data_bytes())
                return {Errc::corrupt, "key at " + std::to_string(off) + " runs past its segment"};
        }
    }
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::IndexStats Cache<Pmem, Block>::index_stats() {
    IndexStats r;
    for (Subtree& st : subtrees_) {
        std::lock_guard g(st.mutex);
        r.keys += st.size();
        r.pool_idle += st.pool_idle();
    }
    r.depot_nodes = Subtree::depot_capacity();
    return r;
}

}  // namespace pcache
