// Concurrent simulation: Cache<CoopPmem, CoopBlock> driven by several simulated threads
// (writers, readers, writeback, GC, kset flush) under the seeded cooperative scheduler.
//
// A run is `rounds` rounds. In a round every task runs to its end under the scheduler:
//   writer i   `ops` writes (a hot 64 KiB region or anywhere; 1..64 sectors, 1 in 8 up to 256;
//              FUA 1 in 8; FLUSH 1 in 16), each sector stamped with the write's id; busy is
//              retried
//   reader i   `ops` reads, every sector checked by the IntervalOracle (interval_oracle.hpp)
//   writeback  writeback_step() while a client task runs
//   gc         gc_step() while a client task runs
//   flusher    flush_ksets() while a client task runs (the kernel's kset timer)
// No fault is injected, so every engine error is a failure, and so is a busy write or FLUSH
// that makes no progress for `busy_retries_max` tries (a wedge). At the end of a round (a
// quiescent point) the invariant checker runs and every sector is read and settled; after the
// last round the cache is flushed and written back to clean and the backing device must hold
// exactly the settled data.
//
// With crash_at, the run is cut at that persistence point (a SimCrash thrown by the hook in one
// task stops them all), sampled crash images are recovered, and every sector must hold a write
// not replaced by a durable one (IntervalOracle::check_after_crash).
//
// A failure is one line ending in the command that replays exactly that run (every parameter
// is in PCACHE_CSIM=...). The trace hash covers every scheduling choice and device event.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "pcache/cache/cache.hpp"
#include "pcache/sim/block_explorer.hpp"
#include "pcache/sim/coop_devices.hpp"
#include "pcache/sim/interval_oracle.hpp"

namespace pcache::sim {

struct ConcurrentConfig {
    static constexpr std::uint64_t kHotBytes = 64 << 10;
    std::uint64_t seed = 1;
    std::uint32_t writers = 2;
    std::uint32_t readers = 2;
    std::uint64_t ops = 60;  // per client task and round
    std::uint32_t rounds = 2;
    std::uint64_t segment_kib = 64;
    std::uint32_t segs = 8;
    std::uint64_t backing_kib = 1024;
    std::uint64_t hot_kib = 0;  // the 64 KiB region every task works in starts here
    std::uint32_t n_lanes = 1;  // a task runs on lane (task index) % n_lanes
    bool data_crc = false;
    std::uint32_t gc_percent = 0;
    std::uint32_t stay_percent = 50;  // scheduler: keep the running task at a point (percent)
    bool fill_on_read_miss = true;
    std::uint64_t busy_retries_max = 20000;
    std::uint64_t crash_at = 0;      // cut the run at this persistence point (1-based; 0: never)
    std::uint64_t crash_states = 4;  // crash images recovered and checked (sampled)
    std::string binary = "build/dev/tests/concurrency/concurrent_sim_test";
    std::string gtest_filter = "ConcurrentSim.Campaign";

