// Campaign configuration, workload operations and the seeded workload generator.
//
// A seeded workload runs in phases of 64 operations, each drawn from one mix, so that one
// campaign reaches the whole design (issue 14): `mixed` (overlapping writes of every size,
// reads, FLUSH, FUA, writeback, GC, gc_percent, clean reopens), `log` (one-sector FUA writes:
// one kset each, so the key log crosses segments, chains LAST ksets, wraps, and GC and writeback
// walk long runs of ksets), `bulk` (large writes that fill data segments) and, on a backing
// device of more than one 4 MiB stripe, `stripe` (writes across a stripe boundary: split into
// pieces written under different subtree locks). With n_ksets (lanes) >= 2 every operation runs
// on a simulated CPU drawn from the seed and the operation number (SimPmem::set_cpu), so
// overlapping writes land in different lanes' kset buffers (docs/design.md "Lanes").
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "pcache/cache/options.hpp"
#include "pcache/format/constants.hpp"
#include "pcache/sim/oracle.hpp"
#include "pcache/sim/sim_pmem.hpp"

namespace pcache::sim {

struct WorkloadOp {
    enum class Kind : std::uint8_t { write, read, flush, writeback, gc, gc_percent, reopen };
    Kind kind = Kind::flush;
    std::uint64_t off_bytes = 0;
    std::uint32_t len_bytes = 0;
    bool fua = false;
    std::uint32_t value = 0;  // gc_percent
};

struct CampaignConfig {
    static constexpr std::uint64_t kAll = ~std::uint64_t{0};
    std::uint64_t seed = 1;
    PmemMode mode = PmemMode::x86;
    std::uint64_t ops = 60;
    std::uint64_t segment_bytes = 64 << 10;  // 16 MiB is kernel geometry (then segs >= 32)
    std::uint32_t segs = 8;
    std::uint64_t backing_bytes = 1 << 20;
    bool data_crc = false;
    std::uint32_t n_ksets = 1;  // lanes (CacheOptions::n_lanes; the former name is kept here)
    // Replay filters: a single workload persistence point / crash image / recovery point.
    std::uint64_t crash_point = kAll;
    std::uint64_t state = kAll;
    std::uint64_t recovery_point = kAll;
    std::uint64_t recovery_state = kAll;
    std::uint32_t explore_one_in = 1;  // explore a point with probability 1/n (seeded)
    std::uint64_t states_per_point_max = 16;
    std::uint64_t pmem_samples = 16;
    std::uint64_t block_samples = 4;
    bool tear_block_writes = false;
    bool recovery_crashes = false;
    std::uint64_t recovery_points_max = 4;  // per image
    std::uint64_t recovery_states_max = 4;  // per recovery crash point
    std::uint32_t idempotence_one_in = 4;   // 0: never
    std::uint32_t backing_check_one_in = 4;
    std::uint32_t crc_flip_one_in = 4;        // with data_crc
    std::uint32_t after_recovery_one_in = 8;  // go on writing, writeback and GC on the image
    std::uint32_t after_recovery_ops = 48;
    // Focus: a first, unchecked run of the same workload finds the operations that switch
    // key-log segments (LAST ksets, log wraps) or move key_tail past a LAST kset; every
    // persistence point of those (up to focus_points_max each, evenly spread) is explored too.
    bool focus = false;
    std::uint64_t focus_points_max = 48;
    std::uint64_t failures_max = 4;
    std::string tool = "pcache";  // for the reproduce command
    // Workloads not generated from the seed (RapidCheck): the command that replays the case,
    // printed instead of `pcache sim ...` (which could not rebuild the operations).
    std::string replay_cmd;

