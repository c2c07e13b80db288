// Runtime: runs a cache's background work on threads, for production use.
//
// The engine only exposes steps (writeback_step, gc_step, flush_ksets); this object owns the
// threads that call them, the wake-ups and the kernel's timers. Writeback follows the watermarks
// (WritebackPolicy, writeback_policy.hpp): it starts when dirty bytes pass the high mark (the
// cache's wake hook), a write finds the cache full, a paced write needs credit or wake() is
// called, and stops at the low mark; an idle cache (no data written for
// RuntimeOptions::idle_writeback, 5 s) is written back until clean, as the kernel's periodic
// writeback does. Writeback progress wakes GC; GC re-polls every 5 s when idle
// (PCACHE_CACHE_GC_INTERVAL) and buffered keys are persisted within 1 s (the kset flush delay,
// whose tick also runs the idle and high-mark checks). It is the only part of pcache that reads
// the clock; the simulator drives the same steps itself, from a seed, and never uses it.
//
// write_blocking() is the blocking API: a busy cache waits for writeback/GC progress instead
// of failing. Near full (Cache::throttle_wanted) it paces writes to writeback progress: each
// write takes credit the writeback thread earns per batch of backing writes, so many writes
// wait a little instead of a few waiting for a whole segment of writeback and GC (issue 17).
// flush_all() writes back until clean, reporting progress. Every timeout is a RuntimeOptions field.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "pcache/cache/options.hpp"
#include "pcache/result.hpp"
#include "pcache/writeback_policy.hpp"

namespace pcache {

struct FlushProgress {
    std::uint64_t dirty_bytes_left = 0;
    std::uint64_t written_back_bytes = 0;
    double rate_bytes_per_s = 0;
};

// What write_blocking waited for (stats()).
struct RuntimeStats {
    std::uint64_t paced_writes = 0;  // writes that found the cache near full (throttle_wanted)
    std::uint64_t pace_waits = 0;    // ... of them, waited for writeback credit
    std::uint64_t busy_waits = 0;    // writes that found the cache full (busy) and waited
};

// Every interval and timeout of a Runtime. Field order is stable (aggregate initialisation).
struct RuntimeOptions {
    static constexpr std::chrono::milliseconds never = std::chrono::milliseconds::max();
    std::chrono::milliseconds idle_poll{5000};  // GC (and a writeback check) when nothing happens
    // Buffered keys become durable within this; each tick also checks the high mark and idleness.
    std::chrono::milliseconds kset_flush{1000};
    // A failed step (a backing device error) is retried after 1 ms, doubling up to this.
    std::chrono::milliseconds retry_max{1000};
    // flush_all retries a step that failed with an I/O error (a network backing device's
    // transient EIO or lost connection) with the same backoff, and gives up when this long
    // passed without progress.
    std::chrono::milliseconds flush_retry_for{30000};
    // write_blocking gives up (Errc::busy) when background work made no progress this long.
    std::chrono::milliseconds write_timeout{std::chrono::minutes(5)};
    // flush_blocking (and flush_all's FLUSH) gives up (Errc::busy) after this long busy.
    std::chrono::milliseconds flush_timeout{10000};
    // A write that finds the cache near full (Cache::throttle_wanted) waits at most this long
    // for writeback credit, then goes on (it may then find busy and wait as above).
    std::chrono::milliseconds pace_max{100};
    // Idle drain: once no data has come into the cache (writes, read-miss fills) for this long,
    // the next kset_flush tick starts writing everything back, below the low mark too; `never`
    // leaves dirty data at or below the low mark until something needs room (dm-writecache
    // without max_age). 5 s: the kernel's writeback interval (PCACHE_CACHE_WRITEBACK_INTERVAL).
    std::chrono::milliseconds idle_writeback{5000};
};

// Lifecycle: construct over a cache (it must outlive the Runtime: declare the Runtime after
// the cache; ~Cache aborts if a Runtime is still attached), start() once, stop() once (the
// destructor stops if you did not). A stopped Runtime does not start again: make a new one.
template <class CacheT>
class Runtime {
public:
    using Clock = std::chrono::steady_clock;

    explicit Runtime(CacheT& cache) : Runtime(cache, RuntimeOptions{}) {}
    Runtime(CacheT& cache, RuntimeOptions opts) : cache_(cache), iv_(opts) {
        ++cache_.runtime_attached_;
    }
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;
    ~Runtime() {
        stop();
        --cache_.runtime_attached_;
    }

