// Garbage collection [cache_gc.c]: retire the oldest written-back kset, one per step.
//
// GC never passes dirty_tail. Retiring a normal kset drops one reference per live key on its
// data segment (a segment whose count reaches zero is invalidated: generation bumped and
// persisted, then freed), removes the kset's keys from the index (forget_retired_keys), then
// advances and persists key_tail. Leaving a kset segment through
// its LAST kset persists key_tail first and only then frees the segment.
#pragma once

#include "pcache/cache/cache.hpp"

namespace pcache {

// Removes the keys of a retired kset from the index: each key, or the pieces of it a newer
// write left, that still points to exactly its extent (same segment, generation and offsets).
// A newer key over the same range stays, and so does a key of the same segment reused under a
// newer generation. Runs after the references were dropped (a segment may already be
// reclaimed: its keys are stale and any walk drops them too; reads racing this are handled as
// in "Reads under GC", docs/design.md). Each subtree lock is taken while GC holds only
// gc_mutex_, which no writer takes: GC never holds a lock a writer waits for while it waits
// for a subtree lock (lock order, cache.hpp).
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::forget_retired_keys(const format::KsetView& v) {
    for (std::uint32_t i = 0; i < v.key_num(); ++i) {
        const auto m = v.key(i);
        if (m.off + m.len > backing_bytes_) continue;  // never indexed (replay refuses it)
        const CacheKey k{m.off,           m.len,     m.flags, m.cache_seg_id,
                         m.cache_seg_off, m.seg_gen, 0,       false};
        Subtree& st = subtree_for(k.off);
        std::lock_guard g(st.mutex);
        st.erase_pieces_of(k, [this](const CacheKey& e) { return key_is_stale(e); });
    }
}

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::gc_step() {
    if (Status ro = refuse_read_only("gc_step"); !ro.ok()) return {false, ro};
    mark_needs_close();
    std::lock_guard gc(gc_mutex_);
    if (gc_failed_.load()) return {false, {Errc::corrupt, "GC stopped after an earlier error"}};
    LogPos kt, dt;
    {
        std::lock_guard g(tail_mutex_);
        kt = key_tail_.pos;
        dt = dirty_tail_.pos;
    }
    if (kt == dt) return {};
    std::uint32_t percent;
    {
        std::lock_guard g(info_mutex_);
        percent = format::gc_percent_of(info_.flags);
    }
    {
        // Below the gc_percent threshold GC waits, unless the key-log reserve is reached: then
        // data allocation answers busy and only GC can give segments back (on a small cache
        // the threshold may lie above the point where writers are refused).
        std::lock_guard g(seg_mutex_);
        if (segs_used_ < std::uint64_t(n_segs_) * percent / 100 && data_seg_allowed_locked())
            return {};
    }
    // One kset: the oldest, at key_tail.
    StepResult done;
    const WalkSpec spec{.from = kt, .until = dt, .until_name = "dirty_tail"};
    auto walked = walk_log(log_source(), spec, [&](const KsetAt& at) -> Result<WalkStep> {
        done = gc_retire(kt, dt, at.view);
        return WalkStep::stop;
    });
    if (!walked.ok()) return gc_failed(walked.status());
    return done;
}

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::gc_failed(Status s) {
    gc_failed_.store(true);
    return StepResult{false, s.with_context("gc")};
}

// Retires the kset `v` at key_tail `kt` (dirty_tail `dt` is further).
template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::gc_retire(LogPos kt, LogPos dt,
                                                                      const format::KsetView& v) {
    auto fail = [this](Status s) { return gc_failed(std::move(s)); };
    if (v.kind == format::KsetKind::last) {
        if (dt.seg == kt.seg) return {};
        {
            std::lock_guard g(tail_mutex_);
            key_tail_.pos = log_pos_after(kt, v);
            if (Status s = write_tail(key_tail_, format::kKeyTailOffsetBytes); !s.ok())
                return fail(s);
        }
        std::lock_guard sg(seg_mutex_);
        if (seg_used_[kt.seg]) {
            seg_used_[kt.seg] = false;
            --segs_used_;
            publish_room_locked();
        }
        count(&CacheCounters::gc_runs);
        return {true, {}};
    }
    const std::uint64_t kset_addr = data_addr(kt.seg, kt.off);
    for (std::uint32_t i = 0; i < v.key_num(); ++i) {
        const auto k = v.key(i);
        if (Status s = format::validate_key(k, n_segs_, seg_data_bytes(),
                                            kset_addr + format::kset_bytes(i));
            !s.ok())
            return fail(s);
    }
    {
        std::lock_guard sg(seg_mutex_);
        for (std::uint32_t i = 0; i < v.key_num(); ++i) {
            const auto k = v.key(i);
            if (k.seg_gen == segs_[k.cache_seg_id].gen.load(std::memory_order_relaxed))
                seg_put_locked(k.cache_seg_id);
        }
    }
    forget_retired_keys(v);
    {
        std::lock_guard g(tail_mutex_);
        key_tail_.pos = log_pos_after(kt, v);
        if (Status s = write_tail(key_tail_, format::kKeyTailOffsetBytes); !s.ok()) return fail(s);
    }
    count(&CacheCounters::gc_runs);
    count(&CacheCounters::gc_ksets_retired);
    return {true, {}};
}

}  // namespace pcache