    // Calls f(name, field) for every parameter (the reproduce line carries them all).
    template <class Self, class F>
    static void for_each_field(Self& c, F&& f) {
        f("seed", c.seed);
        f("writers", c.writers);
        f("readers", c.readers);
        f("ops", c.ops);
        f("rounds", c.rounds);
        f("segment_kib", c.segment_kib);
        f("segs", c.segs);
        f("backing_kib", c.backing_kib);
        f("hot_kib", c.hot_kib);
        f("n_lanes", c.n_lanes);
        f("data_crc", c.data_crc);
        f("gc_percent", c.gc_percent);
        f("stay_percent", c.stay_percent);
        f("fill_on_read_miss", c.fill_on_read_miss);
        f("busy_retries_max", c.busy_retries_max);
        f("crash_at", c.crash_at);
        f("crash_states", c.crash_states);
    }
    std::string to_string() const {
        std::string s;
        for_each_field(*this, [&](const char* name, const auto& v) {
            s += (s.empty() ? "" : ",") + std::string(name) + "=" + std::to_string(v);
        });
        return s;
    }
    // Reads "key=value,..." over this config; returns an error naming a bad item.
    Status parse(std::string_view text) {
        while (!text.empty()) {
            const auto comma = text.find(',');
            const std::string_view item = text.substr(0, comma);
            text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
            const auto eq = item.find('=');
            const std::string key(item.substr(0, eq));
            const std::string value(eq == std::string_view::npos ? "" : item.substr(eq + 1));
            char* end = nullptr;
            const unsigned long long v = std::strtoull(value.c_str(), &end, 10);
            if (value.empty() || *end != '\0')
                return {Errc::invalid_argument,
                        "PCACHE_CSIM item \"" + std::string(item) + "\": expected key=<decimal>"};
            bool known = false;
            for_each_field(*this, [&](const char* name, auto& field) {
                if (key != name) return;
                field = static_cast<std::remove_reference_t<decltype(field)>>(v);
                known = true;
            });
            if (!known) return {Errc::invalid_argument, "PCACHE_CSIM: unknown key \"" + key + "\""};
        }
        if (writers + readers == 0 || writers + readers > 16 || rounds == 0 || segs < 4 ||
            stay_percent >= 100 || backing_kib < 128 || backing_kib % 64 != 0 ||
            hot_kib + (kHotBytes >> 10) > backing_kib)
            return {Errc::invalid_argument, "PCACHE_CSIM: out of range: " + to_string()};
        return {};
    }
    std::string reproduce() const {
        return "PCACHE_CSIM=" + to_string() + " " + binary + " --gtest_filter='" + gtest_filter +
               "'";
    }
    std::uint64_t pmem_bytes() const {
        return format::kSegmentsOffsetBytes + std::uint64_t(segs) * (segment_kib << 10);
    }
};

// Varies the shape of a campaign run with its seed (the result is printed in full).
inline ConcurrentConfig derive_config(ConcurrentConfig c, std::uint64_t seed) {
    Rng r(seed ^ 0xC0C0A5EEDull);
    c.seed = seed;
    c.stay_percent = std::array<std::uint32_t, 3>{0, 50, 90}[r.below(3)];
    c.gc_percent = std::array<std::uint32_t, 3>{0, 30, 70}[r.below(3)];
    c.data_crc = r.below(3) == 0;
    c.n_lanes = r.below(2) == 0 ? 1 : 2;
    c.segs = std::array<std::uint32_t, 3>{6, 8, 16}[r.below(3)];
    c.writers = 1 + static_cast<std::uint32_t>(r.below(3));
    c.readers = 1 + static_cast<std::uint32_t>(r.below(3));
    c.ops = r.below(2) == 0 ? 40 : 80;
    if (r.below(3) == 0) {  // two subtrees; writes split at the 4 MiB boundary
        c.backing_kib = 8192;
        c.hot_kib = 4096 - 32;
    }
    if (r.below(3) == 0) c.crash_at = 1 + r.below(c.ops * 30);  // ~ the run's persistence points
    return c;
}

struct ConcurrentResult {
    std::uint64_t trace_hash = 0;
    std::uint64_t sync_points = 0;
    std::uint64_t switches = 0;
    std::uint64_t writes = 0;
    std::uint64_t reads = 0;
    std::uint64_t sectors_checked = 0;
    std::uint64_t busy_retries = 0;
    std::uint64_t persist_points = 0;
    std::uint64_t crash_states_checked = 0;
    CacheCounters counters;
    std::string failure;  // empty: passed; else one line ending in the reproduce command
    bool ok() const { return failure.empty(); }
};

class ConcurrentRun {
public:
    using SimCache = Cache<CoopPmem, CoopBlock>;

    explicit ConcurrentRun(ConcurrentConfig cfg)
        : cfg_(std::move(cfg)),
          machine_(cfg_.pmem_bytes(), cfg_.backing_kib << 10, PmemMode::x86),
          oracle_(cfg_.backing_kib << 10) {}