    // Starts the writeback, GC and kset-flush threads. Refuses a second start, a start after
    // stop and a read-only cache.
    Status start() {
        if (cache_.read_only())
            return {Errc::read_only, "Runtime::start: the cache was opened read-only"};
        {
            std::lock_guard g(mutex_);
            if (state_ != State::created)
                return {Errc::invalid_argument,
                        state_ == State::running
                            ? "Runtime::start: already running"
                            : "Runtime::start: stopped (a Runtime starts once)"};
            state_ = State::running;
            policy_ = WritebackPolicy(iv_.idle_writeback, Clock::now(), written_bytes(),
                                      cache_.dirty_bytes(), cache_.dirty_high_bytes());
            writeback_ = std::thread([this] { loop(&Runtime::writeback_once); });
            gc_ = std::thread([this] { loop(&Runtime::gc_once); });
            timer_ = std::thread([this] { timer_loop(); });
        }
        // Dirty bytes above the high mark, or a full cache: wake now (not under mutex_: the
        // hook runs under the cache's hook lock and takes mutex_).
        cache_.set_wake_hook(&Runtime::wake_thunk, this);
        cache_.set_progress_hook(&Runtime::progress_thunk, this);
        return {};
    }
    // Stops and joins the threads (idempotent). The cache stays open: close it, or let its
    // destructor close it.
    void stop() {
        {
            std::lock_guard g(mutex_);
            if (state_ != State::running) {
                state_ = State::stopped;
                return;
            }
        }
        cache_.set_wake_hook(nullptr, nullptr);  // not under mutex_: the hook takes it
        cache_.set_progress_hook(nullptr, nullptr);
        {
            std::lock_guard g(mutex_);
            state_ = State::stopped;
        }
        wake_.notify_all();
        progress_.notify_all();  // writers waiting for credit or room see the stop now
        for (auto* t : {&writeback_, &gc_, &timer_})
            if (t->joinable()) t->join();
    }
    bool running() const {
        std::lock_guard g(mutex_);
        return state_ == State::running;
    }
    const RuntimeOptions& options() const { return iv_; }
    // A busy writer (or the high mark): write back now, until the low mark (at least one step),
    // and let GC look.
    void wake() {
        {
            std::lock_guard g(mutex_);
            policy_.kick();
            ++wake_seq_;
        }
        wake_.notify_all();
    }
    RuntimeStats stats() const {
        std::lock_guard g(mutex_);
        return stats_;
    }
    // The first error background work met (ok if none). Whether writeback is failing *now*:
    // the cache's writeback_health().
    Status last_error() const {
        std::lock_guard g(mutex_);
        return error_;
    }