    std::uint64_t pmem_bytes() const {
        return format::kSegmentsOffsetBytes + std::uint64_t(segs) * segment_bytes;
    }
    CacheOptions cache_options() const {
        CacheOptions o;
        o.data_crc = data_crc;
        o.geometry.segment_bytes = segment_bytes;
        o.n_lanes = n_ksets;
        o.close_on_destroy = false;  // a dropped cache is a power cut, as in every campaign
        return o;
    }
    // Recovery under check: read misses are not filled into pmem (the workload exercises fills;
    // filling every checked sector of every image would dominate the cost of a state).
    CacheOptions check_options() const {
        CacheOptions o = cache_options();
        o.fill_on_read_miss = false;
        return o;
    }
};

// The command line that replays one case of a campaign: every parameter that changes the
// workload, the crash images or the checks (defaults of `pcache sim` are left out).
inline std::string campaign_command(const CampaignConfig& c, std::uint64_t point,
                                    std::uint64_t state,
                                    std::uint64_t rpoint = CampaignConfig::kAll,
                                    std::uint64_t rstate = CampaignConfig::kAll) {
    if (!c.replay_cmd.empty())
        return c.replay_cmd + " (crash point " + std::to_string(point) + ", state " +
               std::to_string(state) + ")";
    const CampaignConfig d;
    std::string s = c.tool + " sim --seed " + std::to_string(c.seed) + " --mode " +
                    std::string(pmem_mode_name(c.mode)) + " --ops " + std::to_string(c.ops) +
                    " --segment-kib " + std::to_string(c.segment_bytes >> 10) + " --segs " +
                    std::to_string(c.segs) + " --backing-kib " +
                    std::to_string(c.backing_bytes >> 10) + " --n-ksets " +
                    std::to_string(c.n_ksets) + " --data-crc " + (c.data_crc ? "on" : "off");
    auto opt = [&](const char* name, std::uint64_t v, std::uint64_t def) {
        if (v != def) s += std::string(" --") + name + " " + std::to_string(v);
    };
    opt("pmem-samples", c.pmem_samples, d.pmem_samples);
    opt("block-samples", c.block_samples, d.block_samples);
    opt("idempotence-one-in", c.idempotence_one_in, d.idempotence_one_in);
    opt("backing-check-one-in", c.backing_check_one_in, d.backing_check_one_in);
    opt("crc-flip-one-in", c.crc_flip_one_in, d.crc_flip_one_in);
    opt("after-recovery-one-in", c.after_recovery_one_in, d.after_recovery_one_in);
    opt("after-recovery-ops", c.after_recovery_ops, d.after_recovery_ops);
    if (c.tear_block_writes) s += " --tear-block-writes";
    if (c.recovery_crashes) {
        s += " --recovery-crashes";
        opt("recovery-states-max", c.recovery_states_max, d.recovery_states_max);
    }
    s += " --crash-at " + std::to_string(point) + " --state " + std::to_string(state);
    if (rpoint != CampaignConfig::kAll) s += " --recovery-at " + std::to_string(rpoint);
    if (rstate != CampaignConfig::kAll) s += " --recovery-state " + std::to_string(rstate);
    return s;
}

// One write of `n` sectors somewhere (a hot 64 KiB region for overlaps, or anywhere), 4 KiB
// aligned or not.
inline WorkloadOp random_write(Rng& rng, std::uint64_t sectors, std::uint64_t n, bool fua) {
    std::uint64_t s = rng.below(3) == 0 ? rng.below(sectors) : rng.below(128);
    if (rng.below(2) == 0) {
        s &= ~std::uint64_t{7};
        n = (n + 7) & ~std::uint64_t{7};
    }
    n = std::max<std::uint64_t>(1, std::min(n, sectors - s));
    WorkloadOp op;
    op.kind = WorkloadOp::Kind::write;
    op.off_bytes = s * kOracleSectorBytes;
    op.len_bytes = static_cast<std::uint32_t>(n * kOracleSectorBytes);
    op.fua = fua;
    return op;
}

inline WorkloadOp random_read(Rng& rng, std::uint64_t sectors) {
    const std::uint64_t s = rng.below(2) == 0 ? rng.below(sectors) : rng.below(128);
    WorkloadOp op;
    op.kind = WorkloadOp::Kind::read;
    op.off_bytes = s * kOracleSectorBytes;
    op.len_bytes = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(1 + rng.below(64), sectors - s) * kOracleSectorBytes);
    return op;
}

