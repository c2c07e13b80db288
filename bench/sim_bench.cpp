// Crash-state construction rate on a 64 MiB SimPmem: apply(i) + rollback() per state.
// Target (issue 6): >= 200,000 states/s on one core. The counter `states/s` is the rate.
#include <benchmark/benchmark.h>

#include <vector>

#include "pcache/sim/block_explorer.hpp"

namespace {

using namespace pcache;
using namespace pcache::sim;

constexpr std::uint64_t kPmemBytes = 64ull << 20;

// Leaves `words` pending 8-byte stores spread over the device (one per line, lines 1 MiB apart
// modulo the size), after `durable_bytes` of durable data, as an engine would between fences.
void prepare(SimPmem& p, std::uint64_t words, std::uint64_t durable_bytes) {
    std::vector<std::byte> chunk(1 << 20, std::byte{0x5A});
    for (std::uint64_t off = 0; off < durable_bytes; off += chunk.size())
        if (!p.write(off, chunk, 0).ok()) std::abort();
    for (std::uint64_t i = 0; i < words; ++i) {
        const std::uint64_t v = i + 1;
        const std::uint64_t off = (i * ((1 << 20) + 64)) % kPmemBytes;
        if (!p.write(off, std::as_bytes(std::span(&v, 1)), kPmemNoFlush | kPmemNoDrain).ok())
            std::abort();
    }
}

void BM_PmemCrashStates(benchmark::State& state) {
    const auto words = static_cast<std::uint64_t>(state.range(0));
    SimPmem p(kPmemBytes);
    prepare(p, words, 8 << 20);
    PmemExplorer ex(p, p.capture(), {.seed = 1, .samples = 1 << 16});
    std::uint64_t i = 0;
    for (auto _ : state) {
        ex.apply(i);
        benchmark::DoNotOptimize(p.data()[0]);
        ex.rollback();
        if (++i == ex.state_count()) i = 0;
    }
    state.counters["states/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
    state.counters["state_count"] = static_cast<double>(ex.state_count());
}
BENCHMARK(BM_PmemCrashStates)->Arg(4)->Arg(12)->Arg(64)->Arg(1024);

void BM_SystemCrashStates(benchmark::State& state) {
    SimPmem p(kPmemBytes);
    SimBlockDevice d(16 << 20);
    prepare(p, 8, 0);
    std::vector<std::byte> sector(4096, std::byte{1});
    for (std::uint64_t k = 0; k < 4; ++k)
        if (!d.write(k * 8192, sector, false).ok()) std::abort();
    SystemExplorer ex(p, d);
    std::uint64_t i = 0;
    for (auto _ : state) {
        ex.apply(i);
        ex.rollback();
        if (++i == ex.state_count()) i = 0;
    }
    state.counters["states/s"] =
        benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SystemCrashStates);

}  // namespace