    // A write that waits for room instead of failing with busy. Gives up only on a real error,
    // when the Runtime is not running, or when background work made no progress for
    // options().write_timeout; done_bytes then says how much was written.
    WriteResult write_blocking(std::uint64_t off, std::span<const std::byte> data,
                               WriteOptions wo = {}) {
        std::uint64_t total = 0;
        if (cache_.throttle_wanted()) pace(data.size());
        for (auto deadline = Clock::now() + iv_.write_timeout;;) {
            WriteResult r = cache_.write(off, data, wo);
            total += r.done_bytes;
            if (r.code() != Errc::busy) return {r.status, total};
            off += r.done_bytes;
            data = data.subspan(r.done_bytes);
            // Buffered keys pin data segments until their ksets are in the log, where
            // writeback can reach them: close the buffers now instead of at the next timer.
            if (Status fs = cache_.flush_ksets(); !fs.ok() && fs.code() != Errc::busy)
                return {fs, total};
            const std::uint64_t seen = progress_seq();
            wake();
            std::unique_lock l(mutex_);
            ++stats_.busy_waits;
            progress_.wait_for(l, std::chrono::milliseconds(100),
                               [&] { return progress_seq_ != seen || state_ != State::running; });
            if (progress_seq_ != seen) deadline = Clock::now() + iv_.write_timeout;
            if (state_ != State::running)
                return {Status(Errc::busy,
                               r.status.message() + " (the Runtime is not running: start() it)"),
                        total};
            if (Clock::now() > deadline)
                return {Status(Errc::busy, "cache full and writeback/GC made no progress for " +
                                               std::to_string(iv_.write_timeout.count()) +
                                               " ms: " + r.status.message()),
                        total};
        }
    }
    // FLUSH that waits out busy (closing a kset needs room in the key log) for at most
    // options().flush_timeout.
    Status flush_blocking() {
        const auto deadline = Clock::now() + iv_.flush_timeout;
        for (;;) {
            Status s = cache_.flush();
            if (s.code() != Errc::busy) return s;
            if (Clock::now() > deadline)
                return {Errc::busy, "flush still busy after " +
                                        std::to_string(iv_.flush_timeout.count()) +
                                        " ms: " + s.message()};
            wake();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    // Writes back until clean (on the calling thread), calling `progress` after each kset.
    Status flush_all(const std::function<void(const FlushProgress&)>& progress = {}) {
        PCACHE_TRY(flush_blocking());
        const auto start = Clock::now();
        const std::uint64_t total = cache_.dirty_bytes();
        auto last_progress = Clock::now();
        std::chrono::milliseconds backoff{0};
        for (std::uint64_t steps = 0; !cache_.is_clean(); ++steps) {
            auto r = cache_.writeback_step();
            if (!r.status.ok()) {
                if (r.status.code() != Errc::io ||
                    Clock::now() - last_progress >= iv_.flush_retry_for)
                    return r.status;
                backoff =
                    std::min(iv_.retry_max, std::max(std::chrono::milliseconds(1), backoff * 2));
                std::this_thread::sleep_for(backoff);
                continue;
            }
            if (r.progressed) {
                backoff = std::chrono::milliseconds(0);
                last_progress = Clock::now();
            }
            if (!r.progressed) {
                PCACHE_TRY(flush_blocking());  // keys still buffered: persist them
                if (!cache_.is_clean()) std::this_thread::yield();
            }
            if (progress) {
                const double s = std::chrono::duration<double>(Clock::now() - start).count();
                const std::uint64_t left = cache_.dirty_bytes();
                const std::uint64_t done = total > left ? total - left : 0;
                progress(FlushProgress{left, done, s > 0 ? done / s : 0});
            }
            if (steps > (1ull << 40)) return {Errc::io, "flush_all: no end in sight"};
        }
        return {};
    }

private:
    static void wake_thunk(void* self) { static_cast<Runtime*>(self)->wake(); }
    // Writeback credit a burst may use at once once the cache is near full.
    static constexpr std::uint64_t kCreditMax = 1 << 20;
    static void progress_thunk(void* self, std::uint64_t bytes) {
        auto* rt = static_cast<Runtime*>(self);
        {
            std::lock_guard g(rt->mutex_);
            rt->credit_ = std::min(kCreditMax, rt->credit_ + bytes);
            if (rt->pace_waiters_) rt->writer_woken_.store(true, std::memory_order_relaxed);
        }
        rt->progress_.notify_all();
    }
    // A write near full takes `len` bytes of writeback credit, waiting for it while the
    // writeback thread is in a step or between progressing ones (at most options().pace_max).
    // It does not wait when writeback is idle (nothing written back yet to earn credit from: it
    // wakes it instead), failing or in its backoff, or the Runtime is stopped: the write then
    // goes on as before and may find busy.
    void pace(std::uint64_t len) {
        len = std::min(len, kCreditMax);  // a larger write waits for a full burst, not forever
        std::unique_lock l(mutex_);
        if (state_ != State::running) return;
        ++stats_.paced_writes;
        if (credit_ < len && !wb_active_) {
            policy_.kick();
            ++wake_seq_;
            wake_.notify_all();
        } else if (credit_ < len) {
            ++stats_.pace_waits;
            ++pace_waiters_;
            progress_.wait_for(l, iv_.pace_max, [&] {
                return credit_ >= len || !wb_active_ || state_ != State::running;
            });
            --pace_waiters_;
            writer_woken_.store(false, std::memory_order_relaxed);
        }
        credit_ -= std::min(credit_, len);
    }
    using Step = bool (Runtime::*)(bool& failed);
    // A step only when the policy wants one (above the low mark once started, a kick, an idle
    // drain); otherwise the thread waits for the next wake-up. Writeback progress may have made
    // ksets collectable: let GC look now (it waits for its threshold itself), not at the next
    // timer.
    bool writeback_once(bool& failed) {
        bool step;
        {
            std::lock_guard g(mutex_);
            step = wb_active_ = policy_.want_step(cache_.dirty_bytes(), cache_.dirty_low_bytes());
        }
        const bool progressed = step && record(cache_.writeback_step(), failed);
        {
            std::lock_guard g(mutex_);
            if (step) policy_.stepped(progressed);
            if (progressed) ++wake_seq_;
            wb_active_ = progressed;  // stopped, idle or failing: paced writes stop waiting
        }
        (progressed ? wake_ : progress_).notify_all();
        return progressed;
    }
    bool gc_once(bool& failed) { return record(cache_.gc_step(), failed); }
    template <class R>
    bool record(const R& r, bool& failed) {
        failed = !r.status.ok();
        if (failed) {
            std::lock_guard g(mutex_);
            if (error_.ok()) error_ = r.status;
        }
        if (r.progressed) {
            {
                std::lock_guard g(mutex_);
                ++progress_seq_;
            }
            progress_.notify_all();
        }
        return r.progressed;
    }
    std::uint64_t progress_seq() {
        std::lock_guard g(mutex_);
        return progress_seq_;
    }
    // Data that came into the cache (writes and read-miss fills): the idle drain's clock.
    std::uint64_t written_bytes() const { return cache_.counters().pmem_written_bytes; }
    // Runs a step while it progresses; waits for a wake-up or the idle poll when it has nothing
    // to do; after a failure, backs off (1 ms doubling to retry_max; wake-ups do not cut a
    // backoff short, stop does) and tries again: writeback resumes by itself when the backing
    // device recovers.
    void loop(Step step) {
        std::chrono::milliseconds backoff{0};
        std::uint64_t seen;  // wake_seq_ before the step: a wake-up during it is never lost
        {
            std::lock_guard g(mutex_);
            seen = wake_seq_;
        }
        for (;;) {
            bool failed = false;
            const bool progressed = (this->*step)(failed);
            std::unique_lock l(mutex_);
            if (state_ != State::running) return;
            if (progressed) {
                backoff = std::chrono::milliseconds(0);
                seen = wake_seq_;
                l.unlock();
                // A paced writer woken by credit and not yet running: let it have this CPU
                // (back-to-back GC steps, one kset each, held a core for milliseconds under
                // SCHED_FIFO). Only then: a yield hands the core to every other runnable
                // process too, which on a loaded machine starves GC.
                if (writer_woken_.load(std::memory_order_relaxed)) std::this_thread::yield();
                continue;
            }
            if (failed) {
                backoff =
                    std::min(iv_.retry_max, std::max(std::chrono::milliseconds(1), backoff * 2));
                wake_.wait_for(l, backoff, [&] { return state_ != State::running; });
            } else {
                backoff = std::chrono::milliseconds(0);
                wake_.wait_for(l, iv_.idle_poll,
                               [&] { return state_ != State::running || wake_seq_ != seen; });
            }
            if (state_ != State::running) return;
            seen = wake_seq_;
        }
    }
    // Every kset_flush: close the kset buffers, then let the policy check the high mark and
    // idleness, and wake writeback (which steps only if the policy wants) and GC.
    void timer_loop() {
        std::unique_lock l(mutex_);
        while (state_ == State::running) {
            wake_.wait_for(l, iv_.kset_flush, [&] { return state_ != State::running; });
            if (state_ != State::running) return;
            l.unlock();
            const Status s = cache_.flush_ksets();
            const std::uint64_t written = written_bytes(), dirty = cache_.dirty_bytes();
            l.lock();
            if (s.code() == Errc::busy) policy_.kick();
            policy_.tick(Clock::now(), written, dirty, cache_.dirty_high_bytes());
            ++wake_seq_;
            wake_.notify_all();
        }
    }

    enum class State { created, running, stopped };
    CacheT& cache_;
    RuntimeOptions iv_;
    mutable std::mutex mutex_;
    std::condition_variable wake_, progress_;
    State state_ = State::created;
    std::uint64_t wake_seq_ = 0, progress_seq_ = 0;
    std::uint64_t credit_ = 0;  // writeback bytes not yet taken by paced writes
    // The writeback thread is in a step, or between progressing ones: paced writes wait for it.
    bool wb_active_ = false;
    int pace_waiters_ = 0;                   // writers waiting in pace()
    std::atomic<bool> writer_woken_{false};  // credit came for them; they have not run yet
    WritebackPolicy policy_{RuntimeOptions::never, {}, 0, 0, 0};  // when writeback runs; start()
    RuntimeStats stats_;
    Status error_;
    std::thread writeback_, gc_, timer_;
};

}  // namespace pcache
