// Crash-state throughput of the engine suite: crash images built, recovered (Cache::open on the
// image: superblock, metadata, segment chain, replay) and checked by the oracle (every written
// sector read back and identified), per second. One campaign per iteration, seeded, so every
// iteration does the same work. Target (issue 7): >= 20,000 states/s on the 2-core machine.
// Results and conditions: docs/PERFORMANCE.md.
#include <benchmark/benchmark.h>

#include "pcache/sim/campaign.hpp"

namespace {

using pcache::sim::Campaign;
using pcache::sim::CampaignConfig;

// full: idempotence (second recovery) and writeback-to-clean checks on 1 image in 4, as the suite.
// lean: recover + oracle read-back only.
void crash_states(benchmark::State& state, bool full, std::uint32_t segs,
                  std::uint64_t segment_bytes) {
    CampaignConfig c;
    c.seed = 7;
    c.ops = 60;
    c.segs = segs;
    c.segment_bytes = segment_bytes;
    c.backing_bytes = 256 << 10;
    c.states_per_point_max = 16;
    c.idempotence_one_in = full ? 4 : 0;
    c.backing_check_one_in = full ? 4 : 0;
    std::uint64_t states = 0;
    for (auto _ : state) {
        const auto r = Campaign(c).run();
        if (!r.failures.empty()) state.SkipWithError(r.failures.front().c_str());
        states += r.states_checked;
    }
    state.counters["states/s"] = benchmark::Counter(double(states), benchmark::Counter::kIsRate);
    state.counters["states/run"] = double(states) / double(state.iterations());
}

void BM_CrashStatesFull(benchmark::State& s) { crash_states(s, true, 8, 64 << 10); }
void BM_CrashStatesLean(benchmark::State& s) { crash_states(s, false, 8, 64 << 10); }
void BM_CrashStatesKernelGeometry(benchmark::State& s) { crash_states(s, true, 32, 16 << 20); }
BENCHMARK(BM_CrashStatesFull)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CrashStatesLean)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CrashStatesKernelGeometry)->Unit(benchmark::kMillisecond);

}  // namespace