    ConcurrentResult run() {
        CacheOptions o;
        o.data_crc = cfg_.data_crc;
        o.geometry.segment_bytes = cfg_.segment_kib << 10;
        o.n_lanes = cfg_.n_lanes;
        o.fill_on_read_miss = cfg_.fill_on_read_miss;
        o.close_on_destroy = false;  // a dropped cache is a power cut
        auto opened = SimCache::format(borrow(machine_.pmem), borrow(machine_.block), o);
        if (!opened.ok()) return finish("open: " + opened.status().to_string(), true);
        cache_ = std::move(opened.value());
        if (Status s = cache_->set_gc_percent(cfg_.gc_percent); !s.ok())
            return finish("gc_percent: " + s.to_string(), true);
        machine_.ctx.crash_at(cfg_.crash_at);
        std::string failure;
        try {
            failure = run_rounds();
        } catch (const SimCrash&) {  // the crash point fell in a check run by this thread
            failure = crash_check();
        }
        return finish(std::move(failure), harness_error_);
    }

private:
    std::string run_rounds() {
        CoopScheduler sched({.seed = cfg_.seed, .stay_percent = cfg_.stay_percent}, machine_.ctx);
        for (std::uint32_t round = 0; round < cfg_.rounds; ++round) {
            spawn_round(sched, round);
            const auto outcome = sched.run();
            result_.sync_points += sched.sync_points();
            result_.switches += sched.switches();
            if (outcome.crashed) return crash_check();
            harness_error_ = outcome.threw;
            if (!outcome.ok()) return "round " + std::to_string(round) + ": " + outcome.failure;
            if (std::string why = quiescent_check(); !why.empty())
                return "round " + std::to_string(round) + " (quiescent): " + why;
        }
        if (std::string why = final_check(); !why.empty()) return "final: " + why;
        return {};
    }

    static constexpr std::uint64_t kHotBytes = ConcurrentConfig::kHotBytes;

    void spawn_round(CoopScheduler& sched, std::uint32_t round) {
        clients_ = cfg_.writers + cfg_.readers;
        for (std::uint32_t i = 0; i < cfg_.writers; ++i)
            sched.spawn("writer" + std::to_string(i), [this, i, round] {
                client(Rng(cfg_.seed ^ (0x1000 + 16 * round + i) * 0x9E3779B97F4A7C15ull), true);
            });
        for (std::uint32_t i = 0; i < cfg_.readers; ++i)
            sched.spawn("reader" + std::to_string(i), [this, i, round] {
                client(Rng(cfg_.seed ^ (0x2000 + 16 * round + i) * 0x9E3779B97F4A7C15ull), false);
            });
        sched.spawn("writeback",
                    [this] { background([this] { return cache_->writeback_step(); }); });
        sched.spawn("gc", [this] { background([this] { return cache_->gc_step(); }); });
        sched.spawn("flusher", [this] {
            background([this] {
                Status s = cache_->flush_ksets();
                if (s.code() == Errc::busy) s = {};  // a client FLUSH insists; the timer retries
                return SimCache::StepResult{false, s};
            });
        });
    }

    template <class Step>
    void background(Step step) {
        while (clients_ > 0) {
            const auto r = step();
            if (!r.status.ok()) CoopScheduler::fail(r.status.to_string());
            if (!r.progressed) CoopScheduler::sync_point();
        }
    }

    // A range: the hot region (shared by every task) or anywhere on the device.
    std::pair<std::uint64_t, std::uint64_t> pick_range(Rng& r) const {
        const std::uint64_t sectors = (cfg_.backing_kib << 10) / kOracleSectorBytes;
        const bool hot = r.below(3) != 0;
        const std::uint64_t base = hot ? (cfg_.hot_kib << 10) / kOracleSectorBytes : 0;
        const std::uint64_t area = hot ? kHotBytes / kOracleSectorBytes : sectors;
        const std::uint64_t first = r.below(area);
        const std::uint64_t want = r.below(8) == 0 ? 64 + r.below(193) : 1 + r.below(64);
        return {base + first, std::min(want, area - first)};
    }

    void client(Rng r, bool writer) {
        for (std::uint64_t op = 0; op < cfg_.ops; ++op) {
            if (writer && r.below(16) == 0) {
                const std::uint64_t start = oracle_.tick();
                retry_busy("FLUSH", [this](std::uint64_t&) { return cache_->flush(); });
                oracle_.flushed(start);
                continue;
            }
            const auto [first, count] = pick_range(r);
            if (writer)
                write(first, count, r.below(8) == 0);
            else
                read(first, count);
        }
        --clients_;
    }