enum class Phase : std::uint8_t { mixed, log, bulk, stripe };
inline constexpr std::uint64_t kPhaseOps = 64;

inline WorkloadOp phase_op(Phase phase, Rng& rng, std::uint64_t sectors, bool first) {
    using K = WorkloadOp::Kind;
    const std::uint64_t pick = rng.below(24);
    if (first) return random_write(rng, sectors, 1 + rng.below(8), false);
    switch (phase) {
        case Phase::log:  // one tiny FUA write per kset; writeback lags (32-kset batches)
            if (pick < 20) return random_write(rng, sectors, 1, rng.below(4) != 0);
            if (pick < 21) return WorkloadOp{K::flush};
            if (pick < 22) return WorkloadOp{K::writeback};
            if (pick < 23) return WorkloadOp{K::gc};
            return random_read(rng, sectors);
        case Phase::bulk:
            if (pick < 14)
                return random_write(rng, sectors, 32 + rng.below(225), rng.below(6) == 0);
            if (pick < 17) return WorkloadOp{K::writeback};
            if (pick < 20) return WorkloadOp{K::gc};
            if (pick < 22) return WorkloadOp{K::flush};
            return random_read(rng, sectors);
        case Phase::stripe:
            if (pick < 12) {  // across a 4 MiB boundary
                const std::uint64_t per = format::kSubtreeBytes / kOracleSectorBytes;
                const std::uint64_t b = per * (1 + rng.below((sectors - 1) / per));
                const std::uint64_t before = 1 + rng.below(64), after = 1 + rng.below(64);
                WorkloadOp op;
                op.kind = K::write;
                op.off_bytes = (b - before) * kOracleSectorBytes;
                op.len_bytes = static_cast<std::uint32_t>(
                    std::min(before + after, sectors - (b - before)) * kOracleSectorBytes);
                op.fua = rng.below(3) == 0;
                return op;
            }
            if (pick < 15) return WorkloadOp{K::flush};
            if (pick < 18) return WorkloadOp{K::writeback};
            if (pick < 20) return WorkloadOp{K::gc};
            return random_read(rng, sectors);
        case Phase::mixed:
            break;
    }
    if (pick < 11) {
        const std::uint64_t size_class = rng.below(10);
        const std::uint64_t n = size_class < 6   ? 1 + rng.below(8)
                                : size_class < 9 ? 8 + rng.below(25)
                                                 : 32 + rng.below(225);
        return random_write(rng, sectors, n, rng.below(5) == 0);
    }
    if (pick < 14) return random_read(rng, sectors);
    if (pick < 17) return WorkloadOp{K::flush};
    if (pick < 20) return WorkloadOp{K::writeback};
    if (pick < 22) return WorkloadOp{K::gc};
    if (pick < 23)
        return WorkloadOp{K::gc_percent, 0, 0, false, static_cast<std::uint32_t>(rng.below(91))};
    return WorkloadOp{K::reopen};
}

// A seeded workload: the first phase is mixed, later ones drawn from the seed.
inline std::vector<WorkloadOp> generate_workload(const CampaignConfig& c) {
    Rng rng(c.seed ^ 0xC0FFEE123ull);
    std::vector<WorkloadOp> ops;
    ops.reserve(c.ops);
    const std::uint64_t sectors = c.backing_bytes / kOracleSectorBytes;
    PCACHE_SIM_ASSERT(sectors >= 256);
    const bool stripes = c.backing_bytes > format::kSubtreeBytes;
    Phase phase = Phase::mixed;
    for (std::uint64_t i = 0; i < c.ops; ++i) {
        if (i % kPhaseOps == 0 && i > 0) {
            const std::uint64_t p = rng.below(stripes ? 8 : 7);
            phase = p < 2 ? Phase::mixed : p < 6 ? Phase::log : p < 7 ? Phase::bulk : Phase::stripe;
        }
        ops.push_back(phase_op(phase, rng, sectors, i == 0));
    }
    return ops;
}

}  // namespace pcache::sim
