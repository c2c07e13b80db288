// Crash runs: execute a seeded workload on a fresh simulated machine, cut it at a persistence
// point, and check every crash image (enumerated or sampled) with the workload's recovery.
//
// A workload is a type W with
//     W(const RunId&)                                   // fresh oracle state
//     void run(Machine&, Scheduler&, std::uint64_t ops) // may be cut by SimCrash anywhere
//     Status check(Machine&)                            // recover on the image, check the oracle
// check() runs with the image applied (a reboot: nothing pending) and may write, flush and
// drain; it is rolled back afterwards. The engine test uses W = "Cache<SimPmem, SimBlockDevice>
// plus an oracle"; tests/crash/sim_crash_toy_test.cpp shows a small one.
//
// Cost: one full run to count persistence points, then one run per explored point (each on a
// fresh machine: cheap, the mappings are MAP_NORESERVE), then O(pending) per image.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pcache/sim/block_explorer.hpp"
#include "pcache/sim/scheduler.hpp"

namespace pcache::sim {

struct MachineConfig {
    std::uint64_t pmem_bytes = 1 << 20;
    std::uint64_t block_bytes = 1 << 20;
    bool protect_view = false;
};

// One simulated computer: the context (trace, hook) and its two devices.
struct Machine {
    Machine(const MachineConfig& cfg, PmemMode mode)
        : pmem(cfg.pmem_bytes, {.mode = mode, .protect_view = cfg.protect_view, .context = &ctx}),
          block(cfg.block_bytes, {.context = &ctx}) {}
    Machine(const Machine&) = delete;
    Machine& operator=(const Machine&) = delete;
    SimContext ctx;  // first: the devices hold its address
    SimPmem pmem;
    SimBlockDevice block;
};

struct CrashRunConfig {
    RunId id;
    MachineConfig machine;
    std::uint64_t crash_points_max = 64;  // beyond this, points are sampled from the seed
    std::uint64_t states_per_point_max = 4096;
    bool tear_block_writes = false;
    std::string binary = "<test binary>";  // for the reproduce line
    std::string gtest_filter = "*";
    std::uint64_t failures_max = 8;  // stop collecting after this many
};

struct CrashRunResult {
    std::uint64_t persist_points = 0;  // in the uncut run
    std::uint64_t trace_hash = 0;      // of the uncut run
    std::uint64_t crash_points_run = 0;
    std::uint64_t states_checked = 0;
    std::vector<std::string> failures;  // one line each, with the reproduce command
};

template <class W>
void run_one_point(const CrashRunConfig& cfg, std::uint64_t point, CrashRunResult& result) {
    auto m = std::make_unique<Machine>(cfg.machine, cfg.id.mode);
    W w(cfg.id);
    Scheduler sched(cfg.id.seed, m->ctx);
    m->ctx.crash_at(point);
    try {
        w.run(*m, sched, cfg.id.ops);
    } catch (const SimCrash& crash) {
        PCACHE_SIM_ASSERT(crash.event.ordinal == point);
    }
    m->ctx.crash_at(0);  // recovery runs without the hook (nest an explorer to crash it)
    ++result.crash_points_run;
    SystemExplorer ex(m->pmem, m->block, {.seed = cfg.id.seed ^ point},
                      {.seed = cfg.id.seed ^ point, .tear_writes = cfg.tear_block_writes});
    const std::uint64_t count = std::min(ex.state_count(), cfg.states_per_point_max);
    for (std::uint64_t s = 0; s < count && result.failures.size() < cfg.failures_max; ++s) {
        const std::uint64_t state = cfg.id.state != RunId::kAll ? cfg.id.state : s;
        if (state >= ex.state_count()) break;
        ex.apply(state);
        const Status st = w.check(*m);
        ex.rollback();
        ++result.states_checked;
        if (!st.ok()) {
            RunId id = cfg.id;
            id.crash_point = point;
            id.state = state;
            result.failures.push_back(st.to_string() + " | " +
                                      reproduce_line(id, cfg.binary, cfg.gtest_filter));
        }
        if (cfg.id.state != RunId::kAll) break;
    }
}

template <class W>
CrashRunResult explore_crashes(const CrashRunConfig& cfg) {
    CrashRunResult result;
    {  // the uncut run: how many persistence points, and the trace hash
        Machine m(cfg.machine, cfg.id.mode);
        W w(cfg.id);
        Scheduler sched(cfg.id.seed, m.ctx);
        w.run(m, sched, cfg.id.ops);
        result.persist_points = m.ctx.persist_points;
        result.trace_hash = m.ctx.trace.value();
    }
    std::vector<std::uint64_t> points;
    if (cfg.id.crash_point != RunId::kAll) {
        points.push_back(cfg.id.crash_point);
    } else if (result.persist_points <= cfg.crash_points_max) {
        for (std::uint64_t p = 1; p <= result.persist_points; ++p) points.push_back(p);
    } else {
        Rng pick(cfg.id.seed ^ 0x5EED0F00Dull);
        for (std::uint64_t i = 0; i < cfg.crash_points_max; ++i)
            points.push_back(1 + pick.below(result.persist_points));
    }
    for (std::uint64_t point : points) {
        if (result.failures.size() >= cfg.failures_max) break;
        run_one_point<W>(cfg, point, result);
    }
    PCACHE_SIM_ASSERT(result.crash_points_run <= points.size());
    return result;
}

}  // namespace pcache::sim