    // Calls op until it is not busy; op may advance `done` (bytes of a write completed).
    template <class Op>
    void retry_busy(const char* what, Op op) {
        std::uint64_t done = 0;
        for (std::uint64_t tries = 0;; ++tries) {
            const Status s = op(done);
            if (s.ok()) return;
            if (s.code() != Errc::busy)
                CoopScheduler::fail(std::string(what) + " failed: " + s.to_string());
            if (tries == cfg_.busy_retries_max)
                CoopScheduler::fail(std::string(what) + " still busy after " +
                                    std::to_string(tries) + " retries (wedged): " + s.to_string() +
                                    " | status " + cache_->status_line());
            ++result_.busy_retries;
            CoopScheduler::sync_point();
        }
    }

    void write(std::uint64_t first, std::uint64_t count, bool fua) {
        const std::uint64_t id = oracle_.begin_write(first, count);
        std::vector<std::byte> buf(count * kOracleSectorBytes);
        for (std::uint64_t i = 0; i < count; ++i)
            oracle_fill_sector(id, first + i, buf.data() + i * kOracleSectorBytes);
        const std::uint64_t off = first * kOracleSectorBytes;
        retry_busy(fua ? "FUA write" : "write", [&](std::uint64_t& done) {
            std::uint64_t more = 0;
            const WriteResult w =
                cache_->write(off + done, std::span(buf).subspan(done), {.fua = fua});
            more = w.done_bytes;
            Status s = w.status;
            done += more;
            return s;
        });
        oracle_.end_write(first, count, id, fua);
        ++result_.writes;
    }

    void read(std::uint64_t first, std::uint64_t count) {
        std::vector<std::byte> buf(count * kOracleSectorBytes);
        const std::uint64_t rs = oracle_.tick();
        if (Status s = cache_->read(first * kOracleSectorBytes, buf); !s.ok())
            CoopScheduler::fail("read of sectors [" + std::to_string(first) + ", +" +
                                std::to_string(count) + ") failed: " + s.to_string());
        const std::uint64_t re = oracle_.tick();
        for (std::uint64_t i = 0; i < count; ++i) {
            std::string why;
            if (!oracle_.check(first + i, buf.data() + i * kOracleSectorBytes, rs, re, why))
                CoopScheduler::fail("read [t" + std::to_string(rs) + ", t" + std::to_string(re) +
                                    "] returned wrong data: " + why);
        }
        result_.sectors_checked += count;
        ++result_.reads;
    }

    // No task runs: the invariants hold and every sector reads as one settled write.
    std::string quiescent_check() {
        if (Status s = cache_->check_invariants(); !s.ok()) return "invariants: " + s.to_string();
        std::vector<std::byte> buf(64 << 10);
        const std::uint64_t per = buf.size() / kOracleSectorBytes;
        for (std::uint64_t first = 0; first < oracle_.sector_count(); first += per) {
            if (Status s = cache_->read(first * kOracleSectorBytes, buf); !s.ok())
                return "read at sector " + std::to_string(first) + ": " + s.to_string();
            for (std::uint64_t i = 0; i < per; ++i) {
                std::string why;
                if (!oracle_.settle(first + i, buf.data() + i * kOracleSectorBytes, why))
                    return why;
            }
        }
        return {};
    }

    // Flush, write back to clean, and compare the backing device with the settled data.
    std::string final_check() {
        for (int i = 0; i < 1000 && !cache_->is_clean(); ++i) {  // bounded
            if (Status s = cache_->flush(); !s.ok() && s.code() != Errc::busy)
                return "flush: " + s.to_string();
            const auto wb = cache_->writeback_step();
            if (!wb.status.ok()) return "writeback: " + wb.status.to_string();
            if (const auto gc = cache_->gc_step(); !gc.status.ok())
                return "gc: " + gc.status.to_string();
        }
        if (!cache_->is_clean()) return "the cache does not become clean: " + cache_->status_line();
        if (Status s = cache_->check_invariants(); !s.ok()) return "invariants: " + s.to_string();
        if (Status s = cache_->close(); !s.ok()) return "close: " + s.to_string();
        std::vector<std::byte> sector(kOracleSectorBytes);
        for (std::uint64_t s = 0; s < oracle_.sector_count(); ++s) {
            if (Status st = machine_.block.read_durable(s * kOracleSectorBytes, sector); !st.ok())
                return "backing read: " + st.to_string();
            std::uint64_t id = 0;
            if (!oracle_identify_sector(sector.data(), s, id) || id != oracle_.settled_id(s))
                return "backing sector " + std::to_string(s) + " after writeback: expected write " +
                       std::to_string(oracle_.settled_id(s)) + ", found " +
                       (oracle_identify_sector(sector.data(), s, id) ? "write " + std::to_string(id)
                                                                     : "bytes no write produced");
        }
        return {};
    }

