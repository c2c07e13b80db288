// Segments: allocation from the in-memory segment map, reference counts and generations
// [cache_segment.c, segment.c].
//
// Invariants (seg_mutex_ held): seg_used_[s] for every segment holding live log ksets, a data
// head or keys in [key_tail, key_head); refs[s] = keys appended or replayed that point into s,
// plus one while a lane's data head fills it. refs is atomic: a lane takes references on its
// own head segment without seg_mutex_ (the head's reference keeps it above zero), and only the
// decrement to zero takes seg_mutex_ (seg_put). A data segment whose refs fall to zero is
// invalidated: its generation is bumped and persisted *before* it returns to the free pool, so
// every key still pointing into it becomes stale.
#pragma once

#include "pcache/cache/cache.hpp"

namespace pcache {

// Advance-then-write (6.18.y/6.19 discipline).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::write_seg_info(std::uint32_t seg) {
    Segment& s = segs_[seg];
    s.info_index = (s.info_index + 1) % format::kMetaIndexMax;
    format::seal(s.info, static_cast<std::uint8_t>(s.info.header.seq + 1));
    return write_meta(opts_.geometry.segment_offset(s.phys), format::kSegInfoSlotStrideBytes,
                      s.info_index, format::to_bytes(s.info));
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::write_seg_gen_locked(std::uint32_t seg) {
    Segment& s = segs_[seg];
    s.gen_index = (s.gen_index + 1) % format::kMetaIndexMax;
    format::SegGen rec{};
    rec.gen = s.gen.load(std::memory_order_relaxed);
    format::seal(rec, ++s.gen_seq);
    return write_meta(opts_.geometry.segment_offset(s.phys) + format::kSegCtrlOffsetBytes,
                      format::kSegGenSlotStrideBytes, s.gen_index, format::to_bytes(rec));
}

// First free cache segment at or after the hint, wrapping once (get_cache_segment).
template <PmemDevice Pmem, BlockDevice Block>
Result<std::uint32_t> Cache<Pmem, Block>::get_free_segment_locked() {
    for (std::uint32_t i = 0; i < n_segs_; ++i) {
        const std::uint32_t seg = (last_seg_hint_ + i) % n_segs_;
        if (!seg_used_[seg]) {
            seg_used_[seg] = true;
            ++segs_used_;
            publish_room_locked();
            last_seg_hint_ = seg;
            return seg;
        }
    }
    return Status(Errc::busy, "all " + std::to_string(n_segs_) +
                                  " cache segments are in use: retry after writeback and GC");
}

// Drops one reference; the last one invalidates the segment (gen+1 persisted, then freed).
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::seg_put_locked(std::uint32_t seg) {
    PCACHE_VERIFY_FATAL(
        seg < n_segs_ && segs_[seg].refs > 0 && seg_used_[seg],
        "reference dropped on segment " + std::to_string(seg) + " which holds none (or is free)");
    Segment& s = segs_[seg];
    if (s.refs.fetch_sub(1, std::memory_order_acq_rel) > 1) return;
    if constexpr (!mutant(12)) {  // M12: segment reused without bumping its generation
        {
            std::unique_lock rl(s.read_mutex, std::defer_lock);
            if constexpr (!mutant(31)) rl.lock();  // M31: no wait for reads copying out of it
            const std::uint64_t old = s.gen.fetch_add(1, std::memory_order_acq_rel);
            PCACHE_VERIFY_FATAL(old != UINT64_MAX, "segment " + std::to_string(seg) +
                                                       ": generation wraps (never monotonic)");
        }
        if (Status st = write_seg_gen_locked(seg); !st.ok()) {
            // The bump is not durable: keep the segment out of the pool so no key can come back.
            count(&CacheCounters::writeback_errors);
            return;
        }
    }
    seg_used_[seg] = false;
    --segs_used_;
    publish_room_locked();
}

// Drops one reference without seg_mutex_ unless it is the last (then as seg_put_locked). Nobody
// takes a reference on a segment at zero (only a data head does, on its own segment), so a
// count seen above one stays above zero after the decrement.
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::seg_put(std::uint32_t seg) {
    std::atomic<std::uint32_t>& refs = segs_[seg].refs;
    for (std::uint32_t r = refs.load(std::memory_order_relaxed); r > 1;)
        if (refs.compare_exchange_weak(r, r - 1, std::memory_order_acq_rel)) return;
    std::lock_guard g(seg_mutex_);
    seg_put_locked(seg);
}

// Largest ksets that still fit at `head` (room for a LAST kset kept back).
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::set_log_room_locked(LogPos head) {
    const std::uint64_t room =
        seg_data_bytes() - std::min<std::uint64_t>(head.off, seg_data_bytes());
    log_room_ksets_ =
        room < format::kKsetHeaderBytes
            ? 0
            : static_cast<std::uint32_t>((room - format::kKsetHeaderBytes) / format::kKsetBytesMax);
    publish_room_locked();
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::reserve_busy(const char* what) const {
    return {Errc::busy, std::string("cache full: ") + what + " would take the " +
                            std::to_string(log_capacity_locked()) +
                            " kset(s) of room the key log keeps to close every kset buffer (" +
                            std::to_string(n_segs_ - segs_used_) + " of " +
                            std::to_string(n_segs_) +
                            " segments free): retry after writeback and GC"};
}

// Called with kb's lock held before a key is appended to it. A buffer that goes from empty to
// holding keys needs one kset of the reserve (the capacity check keeps capacity >= open ksets).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::open_kset_locked(Lane& kb) {
    if (kb.key_num != 0) return {};
    std::lock_guard g(seg_mutex_);
    if (!mutant(21) && log_capacity_locked() < std::uint64_t(open_ksets_) + 1)  // M21: no reserve
        return reserve_busy("a new kset");
    ++open_ksets_;
    return {};
}

// Space for up to `len` bytes in lane `lane`'s data head; may be shorter at the end of a
// segment. seg_mutex_ is taken only when the head needs a new segment (or lets go of a full
// one whose references are gone).
template <PmemDevice Pmem, BlockDevice Block>
Result<typename Cache<Pmem, Block>::Allocation> Cache<Pmem, Block>::data_alloc(std::uint32_t lane,
                                                                               std::uint32_t len) {
    assert(len > 0);
    Lane& ln = lanes_[lane];
    std::lock_guard g(ln.mutex);
    if (ln.head_seg == kNoSeg) {
        std::lock_guard sg(seg_mutex_);
        // M21: data takes the segments the key log needs to close ksets
        if (!mutant(21) && !data_seg_allowed_locked()) return reserve_busy("data");
        auto seg = get_free_segment_locked();
        if (!seg.ok()) return seg.status();
        ln.head_seg = *seg;
        ln.head_off = 0;
        segs_[ln.head_seg].refs.fetch_add(1, std::memory_order_relaxed);  // the head's own
    }
    PCACHE_VERIFY(ln.head_off < seg_data_bytes(), "data head at " + std::to_string(ln.head_off) +
                                                      " of segment " + std::to_string(ln.head_seg) +
                                                      " is past its data area");
    Segment& s = segs_[ln.head_seg];
    const std::uint64_t remain = seg_data_bytes() - ln.head_off;
    Allocation a{ln.head_seg, ln.head_off,
                 static_cast<std::uint32_t>(std::min<std::uint64_t>(len, remain)),
                 s.gen.load(std::memory_order_relaxed)};
    s.refs.fetch_add(1, std::memory_order_relaxed);  // the key's reference
    ln.head_off += a.len;
    if (ln.head_off == seg_data_bytes()) {  // segment exhausted: the head lets go of it
        const std::uint32_t full = ln.head_seg;
        ln.head_seg = kNoSeg;
        seg_put(full);
    }
    return a;
}

}  // namespace pcache
