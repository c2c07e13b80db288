// The cooperative scheduler on its own: one task at a time, switches only at scheduling points,
// same seed same interleaving, mutual exclusion, deadlock and failure detection.
#include <gtest/gtest.h>

#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "pcache/sim/coop.hpp"

namespace pcache::sim {
namespace {

// Three tasks log their steps; each step is a scheduling point. Returns (log, trace hash).
std::pair<std::string, std::uint64_t> interleave(std::uint64_t seed, std::uint32_t stay) {
    SimContext ctx;
    CoopScheduler s({.seed = seed, .stay_percent = stay}, ctx);
    std::string log;
    for (char name : {'a', 'b', 'c'})
        s.spawn(std::string(1, name), [&log, name] {
            for (int i = 0; i < 20; ++i) {
                log += name;
                CoopScheduler::sync_point();
            }
        });
    const auto outcome = s.run();
    EXPECT_TRUE(outcome.ok()) << outcome.failure;
    return {log, ctx.trace.value()};
}

TEST(CoopScheduler, SameSeedSameInterleavingAndHash) {
    const auto first = interleave(7, 50);
    EXPECT_EQ(first, interleave(7, 50));
    EXPECT_EQ(first.first.size(), 60u);
    EXPECT_NE(first.first, interleave(8, 50).first) << "the seed must choose the interleaving";
    EXPECT_NE(first.second, interleave(8, 50).second);
    // stay_percent 0 switches at every point whenever another task can run
    const std::string always = interleave(7, 0).first;
    std::size_t repeats = 0;
    for (std::size_t i = 1; i < always.size(); ++i) repeats += always[i] == always[i - 1];
    EXPECT_LE(repeats, 20u) << always;  // only once the other tasks have ended
}

TEST(CoopScheduler, MutexExcludesAcrossSchedulingPoints) {
    SimContext ctx;
    CoopScheduler s({.seed = 3, .stay_percent = 0}, ctx);
    CoopMutex m;
    int inside = 0, max_inside = 0, total = 0;
    for (int t = 0; t < 4; ++t)
        s.spawn("t" + std::to_string(t), [&] {
            for (int i = 0; i < 50; ++i) {
                std::lock_guard g(m);
                max_inside = std::max(max_inside, ++inside);
                CoopScheduler::sync_point();  // others run; none may enter
                ++total;
                --inside;
            }
        });
    const auto outcome = s.run();
    ASSERT_TRUE(outcome.ok()) << outcome.failure;
    EXPECT_EQ(max_inside, 1);
    EXPECT_EQ(total, 200);
    EXPECT_GT(s.switches(), 100u);
}

TEST(CoopScheduler, SharedMutexSharesReadsAndExcludesWrites) {
    SimContext ctx;
    CoopScheduler s({.seed = 4, .stay_percent = 0}, ctx);
    CoopSharedMutex m;
    int readers = 0, writers = 0, max_readers = 0, bad = 0;
    for (int t = 0; t < 3; ++t)
        s.spawn("r" + std::to_string(t), [&] {
            for (int i = 0; i < 40; ++i) {
                std::shared_lock g(m);
                ++readers;
                bad += writers != 0;
                max_readers = std::max(max_readers, readers);
                CoopScheduler::sync_point();
                --readers;
            }
        });
    s.spawn("w", [&] {
        for (int i = 0; i < 40; ++i) {
            std::lock_guard g(m);
            ++writers;
            bad += readers != 0 || writers != 1;
            CoopScheduler::sync_point();
            --writers;
        }
    });
    const auto outcome = s.run();
    ASSERT_TRUE(outcome.ok()) << outcome.failure;
    EXPECT_EQ(bad, 0);
    EXPECT_GT(max_readers, 1) << "readers must be able to share";
}

// Lock order inversion: found as a deadlock by some seed, and every task unwinds (the mutexes
// are released: their destructors assert it).
TEST(CoopScheduler, DetectsDeadlockAndUnwinds) {
    int deadlocks = 0, clean = 0;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        SimContext ctx;
        CoopScheduler s({.seed = seed, .stay_percent = 50}, ctx);
        CoopMutex a, b;
        s.spawn("ab", [&] {
            std::lock_guard ga(a);
            std::lock_guard gb(b);
        });
        s.spawn("ba", [&] {
            std::lock_guard gb(b);
            std::lock_guard ga(a);
        });
        const auto outcome = s.run();
        if (outcome.ok()) {
            ++clean;
        } else {
            EXPECT_NE(outcome.failure.find("deadlock"), std::string::npos) << outcome.failure;
            ++deadlocks;
        }
    }
    EXPECT_GT(deadlocks, 0);
    EXPECT_GT(clean, 0);
}

TEST(CoopScheduler, FailStopsEveryTask) {
    SimContext ctx;
    CoopScheduler s({.seed = 9, .stay_percent = 0}, ctx);
    CoopMutex m;
    int spins = 0;
    s.spawn("spinner", [&] {
        for (;;) {  // ends only through the abort
            std::lock_guard g(m);
            ++spins;
        }
    });
    s.spawn("failer", [&] {
        for (int i = 0; i < 10; ++i) CoopScheduler::sync_point();
        CoopScheduler::fail("seen a bad value");
    });
    const auto outcome = s.run();
    EXPECT_EQ(outcome.failure, "task failer: seen a bad value");
    EXPECT_FALSE(outcome.threw);
    EXPECT_GT(spins, 0);
}

TEST(CoopScheduler, AnExceptionIsAHarnessError) {
    SimContext ctx;
    CoopScheduler s({.seed = 9, .stay_percent = 50}, ctx);
    s.spawn("bad", [] {
        CoopScheduler::sync_point();
        throw std::runtime_error("boom");
    });
    s.spawn("good", [] {
        for (int i = 0; i < 10; ++i) CoopScheduler::sync_point();
    });
    const auto outcome = s.run();
    EXPECT_EQ(outcome.failure, "task bad threw: boom");
    EXPECT_TRUE(outcome.threw);
}

TEST(CoopScheduler, LivelockIsBounded) {
    SimContext ctx;
    CoopScheduler s({.seed = 1, .stay_percent = 50, .sync_points_max = 1000}, ctx);
    s.spawn("forever", [] {
        for (;;) CoopScheduler::sync_point();
    });
    const auto outcome = s.run();
    EXPECT_NE(outcome.failure.find("livelock"), std::string::npos) << outcome.failure;
}

TEST(CoopScheduler, CrashHookStopsTheRunAsACrash) {
    SimContext ctx;
    CoopScheduler s({.seed = 2, .stay_percent = 50}, ctx);
    ctx.crash_at(5);
    for (int t = 0; t < 3; ++t)
        s.spawn("t" + std::to_string(t), [&ctx] {
            for (int i = 0; i < 10; ++i) {
                CoopScheduler::sync_point();
                ctx.on_persist(EventKind::pmem_drain);
            }
        });
    const auto outcome = s.run();
    EXPECT_TRUE(outcome.crashed);
    EXPECT_TRUE(outcome.failure.empty()) << outcome.failure;
    EXPECT_EQ(ctx.persist_points, 5u);
}

}  // namespace
}  // namespace pcache::sim