    // The run was cut at cfg_.crash_at: the process is gone; recover sampled crash images
    // (state 0 loses everything pending, 1 keeps everything, the rest drawn from the seed).
    std::string crash_check() {
        result_.counters = cache_->counters();
        cache_.reset();
        machine_.ctx.crash_at(0);
        SystemExplorer ex(machine_.pmem, machine_.block, {.seed = cfg_.seed ^ cfg_.crash_at},
                          {.seed = cfg_.seed ^ cfg_.crash_at});
        Rng pick(cfg_.seed ^ cfg_.crash_at ^ 0xC4A5Full);
        const std::uint64_t n = std::min(ex.state_count(), cfg_.crash_states);
        for (std::uint64_t i = 0; i < n; ++i) {
            const std::uint64_t state = i < 2 ? i : pick.below(ex.state_count());
            ex.apply(state);
            std::string why = recover_and_check();
            ex.rollback();
            ++result_.crash_states_checked;
            if (!why.empty())
                return "crash at persistence point " + std::to_string(cfg_.crash_at) + ", image " +
                       std::to_string(state) + " of " + std::to_string(ex.state_count()) + ": " +
                       why;
        }
        return {};
    }

    std::string recover_and_check() {
        CacheOptions o;
        o.data_crc = cfg_.data_crc;
        o.geometry.segment_bytes = cfg_.segment_kib << 10;
        o.n_lanes = cfg_.n_lanes;
        o.fill_on_read_miss = false;
        o.close_on_destroy = false;
        auto opened = SimCache::open(borrow(machine_.pmem), borrow(machine_.block), o);
        if (!opened.ok()) return "recovery: " + opened.status().to_string();
        auto& cache = *opened.value();
        if (Status s = cache.check_invariants(); !s.ok()) return "invariants: " + s.to_string();
        std::vector<std::byte> buf(64 << 10);
        const std::uint64_t per = buf.size() / kOracleSectorBytes;
        for (std::uint64_t first = 0; first < oracle_.sector_count(); first += per) {
            if (Status s = cache.read(first * kOracleSectorBytes, buf); !s.ok())
                return "read after recovery at sector " + std::to_string(first) + ": " +
                       s.to_string();
            for (std::uint64_t i = 0; i < per; ++i) {
                std::string why;
                if (!oracle_.check_after_crash(first + i, buf.data() + i * kOracleSectorBytes, why))
                    return why;
            }
        }
        return {};
    }

    // A verdict of the oracle (wrong data, a read error, a failed invariant, a deadlock, a wedge,
    // a lost durable write) carries the marker scripts/mutants.sh counts; an exception out of a
    // task or a failed setup is a harness error.
    ConcurrentResult finish(std::string failure, bool harness_error = false) {
        if (cache_) result_.counters = cache_->counters();
        result_.persist_points = machine_.ctx.persist_points;
        cache_.reset();
        TraceHash h = machine_.ctx.trace;
        h.mix(result_.writes);
        h.mix(result_.reads);
        h.mix(failure.size());
        result_.trace_hash = h.value();
        if (!failure.empty())
            result_.failure = (harness_error ? "HARNESS ERROR: " : "ORACLE VIOLATION: ") + failure +
                              " | REPRODUCE " + cfg_.reproduce();
        return std::move(result_);
    }

    ConcurrentConfig cfg_;
    CoopMachine machine_;
    IntervalOracle oracle_;
    std::unique_ptr<SimCache> cache_;
    bool harness_error_ = false;
    std::uint32_t clients_ = 0;  // client tasks still running (touched by the baton holder only)
    ConcurrentResult result_;
};

inline ConcurrentResult run_concurrent(const ConcurrentConfig& cfg) {
    return ConcurrentRun(cfg).run();
}

}  // namespace pcache::sim
