// Replay of the key log at open [cache_key.c: cache_replay].
//
// Walks the ksets from key_tail (format/log_walk.hpp: every step bounded, unlike v6.18),
// applying keys in log order through the same overlap resolution as live writes, so newer keys
// win; every key is checked against the data area and the backing device first. The first
// position without a complete, CRC-valid kset ends the log: that is the normal end marker, or a
// kset torn by a crash while it was being written. A log that ends before dirty_tail was reached
// is corrupt in the middle (dirty_tail only moves past durable ksets).
#pragma once

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::replay() {
    std::lock_guard seg_guard(seg_mutex_);  // no other thread runs yet; keeps the invariants simple
    std::vector<bool> kset_segs(n_segs_, false);
    auto mark_kset_seg = [&](std::uint32_t seg) {
        kset_segs[seg] = true;
        if (!seg_used_[seg]) {
            seg_used_[seg] = true;
            ++segs_used_;
        }
    };
    mark_kset_seg(key_tail_.pos.seg);
    const WalkSpec spec{.from = key_tail_.pos, .mark = dirty_tail_.pos};
    auto walked = walk_log(log_source(), spec, [&](const KsetAt& at) -> Result<WalkStep> {
        const format::KsetView& v = at.view;
        if (v.kind == format::KsetKind::last) {
            mark_kset_seg(at.next.seg);
            return WalkStep::next;
        }
        for (std::uint32_t i = 0; i < v.key_num(); ++i) {
            const std::uint64_t where = at.addr + format::kset_bytes(i);
            const auto k = v.key(i);
            PCACHE_TRY(replay_key(k, where, at.past_mark));
            if (at.past_mark && !(k.flags & format::kKeyFlagClean)) dirty_bytes_ += k.len;
        }
        counters_.replay_ksets += 1;
        if (opts_.replay_progress && counters_.replay_ksets % 256 == 0)
            opts_.replay_progress(counters_.replay_ksets, counters_.replay_keys);
        return WalkStep::next;
    });
    if (!walked.ok()) return walked.status().with_context("replay");
    const LogPos pos = walked->pos;
    // M16: a torn last kset taken for corruption of the whole log
    if (mutant(16) && walked->end_reason.rfind("CRC", 0) == 0)
        return {Errc::corrupt, "replay: kset with a bad CRC: " + walked->end_reason};
    if (!walked->mark_reached)
        return {Errc::corrupt, "replay: the key log ends at " + pos.str() +
                                   " before reaching dirty_tail " + dirty_tail_.pos.str() +
                                   " (a kset in the middle is corrupt)"};
    for (std::uint32_t s = 0; s < n_segs_; ++s) {
        if (kset_segs[s] && segs_[s].refs > 0)
            return {Errc::corrupt, "replay: cache segment " + std::to_string(s) +
                                       " holds both ksets and cached data"};
    }
    key_head_ = pos;
    return {};
}

// One key of a CRC-valid kset: bounds, generation (before the data CRC, quirk 12), then index.
// `dirty_part`: the key lies at or after dirty_tail. Such a key still holds its segment
// reference (GC never passes dirty_tail), so its segment cannot have been invalidated: a stale
// key there means acknowledged data was lost, which is reported, never skipped silently.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::replay_key(const format::KeyOnMedia& k, std::uint64_t where,
                                      bool dirty_part) {
    if constexpr (!mutant(10)) {  // M10: no bounds check on a replayed key
        PCACHE_TRY(format::validate_key(k, n_segs_, seg_data_bytes(), where));
        if (k.off + k.len > backing_bytes_)
            return {Errc::corrupt, "key.off at device offset " + std::to_string(where) + ": [" +
                                       std::to_string(k.off) + ", +" + std::to_string(k.len) +
                                       ") is beyond the backing device (" +
                                       std::to_string(backing_bytes_) + " B)"};
    }
    Segment& s = segs_[k.cache_seg_id];
    const std::uint64_t gen = s.gen.load(std::memory_order_relaxed);
    if (k.seg_gen > gen)
        return {Errc::corrupt, "key.seg_gen at device offset " + std::to_string(where + 24) + ": " +
                                   std::to_string(k.seg_gen) + " is newer than segment " +
                                   std::to_string(k.cache_seg_id) + "'s generation " +
                                   std::to_string(gen)};
    counters_.replay_keys += 1;
    if (k.seg_gen < gen && dirty_part)
        return {Errc::corrupt,
                "key.seg_gen at device offset " + std::to_string(where + 24) +
                    ": key at or after "
                    "dirty_tail is older (" +
                    std::to_string(k.seg_gen) + ") than segment " + std::to_string(k.cache_seg_id) +
                    "'s generation " + std::to_string(gen) +
                    ": its segment was reclaimed while it still held unwritten data"};
    if (k.seg_gen < gen) {  // the segment was invalidated after this key: skip it entirely
        counters_.replay_stale_keys += 1;
        // ... but not what it overwrote. A stale key lies before dirty_tail, so the backing
        // device holds its range at least as new as this key; an older key still in the index
        // for that range (a read-miss fill, or a key in a segment not yet reclaimed) must not
        // come back. GC persists a reclaimed segment's generation before key_tail passes the
        // kset, so a crash in between replays such a kset with some keys stale and older keys
        // live (found by the crash suite: `pcache sim --seed 1 --ops 2000 --crash-at 4252`).
        if constexpr (!mutant(22)) {  // M22: a stale key skipped without punching its range
            const CacheKey hole{k.off,           k.len,     k.flags, k.cache_seg_id,
                                k.cache_seg_off, k.seg_gen, 0,       true};
            Subtree& st = subtree_for(k.off);
            st.insert(
                hole, [this](const CacheKey& e) { return key_is_stale(e); },
                [this](const CacheKey& whole, CacheKey& piece) { fix_piece_crc(whole, piece); });
            st.erase_exact(hole);
        }
        return {};
    }
    if (!seg_used_[k.cache_seg_id]) {
        seg_used_[k.cache_seg_id] = true;
        ++segs_used_;
    }
    s.refs += 1;  // live keys hold a reference; GC drops one per live key it retires
    CacheKey key{k.off,           k.len,     k.flags,    k.cache_seg_id,
                 k.cache_seg_off, k.seg_gen, k.data_crc, false};
    if (opts_.data_crc) {
        std::vector<std::byte> data(k.len);
        Status rs = pmem_.read(data_addr(k.cache_seg_id, k.cache_seg_off), data);
        if (!rs.ok() || crc::kcrc(data.data(), data.size()) != k.data_crc) {
            key.crc_bad = true;  // reads of these bytes fail; other data stays available
            counters_.data_crc_errors += 1;
        }
    }
    subtree_for(k.off).insert(
        key, [this](const CacheKey& e) { return key_is_stale(e); },
        [this](const CacheKey& whole, CacheKey& piece) { fix_piece_crc(whole, piece); });
    return {};
}

}  // namespace pcache
