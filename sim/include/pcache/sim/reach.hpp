// What a crash campaign reached: the parts of the design its workload actually exercised.
//
// A campaign that never leaves key-log segment 0, never wraps an 8-bit sequence number or never
// splits a write across stripes proves nothing about those paths (issue 14). `ReachObserver`
// watches the engine after every workload step, from what the engine itself reports (key_head,
// key_tail, counters) and from the metadata records it wrote on the simulated pmem (sequence
// numbers), and counts each kind of event. `pcache sim` prints the counts and fails when a kind
// was never reached; the crash suite asserts them per campaign.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "pcache/format/codec.hpp"
#include "pcache/format/geometry.hpp"
#include "pcache/sim/sim_pmem.hpp"

namespace pcache::sim {

struct CampaignReach {
    std::uint64_t seg_switches = 0;     // key_head moved to another segment (one LAST kset each)
    std::uint64_t log_wraps = 0;        // key_head entered a segment that held ksets before
    std::uint64_t gc_runs = 0;          // engine counter gc_runs
    std::uint64_t gc_past_last = 0;     // key_tail left a segment through its LAST kset
    std::uint64_t wb_full_batches = 0;  // writeback steps that wrote the maximum of 32 ksets
    std::uint64_t stripe_splits = 0;    // acknowledged writes crossing a 4 MiB stripe, n_ksets >= 2
    std::uint64_t tail_seq_wraps = 0;   // key_tail / dirty_tail record sequence went past 255
    std::uint64_t gen_seq_wraps = 0;    // a segment's generation record sequence went past 255
    std::uint64_t info_seq_wraps = 0;   // cache_info record sequence went past 255
    std::uint64_t after_recovery_writes = 0;  // acknowledged writes on recovered crash images
    std::uint64_t after_recovery_gc = 0;      // GC runs on recovered crash images
    std::uint64_t after_recovery_wb = 0;      // writeback steps that progressed on them
    std::uint64_t corruption_followups = 0;   // flipped data followed by a cut, writeback, GC
    std::uint64_t cross_lane_closes = 0;  // engine counter: a lane's kset closed by the lane rule

    void add(const CampaignReach& o) {
        seg_switches += o.seg_switches;
        log_wraps += o.log_wraps;
        gc_runs += o.gc_runs;
        gc_past_last += o.gc_past_last;
        wb_full_batches += o.wb_full_batches;
        stripe_splits += o.stripe_splits;
        tail_seq_wraps += o.tail_seq_wraps;
        gen_seq_wraps += o.gen_seq_wraps;
        info_seq_wraps += o.info_seq_wraps;
        after_recovery_writes += o.after_recovery_writes;
        after_recovery_gc += o.after_recovery_gc;
        after_recovery_wb += o.after_recovery_wb;
        corruption_followups += o.corruption_followups;
        cross_lane_closes += o.cross_lane_closes;
    }

    // Calls fn(name, value, required) for each kind in a stable order. `required`: a full
    // campaign (`pcache sim` defaults) must reach it at least once.
    template <class Fn>
    void for_each(Fn&& fn) const {
        fn("segment_switches", seg_switches, true);
        fn("log_wraps", log_wraps, true);
        fn("gc_runs", gc_runs, true);
        fn("gc_past_last_kset", gc_past_last, true);
        fn("writeback_full_batches", wb_full_batches, true);
        fn("stripe_splits", stripe_splits, true);
        fn("tail_seq_wraps", tail_seq_wraps, true);
        fn("gen_seq_wraps", gen_seq_wraps, false);
        fn("cache_info_seq_wraps", info_seq_wraps, false);
        fn("writes_after_recovery", after_recovery_writes, true);
        fn("gc_after_recovery", after_recovery_gc, true);
        fn("writeback_after_recovery", after_recovery_wb, true);
        fn("corruption_followups", corruption_followups, false);
        fn("cross_lane_closes", cross_lane_closes, true);
    }

    std::string to_string() const {
        std::string s;
        for_each([&](const char* name, std::uint64_t v, bool) {
            s += (s.empty() ? "" : " ") + std::string(name) + "=" + std::to_string(v);
        });
        return s;
    }
    // The required kinds never reached, space-separated ("" when all were).
    std::string missing() const {
        std::string s;
        for_each([&](const char* name, std::uint64_t v, bool required) {
            if (required && v == 0) s += (s.empty() ? "" : " ") + std::string(name);
        });
        return s;
    }
};

// Watches one running cache through its public state and the metadata it wrote.
class ReachObserver {
public:
    ReachObserver(std::uint32_t segs, format::Geometry geo) : geo_(geo), gen_seq_(segs, -1) {}

    // After each workload step: key_head / key_tail positions (cache segment ids).
    void observe(std::uint32_t head_seg, std::uint32_t tail_seg, const SimPmem& pmem,
                 CampaignReach& r) {
        if (head_seg != head_seg_) {
            if (head_seg_ != kNone) {
                ++r.seg_switches;
                if (head_seg < log_segs_.size() && log_segs_[head_seg]) ++r.log_wraps;
            }
            if (head_seg >= log_segs_.size()) log_segs_.resize(head_seg + 1, false);
            if (head_seg_ != kNone) log_segs_[head_seg_] = true;
            head_seg_ = head_seg;
        }
        if (tail_seg != tail_seg_) {
            if (tail_seg_ != kNone) ++r.gc_past_last;
            tail_seg_ = tail_seg;
        }
        seqs(pmem, r);
    }

private:
    static constexpr std::uint32_t kNone = UINT32_MAX;

    static void track(int now, int& last, std::uint64_t& wraps) {
        if (now < 0) return;
        if (last >= 0 && now < last) ++wraps;  // sequences only advance: a drop is a wrap
        last = now;
    }
    template <class T>
    static int latest_seq(const SimPmem& pmem, std::uint64_t at, std::uint64_t stride) {
        std::array<std::byte, sizeof(T)> a{}, b{};
        if (!pmem.read(at, a).ok() || !pmem.read(at + stride, b).ok()) return -1;
        auto l = format::select_latest<T>(a, at, b, at + stride);
        return l ? int(l->record.header.seq) : -1;
    }

    void seqs(const SimPmem& pmem, CampaignReach& r) {
        track(latest_seq<format::CachePos>(pmem, format::kKeyTailOffsetBytes, 16), key_tail_seq_,
              r.tail_seq_wraps);
        track(latest_seq<format::CachePos>(pmem, format::kDirtyTailOffsetBytes, 16),
              dirty_tail_seq_, r.tail_seq_wraps);
        track(latest_seq<format::CacheInfo>(pmem, format::kCacheInfoOffsetBytes,
                                            format::kCacheInfoSlotStrideBytes),
              info_seq_, r.info_seq_wraps);
        for (std::uint32_t s = 0; s < gen_seq_.size(); ++s)  // a fresh chain: cache seg s = phys s
            track(latest_seq<format::SegGen>(
                      pmem, geo_.segment_offset(s) + format::kSegCtrlOffsetBytes, 16),
                  gen_seq_[s], r.gen_seq_wraps);
    }

    format::Geometry geo_;
    std::uint32_t head_seg_ = kNone, tail_seg_ = kNone;
    std::vector<bool> log_segs_;
    int key_tail_seq_ = -1, dirty_tail_seq_ = -1, info_seq_ = -1;
    std::vector<int> gen_seq_;
};

}  // namespace pcache::sim
