// WritebackPolicy (issue 17 item 4): the Runtime's rules for when writeback runs, without
// threads or a clock: the time is passed in.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>

#include "pcache/writeback_policy.hpp"

namespace pcache {
namespace {

using std::chrono::milliseconds;
using Goal = WritebackPolicy::Goal;
constexpr std::uint64_t kHigh = 500, kLow = 450;
const WritebackPolicy::Clock::time_point t0{};

// Runs writeback as Runtime does, each step writing back `per_step` bytes; returns the steps.
int run(WritebackPolicy& p, std::uint64_t& dirty, std::uint64_t per_step) {
    int steps = 0;
    for (; p.want_step(dirty, kLow); ++steps) {
        EXPECT_LT(steps, 1000) << "writeback never stops";
        if (steps >= 1000) break;
        const bool progressed = dirty > 0;
        dirty -= std::min(dirty, per_step);
        p.stepped(progressed);
    }
    return steps;
}

TEST(WritebackPolicy, StartsAboveTheHighMarkAndStopsAtTheLowMark) {
    WritebackPolicy p(milliseconds(5000), t0, 0, 0, kHigh);
    std::uint64_t dirty = 480;  // between the marks: nothing starts it
    p.tick(t0 + milliseconds(1), 10, dirty, kHigh);
    EXPECT_EQ(run(p, dirty, 20), 0);
    dirty = 520;  // the high mark passed: the hook kicks
    p.kick();
    EXPECT_EQ(run(p, dirty, 20), 4);  // 520 -> 500 -> 480 -> 460 -> 440
    EXPECT_EQ(dirty, 440u);
    EXPECT_EQ(p.goal(), Goal::none);
    dirty = 490;  // back between the marks: stays stopped
    p.tick(t0 + milliseconds(2), 20, dirty, kHigh);
    EXPECT_EQ(run(p, dirty, 20), 0);
    dirty = 510;  // above the high mark at a tick (a missed or disarmed hook): starts
    p.tick(t0 + milliseconds(3), 30, dirty, kHigh);
    EXPECT_EQ(run(p, dirty, 20), 3);
    EXPECT_EQ(dirty, 450u);
}

TEST(WritebackPolicy, AKickBelowTheLowMarkTakesOneStep) {
    WritebackPolicy p(milliseconds::max(), t0, 0, 0, kHigh);
    std::uint64_t dirty = 100;
    p.kick();  // a busy write or a paced writer: room is wanted now
    EXPECT_EQ(run(p, dirty, 20), 1);
    EXPECT_EQ(dirty, 80u);
}

TEST(WritebackPolicy, ACacheReopenedAboveTheHighMarkStartsAtOnce) {
    WritebackPolicy p(milliseconds::max(), t0, 0, 600, kHigh);
    std::uint64_t dirty = 600;
    EXPECT_EQ(run(p, dirty, 100), 2);
}

TEST(WritebackPolicy, IdleDrainAfterTheDelayWithoutWrites) {
    WritebackPolicy p(milliseconds(5000), t0, 0, 0, kHigh);
    std::uint64_t dirty = 300;
    p.tick(t0 + milliseconds(1000), 300, dirty, kHigh);  // a write since start
    p.tick(t0 + milliseconds(5000), 300, dirty, kHigh);  // 4 s since: not yet
    EXPECT_EQ(run(p, dirty, 100), 0);
    p.tick(t0 + milliseconds(6000), 300, dirty, kHigh);  // 5 s since
    EXPECT_EQ(p.goal(), Goal::clean);
    EXPECT_EQ(run(p, dirty, 100), 4);  // three steps, then one that finds nothing
    EXPECT_EQ(dirty, 0u);
    EXPECT_EQ(p.goal(), Goal::none);
    dirty = 40;  // keys that were buffered, now in the log: the next tick drains them too
    p.tick(t0 + milliseconds(7000), 300, dirty, kHigh);
    EXPECT_EQ(run(p, dirty, 100), 2);
    p.tick(t0 + milliseconds(8000), 340, 40, kHigh);  // a write: the delay starts again
    EXPECT_EQ(p.goal(), Goal::none);
    p.tick(t0 + milliseconds(12999), 340, 40, kHigh);
    EXPECT_EQ(p.goal(), Goal::none);
    p.tick(t0 + milliseconds(13000), 340, 40, kHigh);
    EXPECT_EQ(p.goal(), Goal::clean);
}

TEST(WritebackPolicy, NeverDrainsWhenTheIdleDrainIsOff) {
    WritebackPolicy p(milliseconds::max(), t0, 0, 0, kHigh);
    std::uint64_t dirty = 300;
    for (int s = 1; s < 100; ++s) p.tick(t0 + std::chrono::hours(s), 300, dirty, kHigh);
    EXPECT_EQ(run(p, dirty, 100), 0);
    EXPECT_EQ(dirty, 300u);
}

TEST(WritebackPolicy, ACleanCacheIsNotDrained) {
    WritebackPolicy p(milliseconds(10), t0, 0, 0, kHigh);
    p.tick(t0 + milliseconds(100), 0, 0, kHigh);
    EXPECT_EQ(p.goal(), Goal::none);
}

}  // namespace
}  // namespace pcache
