// Cooperative simulated threads: a seeded scheduler that runs several tasks on real
// std::threads, exactly one at a time, and switches between them only at scheduling points.
//
// MODEL. Each task is a std::thread that runs only while it holds the baton. A scheduling point
// (CoopScheduler::sync_point(): every CoopMutex::lock() and every device call of CoopPmem and
// CoopBlock, see coop_devices.hpp) draws the next task from the seed among the runnable ones
// and hands the baton over. The baton is a std::mutex + condition_variable, so every handover
// is a happens-before edge: the tasks share the engine and the simulated devices without a data
// race, and ThreadSanitizer sees the same. Real threads were chosen over Boost.Context because
// they need no new package, keep ordinary stacks for the sanitizers, and leave the engine's
// code path exactly the production one (only the mutex type differs).
//
// DETERMINISM. Only the baton holder runs, and every choice comes from one Rng seeded by the
// caller; each choice is mixed into the SimContext's trace hash. The same seed therefore gives
// the same interleaving and the same hash.
//
// FAILURES. A task blocked on a CoopMutex is not runnable; if no task is runnable the run has
// deadlocked. A deadlock, a task calling fail(), a task throwing, or more scheduling points
// than the bound (livelock) aborts the run: every task is resumed in turn and unwinds with
// CoopAbort from its next scheduling point (RAII releases its locks), and run() returns the
// reason. A SimCrash thrown by a crash hook inside one task stops the others the same way and
// is reported as a crash, not a failure. CoopAbort does not derive from std::exception, so code
// under test cannot swallow it.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pcache/sim/sim_common.hpp"

namespace pcache::sim {

struct CoopAbort {};  // unwinds a task out of an aborted run

class CoopScheduler;

struct CoopTask {
    std::string name;
    std::function<void()> body;
    std::size_t index = 0;
    CoopScheduler* sched = nullptr;
    const void* blocked_on = nullptr;  // the CoopMutex it waits for
    bool finished = false;
    std::condition_variable baton;  // signalled when this task is handed the baton
    std::thread thread;
};

// The task running on this thread (null outside a scheduled run: the controller thread).
inline thread_local CoopTask* tl_coop_task = nullptr;

struct CoopOptions {
    std::uint64_t seed = 1;
    // Probability (percent) that a scheduling point keeps the running task; otherwise another
    // runnable task is drawn uniformly. 0 switches at every point.
    std::uint32_t stay_percent = 50;
    std::uint64_t sync_points_max = 20'000'000;  // livelock bound for one run()
};

class CoopScheduler {
public:
    static constexpr std::size_t kNone = ~std::size_t{0};
    static constexpr std::size_t kTasksMax = 64;

    CoopScheduler(CoopOptions options, SimContext& context)
        : options_(options), rng_(options.seed), context_(context) {
        PCACHE_SIM_ASSERT(options_.stay_percent < 100);
    }
    CoopScheduler(const CoopScheduler&) = delete;
    CoopScheduler& operator=(const CoopScheduler&) = delete;
    ~CoopScheduler() { PCACHE_SIM_ASSERT(!running_); }

    // Adds a task for the next run().
    void spawn(std::string name, std::function<void()> body) {
        PCACHE_SIM_ASSERT(!running_ && tasks_.size() < kTasksMax);
        auto t = std::make_unique<CoopTask>();
        t->name = std::move(name);
        t->body = std::move(body);
        t->index = tasks_.size();
        t->sched = this;
        tasks_.push_back(std::move(t));
    }

    struct Outcome {
        bool ok() const { return failure.empty() && !crashed; }
        std::string failure;   // deadlock, livelock, a task's fail() or exception
        bool crashed = false;  // a task hit a SimCrash (the crash hook fired)
        bool threw = false;    // the failure is an exception out of a task (a harness error)
    };

    // Runs every spawned task to its end (or until the run aborts); then forgets them.
    Outcome run() {
        PCACHE_SIM_ASSERT(!running_ && !tasks_.empty());
        running_ = true;
        failure_.clear();
        crashed_ = aborting_ = threw_ = false;
        sync_points_ = switches_ = 0;
        {
            std::lock_guard g(m_);
            current_ = pick_locked(kNone);
        }
        for (auto& t : tasks_)
            t->thread = std::thread([this, task = t.get()] { task_main(*task); });
        {
            std::unique_lock l(m_);
            done_.wait(l, [&] { return current_ == kNone; });
        }
        for (auto& t : tasks_) t->thread.join();
        tasks_.clear();
        running_ = false;
        Outcome o{failure_, crashed_, threw_};
        return o;
    }

