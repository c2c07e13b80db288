// Replay of the key log at open [cache_key.c: cache_replay].
//
// Walks the ksets from key_tail, applying keys in log order through the same overlap
// resolution as live writes, so newer keys win. Unlike v6.18 every step is bounded
// (dm-pcache-format.md 9.4, 9.5): kset size and key bounds against the data area, key_num,
// LAST hops (at most n_segs, never revisiting a kset segment), and the total number of ksets.
// The first position without a complete, CRC-valid kset ends the log: that is the normal end
// marker, or a kset torn by a crash while it was being written. A log that ends before
// dirty_tail was reached is corrupt in the middle (dirty_tail only moves past durable ksets).
#pragma once

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::replay() {
    std::lock_guard seg_guard(seg_mutex_);  // no other thread runs yet; keeps the invariants simple
    LogPos pos = key_tail_.pos;
    std::vector<bool> kset_segs(n_segs_, false);
    kset_segs[pos.seg] = true;
    if (!seg_used_[pos.seg]) {
        seg_used_[pos.seg] = true;
        ++segs_used_;
    }
    bool dirty_tail_seen = false;
    std::uint64_t ksets = 0, hops = 0;
    const std::uint64_t ksets_max =
        std::uint64_t(n_segs_) * (seg_data_bytes() / format::kset_bytes(1) + 1);
    std::vector<std::byte> buf;
    for (;;) {
        if (pos == dirty_tail_.pos) dirty_tail_seen = true;
#ifdef PCACHE_MUTANT_M11  // seeded bug: no bound on the kset chain walk
        (void)++ksets, (void)ksets_max;
#else
        if (++ksets > ksets_max)
            return {Errc::corrupt, "replay: more ksets than the cache can hold"};
#endif
        format::KsetView v;
        PCACHE_TRY(decode_kset_at(pos, buf, v).with_context("replay"));
#ifdef PCACHE_MUTANT_M16  // seeded bug: a torn last kset taken for corruption of the whole log
        if (v.kind == format::KsetKind::end && v.end_reason.rfind("CRC", 0) == 0)
            return {Errc::corrupt, "replay: kset with a bad CRC: " + v.end_reason};
#endif
        if (v.kind == format::KsetKind::end) break;
        if (v.kind == format::KsetKind::last) {
            const std::uint32_t next = v.next_cache_seg_id();
#ifdef PCACHE_MUTANT_M11
            if ((void)++hops, false)
#else
            if (++hops > n_segs_ || kset_segs[next])
#endif
                return {Errc::corrupt, "replay: LAST kset at " + std::to_string(pos.seg) + ":" +
                                           std::to_string(pos.off) +
                                           " leads back to kset segment " + std::to_string(next) +
                                           " (cycle in the kset chain)"};
            kset_segs[next] = true;
            if (!seg_used_[next]) {
                seg_used_[next] = true;
                ++segs_used_;
            }
            pos = LogPos{next, 0};
            continue;
        }
        const std::uint64_t kset_addr = data_addr(pos.seg, pos.off);
        // Every writer keeps room for a LAST kset after a normal one (5.5). Accepting a kset
        // that leaves less would put key_head there, and the next segment switch would write
        // its LAST kset past the data area, over the next segment's segment_info.
        if (pos.off + v.size_bytes() + format::kKsetHeaderBytes > seg_data_bytes())
            return {Errc::corrupt, "replay: kset at device offset " + std::to_string(kset_addr) +
                                       " (" + std::to_string(v.size_bytes()) +
                                       " B) leaves no room for a LAST kset before "
                                       "the end of the segment's data area"};
        for (std::uint32_t i = 0; i < v.key_num(); ++i) {
            const std::uint64_t where = kset_addr + format::kset_bytes(i);
            const auto k = v.key(i);
            PCACHE_TRY(replay_key(k, where, dirty_tail_seen).with_context("replay"));
            if (dirty_tail_seen && !(k.flags & format::kKeyFlagClean)) dirty_bytes_ += k.len;
        }
        counters_.replay_ksets += 1;
        if (opts_.replay_progress && counters_.replay_ksets % 256 == 0)
            opts_.replay_progress(counters_.replay_ksets, counters_.replay_keys);
        pos = log_pos_after(pos, v);
    }
    if (!dirty_tail_seen)
        return {Errc::corrupt, "replay: the key log ends at " + std::to_string(pos.seg) + ":" +
                                   std::to_string(pos.off) + " before reaching dirty_tail " +
                                   std::to_string(dirty_tail_.pos.seg) + ":" +
                                   std::to_string(dirty_tail_.pos.off) +
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
#ifndef PCACHE_MUTANT_M10
    PCACHE_TRY(format::validate_key(k, n_segs_, seg_data_bytes(), where));
    if (k.off + k.len > backing_bytes_)
        return {Errc::corrupt, "key.off at device offset " + std::to_string(where) + ": [" +
                                   std::to_string(k.off) + ", +" + std::to_string(k.len) +
                                   ") is beyond the backing device (" +
                                   std::to_string(backing_bytes_) + " B)"};
#endif
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
#ifndef PCACHE_MUTANT_M22  // seeded bug: a stale key skipped without punching its range
        const CacheKey hole{k.off,           k.len,     k.flags, k.cache_seg_id,
                            k.cache_seg_off, k.seg_gen, 0,       true};
        Subtree& st = subtree_for(k.off);
        st.insert(
            hole, [this](const CacheKey& e) { return key_is_stale(e); },
            [this](const CacheKey& whole, CacheKey& piece) { fix_piece_crc(whole, piece); });
        st.erase_exact(hole);
#endif
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
