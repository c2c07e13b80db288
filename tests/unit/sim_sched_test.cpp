// Seeded scheduler and trace: a run is a function of its seed (same seed, same trace hash),
// the generator matches its reference, and the reproduce line carries everything needed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "pcache/sim/crash_run.hpp"

namespace {

using namespace pcache;
using namespace pcache::sim;

TEST(SimRng, SplitmixMatchesReferenceAndBelowIsBounded) {
    std::uint64_t state = 0;
    EXPECT_EQ(splitmix64(state), 0xE220A8397B1DCDAFull);  // Vigna's splitmix64, seed 0
    Rng rng(42);
    for (int i = 0; i < 10000; ++i) {
        const auto v = rng.below(7);
        ASSERT_LT(v, 7u);
    }
    Rng a(5), b(5), c(6);
    EXPECT_EQ(a.next(), b.next());
    EXPECT_NE(Rng(5).next(), c.next());
}

// A workload touching both devices through the scheduler; returns the final trace hash.
std::uint64_t traced_run(std::uint64_t seed, std::uint64_t steps) {
    SimContext ctx;
    SimPmem pmem(1 << 20, {.context = &ctx});
    SimBlockDevice disk(1 << 20, {.context = &ctx});
    Scheduler s(seed, ctx);
    std::vector<std::byte> buf(4096);
    s.add("pmem_write", 4, [&](Rng& r) {
        const std::uint64_t off = r.below((1 << 20) - 4096);
        const std::uint64_t len = 1 + r.below(4096);
        for (std::uint64_t i = 0; i < len; ++i) buf[i] = std::byte(r.next());
        const unsigned flags = static_cast<unsigned>(r.below(8));
        ASSERT_TRUE(pmem.write(off, std::span(buf).first(len), flags).ok());
    });
    s.add("pmem_flush_drain", 1, [&](Rng& r) {
        ASSERT_TRUE(pmem.flush(r.below(1 << 19), 1 << 19).ok());
        EXPECT_TRUE(pmem.drain().ok());
    });
    s.add("block_write", 2, [&](Rng& r) {
        ASSERT_TRUE(disk.write(r.below(2048) * 512, std::span(buf).first(512), r.below(2)).ok());
    });
    s.add("block_flush", 1, [&](Rng&) { ASSERT_TRUE(disk.flush().ok()); });
    EXPECT_EQ(s.run(steps), steps);
    EXPECT_GT(ctx.trace.events(), steps);
    return ctx.trace.value();
}

TEST(SimScheduler, SameSeedSameTraceHash) {
    const std::uint64_t first = traced_run(20261125, 500);
    const std::uint64_t second = traced_run(20261125, 500);
    EXPECT_EQ(first, second) << "a run must be a function of its seed";
    EXPECT_NE(first, traced_run(20261126, 500));
    EXPECT_NE(first, traced_run(20261125, 499));
}

TEST(SimScheduler, CrashHookStopsAtTheChosenPoint) {
    SimContext ctx;
    SimPmem pmem(1 << 16, {.context = &ctx});
    ctx.crash_at(3);
    std::byte w[8] = {};
    int completed = 0;
    try {
        for (int i = 0; i < 10; ++i) {
            w[0] = std::byte(i + 1);
            ASSERT_TRUE(pmem.write(static_cast<std::uint64_t>(i) * 64, w, 0).ok());
            ++completed;
        }
    } catch (const SimCrash& c) {
        EXPECT_EQ(c.event.ordinal, 3u);
        EXPECT_EQ(c.event.kind, EventKind::pmem_drain);
    }
    EXPECT_EQ(completed, 2);
    EXPECT_EQ(pmem.pending_words(), 1u) << "the third write's line is flushed, not fenced";
}

TEST(SimReproduce, LineCarriesTheWholeRunId) {
    const RunId id{.seed = 9, .mode = PmemMode::eadr, .ops = 30, .crash_point = 4, .state = 17};
    const std::string line = reproduce_line(id, "tests/crash/x", "A.B");
    EXPECT_EQ(line,
              "REPRODUCE seed=9 mode=eadr ops=30 crash_point=4 state=17 cmd: PCACHE_SIM_SEED=9 "
              "PCACHE_SIM_MODE=eadr PCACHE_SIM_OPS=30 PCACHE_SIM_CRASH_POINT=4 "
              "PCACHE_SIM_STATE=17 tests/crash/x --gtest_filter='A.B'");
    ::setenv("PCACHE_SIM_SEED", "123", 1);
    ::setenv("PCACHE_SIM_MODE", "any", 1);
    const RunId env = run_id_from_env(id);
    ::unsetenv("PCACHE_SIM_SEED");
    ::unsetenv("PCACHE_SIM_MODE");
    EXPECT_EQ(env.seed, 123u);
    EXPECT_EQ(env.mode, PmemMode::any);
    EXPECT_EQ(env.state, 17u);
}

}  // namespace