    // A scheduling point: no-op outside a task, else may hand the baton to another task.
    static void sync_point() {
        if (CoopTask* t = tl_coop_task) t->sched->yield(*t, nullptr);
    }
    // The running task's index (its spawn order), 0 outside a task: the simulated CPU.
    static std::uint32_t current_task_index() {
        const CoopTask* t = tl_coop_task;
        return t == nullptr ? 0u : static_cast<std::uint32_t>(t->index);
    }
    // Fails the run from inside a task: records why and unwinds the caller.
    [[noreturn]] static void fail(std::string why) {
        CoopTask* t = tl_coop_task;
        PCACHE_SIM_ASSERT(t != nullptr);
        {
            std::lock_guard g(t->sched->m_);
            t->sched->set_failure_locked("task " + t->name + ": " + std::move(why));
        }
        throw CoopAbort{};
    }
    // Called by CoopMutex: wait (not runnable) until wake(what).
    void block_on(CoopTask& self, const void* what) { yield(self, what); }
    // Called by CoopMutex::unlock: every task blocked on `what` becomes runnable.
    void wake(const void* what) {
        std::lock_guard g(m_);
        for (auto& t : tasks_)
            if (t->blocked_on == what) t->blocked_on = nullptr;
    }

    std::uint64_t sync_points() const { return sync_points_; }
    std::uint64_t switches() const { return switches_; }

private:
    void task_main(CoopTask& self) {
        tl_coop_task = &self;
        {
            std::unique_lock l(m_);
            self.baton.wait(l, [&] { return current_ == self.index; });
        }
        try {
            if (!aborting_) self.body();
        } catch (const CoopAbort&) {
        } catch (const SimCrash&) {
            std::lock_guard g(m_);
            if (!aborting_) crashed_ = aborting_ = true;
        } catch (const std::exception& e) {
            std::lock_guard g(m_);
            threw_ = threw_ || failure_.empty();
            set_failure_locked("task " + self.name + " threw: " + e.what());
        } catch (...) {
            std::lock_guard g(m_);
            threw_ = threw_ || failure_.empty();
            set_failure_locked("task " + self.name + " threw an unknown exception");
        }
        tl_coop_task = nullptr;
        std::lock_guard g(m_);
        self.finished = true;
        self.blocked_on = nullptr;
        std::size_t next = pick_locked(kNone);
        if (next == kNone && !all_finished_locked()) {
            set_failure_locked("deadlock: no runnable task after " + self.name + " ended" +
                               blocked_list_locked());
            next = pick_locked(kNone);
        }
        hand_locked(next);
    }

    // The baton holder gives up the baton (runnable unless `blocked_on`) and waits for it.
    void yield(CoopTask& self, const void* blocked_on) {
        std::unique_lock l(m_);
        if (aborting_) throw CoopAbort{};
        if (++sync_points_ > options_.sync_points_max)
            set_failure_locked("livelock: more than " + std::to_string(options_.sync_points_max) +
                               " scheduling points");
        self.blocked_on = blocked_on;
        std::size_t next = aborting_ ? kNone : pick_locked(self.index);
        if (next == kNone && !aborting_)
            set_failure_locked("deadlock: every task is blocked" + blocked_list_locked());
        if (aborting_) {
            self.blocked_on = nullptr;
            throw CoopAbort{};  // unwinds this task; its end hands the baton on
        }
        if (next == self.index) return;
        hand_locked(next);
        self.baton.wait(l, [&] { return current_ == self.index; });
        if (aborting_) throw CoopAbort{};
    }

    void hand_locked(std::size_t next) {
        if (next != kNone) {
            ++switches_;
            context_.record(EventKind::sched_step, sync_points_, next);
        }
        current_ = next;
        if (next == kNone)
            done_.notify_one();
        else
            tasks_[next]->baton.notify_one();
    }

    // The next task: the caller (if runnable) with probability stay_percent, else a uniform
    // draw among the other runnable tasks. While aborting: the first unfinished task.
    std::size_t pick_locked(std::size_t self) {
        if (aborting_) {
            for (auto& t : tasks_)
                if (!t->finished) return t->index;
            return kNone;
        }
        const bool self_runnable = self != kNone && tasks_[self]->blocked_on == nullptr;
        std::size_t others = 0;
        for (auto& t : tasks_)
            if (runnable(*t) && t->index != self) ++others;
        if (others == 0) return self_runnable ? self : kNone;
        if (self_runnable && rng_.below(100) < options_.stay_percent) return self;
        std::uint64_t n = rng_.below(others);
        for (auto& t : tasks_)
            if (runnable(*t) && t->index != self && n-- == 0) return t->index;
        PCACHE_SIM_ASSERT(false);
        return kNone;
    }
    static bool runnable(const CoopTask& t) { return !t.finished && t.blocked_on == nullptr; }
    bool all_finished_locked() const {
        for (auto& t : tasks_)
            if (!t->finished) return false;
        return true;
    }
    std::string blocked_list_locked() const {
        std::string s;
        for (auto& t : tasks_)
            if (!t->finished && t->blocked_on != nullptr) s += (s.empty() ? " (" : ", ") + t->name;
        return s.empty() ? s : s + " wait for a mutex)";
    }
    void set_failure_locked(std::string why) {
        if (failure_.empty() && !crashed_) failure_ = std::move(why);
        aborting_ = true;
    }

