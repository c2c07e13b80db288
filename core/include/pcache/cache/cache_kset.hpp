// Kset buffers and the key log [cache_key.c].
//
// Keys are buffered in their writer's lane's kset buffer and written as one kset when the
// buffer holds 128 keys, on FUA, on FLUSH, on flush_ksets(), on close, and when another lane
// overwrites one of its keys (the cross-lane rule, docs/design.md "Lanes"). Closing a kset
// (dm-pcache-format.md 5.5) keeps room for a LAST kset, switches to a new kset segment when
// needed, and writes the kset followed by a 24-byte end marker. pcache fences the end marker
// before the kset (and the new segment's marker before the LAST kset): the kernel's single
// fence lets a stale kset from an earlier use of the segment surface after a crash (quirk 11).
#pragma once

#include <algorithm>
#include <array>

#include <boost/container/small_vector.hpp>

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::kset_close_locked(Lane& kb) {
    if (kb.key_num == 0) return {};
    const std::uint64_t size = format::kset_bytes(kb.key_num);
    const std::array<std::byte, format::kKsetHeaderBytes> zeros{};
    std::lock_guard g(key_head_mutex_);
    for (int hop = 0; seg_data_bytes() - key_head_.off < size + format::kKsetHeaderBytes; ++hop) {
        assert(hop == 0);  // a fresh segment always has room for the largest kset
        // M35: every attempt takes a fresh segment; one taken by a failed attempt is lost.
        if (log_next_seg_ == kNoSeg || mutant(35)) {
            std::lock_guard s(seg_mutex_);
            // Never busy while the reserve holds (log_capacity >= open ksets, this one open).
            auto seg = get_free_segment_locked();
            if (!seg.ok()) return seg.status().with_context("closing a kset (key-log reserve)");
            log_next_seg_ = *seg;
        }
        // Kept in log_next_seg_ until linked: a failure below leaves it there for the retry
        // (zeroing it and writing the link again are idempotent), never out of the pool unused.
        const std::uint32_t next = log_next_seg_;
        const auto last = format::to_bytes(format::make_last_kset(next));
        if constexpr (mutant(3)) {  // M3: the chain link is durable before the new segment's header
            PCACHE_TRY(pmem_.write(data_addr(key_head_.seg, key_head_.off), last, kPmemFlushCache));
            PCACHE_TRY(pmem_.drain());
        }
        PCACHE_TRY(pmem_.write(data_addr(next, 0), zeros, kPmemFlushCache));
        PCACHE_TRY(pmem_.drain());
        if constexpr (!mutant(3)) {
            PCACHE_TRY(pmem_.write(data_addr(key_head_.seg, key_head_.off), last, kPmemFlushCache));
            PCACHE_TRY(pmem_.drain());
        }
        key_head_ = LogPos{next, 0};
        log_next_seg_ = kNoSeg;
        std::lock_guard s(seg_mutex_);
        set_log_room_locked(key_head_);
    }
    format::KsetHeader h{0, kb.key_num, 0, 0};
    std::memcpy(kb.image.data(), &h, sizeof h);
    format::seal_kset(kb.image);
    const std::uint64_t at = data_addr(key_head_.seg, key_head_.off);
    PCACHE_TRY(pmem_.write(at + size, zeros, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    const auto kset = std::span<const std::byte>(kb.image).first(size);
    if constexpr (mutant(2)) {  // M2: kset flushed (clwb) but not fenced before FLUSH returns
        PCACHE_TRY(pmem_.write(at, kset, kPmemNoDrain));
    } else if constexpr (mutant(14)) {  // M14: non-temporal kset copy, no drain before publishing
        PCACHE_TRY(pmem_.write(at, kset, kPmemFlushCache));
    } else if constexpr (mutant(15)) {  // M15: CRC word stored after the flush, counted as covered
        std::vector<std::byte> unsealed(kset.begin(), kset.end());
        std::memset(unsealed.data(), 0, 4);
        PCACHE_TRY(pmem_.write(at, unsealed, kPmemNoDrain));                      // copy + clwb
        PCACHE_TRY(pmem_.write(at, kset.first(8), kPmemNoFlush | kPmemNoDrain));  // after the clwb
        PCACHE_TRY(pmem_.drain());
    } else {
        PCACHE_TRY(pmem_.write(at, kset, kPmemFlushCache));
        PCACHE_TRY(pmem_.drain());
    }
    key_head_.off += static_cast<std::uint32_t>(size);
    // The buffer's dirty bytes join the log's before writeback can see the kset (key_head_
    // is read under key_head_mutex_, held here); then the lane's share drops (release: a
    // reader of dirty_bytes() that sees 0 there sees them in dirty_bytes_).
    dirty_bytes_.fetch_add(kb.dirty_open.load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
    kb.dirty_open.store(0, std::memory_order_release);
    std::memset(kb.image.data(), 0, format::kKsetHeaderBytes);
    kb.key_num = 0;
    kb.epoch.fetch_add(1, std::memory_order_release);  // its keys are in the log now
    {
        std::lock_guard s(seg_mutex_);
        set_log_room_locked(key_head_);
        assert(open_ksets_ > 0);
        --open_ksets_;
    }
    count(kb, &CacheCounters::ksets_written);
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::append_key_locked(Lane& kb, const CacheKey& key) {
    PCACHE_VERIFY_FATAL(kb.key_num < format::kKsetKeysMax,  // would write past the kset image
                        "kset buffer already holds " + std::to_string(kb.key_num) + " keys");
    const format::KeyOnMedia k{key.off,
                               key.len,
                               key.flags,
                               key.seg,
                               key.seg_off,
                               key.gen,
                               opts_.data_crc ? key.data_crc : 0u,
                               0};
    std::memcpy(kb.image.data() + format::kset_bytes(kb.key_num), &k, sizeof k);
    ++kb.key_num;
    if (!(key.flags & format::kKeyFlagClean))  // the lane's own line; one writer (kb.mutex)
        kb.dirty_open.store(kb.dirty_open.load(std::memory_order_relaxed) + key.len,
                            std::memory_order_relaxed);
}

// The cross-lane rule (docs/design.md "Lanes"), under the subtree lock, before a key of lane
// `lane` covering [off, end) is appended: every other lane whose open kset buffer holds a key
// the new one overlaps is closed first, so those keys come before the new one in the log.
// Replay and writeback apply the log in order: newer data always wins over older.
//
// The subtree's lane marks filter the walk: when no other lane marked in it is still open, no
// other lane's open buffer holds any key of the subtree and there is nothing to walk (the
// common case: one CPU writes a region). `mark` returns the slot this lane's mark takes after
// the append: its own, or one whose lane has closed since; with every slot held by another
// open lane, the lane of slot 0 is closed to free it (an early close, as the rule's).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::close_other_lanes(CacheSubtree& st, std::uint32_t lane,
                                             std::uint64_t off, std::uint64_t end,
                                             std::size_t& mark) {
    mark = kLaneMarks;
    if (lanes_.size() == 1) return {};
    const bool others_open =
        std::any_of(st.lane_marks.begin(), st.lane_marks.end(),
                    [&](const LaneMark& m) { return m.lane != lane && lane_still_open(m); });
    if (others_open) {
        boost::container::small_vector<std::pair<std::uint32_t, std::uint8_t>, 4> open;
        st.for_each_overlap(
            off, end, [this](const CacheKey& k) { return key_is_stale(k); },
            [&](const CacheKey& k) {
                const std::pair<std::uint32_t, std::uint8_t> at{k.lane, k.lane_epoch};
                if (k.lane != lane && key_buffered_open(k) &&
                    std::find(open.begin(), open.end(), at) == open.end())
                    open.push_back(at);
            });
        for (const auto& [other, epoch] : open) {
            if constexpr (mutant(32))
                break;  // M32: no cross-lane close (older data can replay last)
            PCACHE_TRY(close_lane_at(other, lane, epoch, UINT8_MAX));
        }
    }
    // This lane's slot after the append: its own, else the first whose lane has closed since.
    for (std::size_t i = 0; i < kLaneMarks && mark == kLaneMarks; ++i)
        if (st.lane_marks[i].lane == lane) mark = i;
    for (std::size_t i = 0; i < kLaneMarks && mark == kLaneMarks; ++i)
        if (!lane_still_open(st.lane_marks[i])) mark = i;
    if (mark == kLaneMarks) {  // every slot held by another open lane: close slot 0's lane
        mark = 0;
        if constexpr (mutant(33)) return {};  // M33: that lane's keys stay open, unmarked
        const LaneMark victim = st.lane_marks[0];
        PCACHE_TRY(close_lane_at(victim.lane, lane, victim.epoch, UINT32_MAX));
    }
    return {};
}

// Closes lane `other`'s buffer for lane `lane`'s write if the buffer is still at `epoch` (a
// key's 8-bit lane_epoch with mask UINT8_MAX: a wrapped epoch costs an early close, never a
// missed one; a lane mark's whole epoch with UINT32_MAX).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::close_lane_at(std::uint32_t other, std::uint32_t lane,
                                         std::uint32_t epoch, std::uint32_t mask) {
    Lane& ln = lanes_[other];
    std::lock_guard g(ln.mutex);
    // Keys of this subtree enter a buffer only under the subtree lock, held here: if the
    // epoch moved, the buffer (with those keys) was closed meanwhile.
    if ((ln.epoch.load(std::memory_order_relaxed) & mask) != epoch || ln.key_num == 0) return {};
    PCACHE_TRY(kset_close_locked(ln));
    count(lanes_[lane], &CacheCounters::cross_lane_closes);
    return {};
}

// Under the subtree lock: the cross-lane rule, then in the lane (its lock only): make room in
// its kset buffer and take a kset of the reserve (the only steps that can fail, before anything
// of this key changes: a busy write leaves the index and every buffer's keys as they were; the
// rule may have logged other lanes' keys early, which only makes older writes durable sooner),
// append, close if full or forced, and mark the subtree with the lane's epoch. Then, outside
// the lane lock, insert into the index. A failed forced close leaves the key buffered (valid,
// just not yet durable) and in the index, and reports the error. `best_effort` (read-miss
// fills): no close is forced.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::insert_and_append(CacheSubtree& st, std::uint32_t lane, CacheKey key,
                                             bool force_close, bool best_effort, bool& appended) {
    appended = false;
    std::size_t mark = kLaneMarks;
    PCACHE_TRY(close_other_lanes(st, lane, key.off, key.end(), mark));
    Status closed;
    {
        Lane& ln = lanes_[lane];
        std::lock_guard g(ln.mutex);
        if (ln.key_num == format::kKsetKeysMax) PCACHE_TRY(kset_close_locked(ln));
        PCACHE_TRY(open_kset_locked(ln));  // busy here changes nothing
        const std::uint32_t epoch = ln.epoch.load(std::memory_order_relaxed);
        key.lane = static_cast<std::uint16_t>(lane);
        key.lane_epoch = static_cast<std::uint8_t>(epoch);
        append_key_locked(ln, key);
        appended = true;
        if (mark != kLaneMarks) st.lane_marks[mark] = LaneMark{lane, epoch};
        if (ln.key_num == format::kKsetKeysMax || (force_close && !best_effort))
            closed = kset_close_locked(ln);
    }
    // After the append (close() clears the flag before it closes the buffers: a close that
    // missed this key leaves the flag set, here or by the writer that set it since).
    mark_needs_close();
    if (!best_effort) ++st.writes;  // a read miss in flight must not fill over this key
    st.insert(
        key, [this](const CacheKey& k) { return key_is_stale(k); },
        [this](const CacheKey& whole, CacheKey& piece) { fix_piece_crc(whole, piece); });
    st.clear_poison(key.off, key.end());  // newer data replaces data lost in writeback
    return closed;
}

// A key cut by a newer write keeps a CRC of exactly its remaining bytes: the old bytes are
// verified first, so a piece of corrupt data never gets a fresh, matching CRC.
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::fix_piece_crc(const CacheKey& whole, CacheKey& piece) {
    if (!opts_.data_crc || whole.crc_bad) return;
    std::shared_lock rl(segs_[whole.seg].read_mutex);
    if (key_is_stale(whole)) return;  // so is the piece: every walk drops it
    std::vector<std::byte> buf(whole.len);
    if (!pmem_.read(data_addr(whole.seg, whole.seg_off), buf).ok() ||
        crc::kcrc(buf.data(), buf.size()) != whole.data_crc) {
        piece.crc_bad = true;
        return;
    }
    piece.data_crc = crc::kcrc(buf.data() + (piece.off - whole.off), piece.len);
}

}  // namespace pcache
