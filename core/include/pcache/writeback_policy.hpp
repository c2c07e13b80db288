// WritebackPolicy: when Runtime's writeback thread writes back (issue 17 item 4).
//
// dm-writecache's rule with the kernel's periodic writeback for a quiet cache:
//   - a kick (dirty bytes passed the high mark, a write found the cache full, a paced write
//     needs credit, a FLUSH found the key log full, Runtime::wake) starts writeback: it runs
//     until the dirty bytes are at or below the low mark, and takes at least one step even if
//     they already are (a full cache below the low mark still gets a step for GC to follow);
//   - between the marks nothing starts it: a timer tick starts it only above the high mark
//     (the hook's backstop, and a cache reopened dirty);
//   - idle drain: at a timer tick, when no data has come into the cache (writes, or read misses
//     kept as clean data: CacheCounters::pmem_written_bytes unchanged) for `idle` and some is
//     dirty, writeback runs until a step finds nothing to write (buffered keys follow at the
//     next tick, which closes their ksets first). RuntimeOptions::never turns it off.
// No clock and no lock: Runtime calls it under its mutex and passes the time in, so the rules
// are tested deterministically (writeback_policy_test).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace pcache {

class WritebackPolicy {
public:
    using Clock = std::chrono::steady_clock;
    enum class Goal : std::uint8_t { none, low, clean };  // ordered: a kick never lowers it

    // `idle`: the idle drain's delay (std::chrono::milliseconds::max(): never); `written`: the
    // cache's pmem_written_bytes now; `dirty`, `high`: its dirty bytes and high mark now.
    WritebackPolicy(std::chrono::milliseconds idle, Clock::time_point now, std::uint64_t written,
                    std::uint64_t dirty, std::uint64_t high)
        : idle_(idle), last_write_(now), written_(written) {
        if (dirty > high) goal_ = Goal::low;
    }

    void kick() {
        goal_ = std::max(goal_, Goal::low);
        owed_ = true;
    }
    // A timer tick (after the kset buffers were closed).
    void tick(Clock::time_point now, std::uint64_t written, std::uint64_t dirty,
              std::uint64_t high) {
        if (written != written_) {
            written_ = written;
            last_write_ = now;
        }
        if (dirty > high) goal_ = std::max(goal_, Goal::low);
        if (dirty > 0 && idle_ != std::chrono::milliseconds::max() && now - last_write_ >= idle_)
            goal_ = Goal::clean;
    }
    // Before a step: take it? At or below the low mark with nothing owed, writeback stops.
    bool want_step(std::uint64_t dirty, std::uint64_t low) {
        if (goal_ == Goal::clean || owed_ || (goal_ == Goal::low && dirty > low)) return true;
        goal_ = Goal::none;
        return false;
    }
    // After a step that was taken. An idle drain ends when the log has nothing left to write.
    void stepped(bool progressed) {
        owed_ = false;
        if (!progressed && goal_ == Goal::clean) goal_ = Goal::low;
    }
    Goal goal() const { return goal_; }

private:
    std::chrono::milliseconds idle_;
    Clock::time_point last_write_;
    std::uint64_t written_;
    Goal goal_ = Goal::none;
    bool owed_ = false;  // a kick's step not yet taken
};

}  // namespace pcache