    CoopOptions options_;
    Rng rng_;
    SimContext& context_;
    std::vector<std::unique_ptr<CoopTask>> tasks_;
    std::mutex m_;                  // guards the fields below and hands the baton over
    std::condition_variable done_;  // signalled when the last task ends
    std::size_t current_ = kNone;
    bool aborting_ = false;
    bool crashed_ = false;
    bool threw_ = false;
    bool running_ = false;
    std::string failure_;
    std::uint64_t sync_points_ = 0;
    std::uint64_t switches_ = 0;
};

// The engine's mutex under the scheduler (CoopPmem::Mutex). lock() is a scheduling point; a
// held mutex blocks the task until its owner unlocks. Outside a task (the controller thread
// while no task runs) it is a plain flag: nothing else can run then.
class CoopMutex {
public:
    CoopMutex() = default;
    CoopMutex(const CoopMutex&) = delete;
    CoopMutex& operator=(const CoopMutex&) = delete;
    ~CoopMutex() { PCACHE_SIM_ASSERT(!held_); }

    void lock() {
        CoopTask* t = tl_coop_task;
        if (t == nullptr) {
            PCACHE_SIM_ASSERT(!held_);  // the controller only locks while every task is parked
            held_ = true;
            return;
        }
        CoopScheduler::sync_point();
        if (owner_ == t) CoopScheduler::fail("locks a mutex it already holds (self-deadlock)");
        while (held_) t->sched->block_on(*t, this);
        held_ = true;
        owner_ = t;
    }
    bool try_lock() {
        CoopScheduler::sync_point();
        if (held_) return false;
        held_ = true;
        owner_ = tl_coop_task;
        return true;
    }
    void unlock() {
        PCACHE_SIM_ASSERT(held_);
        CoopTask* owner = owner_;
        held_ = false;
        owner_ = nullptr;
        if (owner != nullptr) owner->sched->wake(this);
    }

private:
    bool held_ = false;
    CoopTask* owner_ = nullptr;
};

// The engine's reader-writer mutex under the scheduler (CoopPmem::SharedMutex): any number of
// shared holders or one exclusive holder; both lock calls are scheduling points.
class CoopSharedMutex {
public:
    CoopSharedMutex() = default;
    CoopSharedMutex(const CoopSharedMutex&) = delete;
    CoopSharedMutex& operator=(const CoopSharedMutex&) = delete;
    ~CoopSharedMutex() { PCACHE_SIM_ASSERT(!writer_ && readers_ == 0); }

    void lock() {
        CoopTask* t = tl_coop_task;
        if (t == nullptr) {
            PCACHE_SIM_ASSERT(!writer_ && readers_ == 0);
            writer_ = true;
            return;
        }
        CoopScheduler::sync_point();
        if (writer_ && owner_ == t) CoopScheduler::fail("locks a shared mutex it already holds");
        while (writer_ || readers_ > 0) t->sched->block_on(*t, this);
        writer_ = true;
        owner_ = t;
    }
    void unlock() {
        PCACHE_SIM_ASSERT(writer_);
        writer_ = false;
        owner_ = nullptr;
        wake();
    }
    void lock_shared() {
        CoopTask* t = tl_coop_task;
        if (t == nullptr) {
            PCACHE_SIM_ASSERT(!writer_);
            ++readers_;
            return;
        }
        CoopScheduler::sync_point();
        if (writer_ && owner_ == t)
            CoopScheduler::fail("reads a shared mutex it holds exclusively");
        while (writer_) t->sched->block_on(*t, this);
        ++readers_;
    }
    void unlock_shared() {
        PCACHE_SIM_ASSERT(readers_ > 0);
        if (--readers_ == 0) wake();
    }

private:
    void wake() {
        if (CoopTask* t = tl_coop_task) t->sched->wake(this);
    }
    bool writer_ = false;
    std::uint32_t readers_ = 0;
    CoopTask* owner_ = nullptr;
};

}  // namespace pcache::sim
