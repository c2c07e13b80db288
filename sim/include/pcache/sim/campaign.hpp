// Crash campaigns: Cache<SimPmem, SimBlockDevice> under a workload, cut at every persistence
// point, every crash image recovered and checked against the oracle of crash-model.md.
//
// One run executes the workload once. At each selected persistence point (every pmem drain and
// block flush, numbered from 1) the hook suspends the workload *before* the fence takes effect,
// enumerates or samples the crash images (SystemExplorer), and for each one: applies it (a
// reboot), recovers with Cache::open, checks every written sector (oracle.hpp), optionally
// recovers a second time (idempotence), drives writeback to clean and compares the backing
// device (with data_crc: flips a cached data byte and demands an error, never the bytes), and
// rolls the devices back. The workload then continues from exactly where it was. With
// recovery_crashes, recovery itself is cut at its persistence points and the nested images are
// recovered and checked again.
//
// The campaign also counts what its workload reached (reach.hpp): segment switches, LAST
// ksets, log wraps, GC runs, stripe splits, sequence wraps, work after recovery.
//
// Determinism: every choice comes from the seed; the trace hash covers the workload's
// persistence events and the verdicts. A failure names (seed, mode, ops, geometry, crash point,
// state[, recovery point, recovery state]) and the `pcache sim` command replaying exactly it.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "pcache/cache/cache.hpp"
#include "pcache/sim/crash_run.hpp"
#include "pcache/sim/image_check.hpp"
#include "pcache/sim/reach.hpp"
#include "pcache/sim/workload.hpp"

namespace pcache::sim {

struct CampaignResult {
    std::uint64_t ops_run = 0;
    std::uint64_t persist_points = 0;  // of the workload
    std::uint64_t crash_points_explored = 0;
    std::uint64_t states_checked = 0;  // recoveries checked, nested ones included
    std::uint64_t recovery_crashes = 0;
    std::uint64_t trace_hash = 0;
    CampaignReach reach;
    std::vector<std::string> failures;  // one line each, starting with kOracleMarker
};

class Campaign {
public:
    explicit Campaign(CampaignConfig cfg)
        : cfg_(std::move(cfg)),
          machine_(MachineConfig{cfg_.pmem_bytes(), cfg_.backing_bytes, false}, cfg_.mode),
          oracle_(cfg_.backing_bytes),
          observer_(cfg_.segs, cfg_.cache_options().geometry),
          checker_(cfg_, machine_, oracle_, result_.reach) {
        PCACHE_SIM_ASSERT(cfg_.backing_bytes % 4096 == 0);
        PCACHE_SIM_ASSERT(cfg_.states_per_point_max >= 1);
    }

    CampaignResult run() { return run(generate_workload(cfg_)); }

    CampaignResult run(const std::vector<WorkloadOp>& ops) {
        if (cfg_.focus && cfg_.crash_point == CampaignConfig::kAll) {
            CampaignConfig probe_cfg = cfg_;
            probe_cfg.focus = false;
            probe_cfg.crash_point = CampaignConfig::kAll - 1;  // explores nothing
            Campaign probe(probe_cfg);
            probe.record_focus_ = true;
            probe.run(ops);
            focus_ = std::move(probe.focus_);
            std::sort(focus_.begin(), focus_.end());
        }
        machine_.ctx.hook = [this](const PersistEvent& e) { on_persist(e); };
        auto opened =
            SimCache::format(borrow(machine_.pmem), borrow(machine_.block), cfg_.cache_options());
        if (!opened.ok()) {
            fail_live("format: " + opened.status().to_string());
        } else {
            cache_ = std::move(opened.value());
            checker_.set_format_returned();
            for (const WorkloadOp& op : ops) {
                if (result_.failures.size() >= cfg_.failures_max || !cache_) break;
                const std::uint64_t first = machine_.ctx.persist_points + 1;
                const CampaignReach before = result_.reach;
                machine_.pmem.set_cpu(op_cpu(cfg_.seed, result_.ops_run));  // the op's lane
                execute(op);
                ++result_.ops_run;
                if (cache_) observe();
                if (record_focus_ && result_.reach.gc_past_last != before.gc_past_last &&
                    machine_.ctx.persist_points >= first)
                    focus_.emplace_back(first, machine_.ctx.persist_points);
            }
        }
        drop_cache();
        machine_.ctx.hook = nullptr;
        result_.persist_points = machine_.ctx.persist_points;
        TraceHash h = machine_.ctx.trace;
        h.mix(verdicts_.value());
        result_.trace_hash = h.value();
        return result_;
    }

private:
    // ---- the workload -------------------------------------------------------------------------
    // The simulated CPU of workload operation `op` (its lane, modulo n_lanes): a hash of the
    // seed and the operation number, drawn apart from the workload's generator so that the
    // workload of a seed does not depend on the lanes.
    static std::uint32_t op_cpu(std::uint64_t seed, std::uint64_t op) {
        std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + op + 0x6A09E667F3BCC909ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        return static_cast<std::uint32_t>((x ^ (x >> 31)) >> 32);
    }
    void observe() {
        observer_.observe(cache_->key_head().seg, cache_->key_tail().seg, machine_.pmem,
                          result_.reach);
    }
    void drop_cache() {
        if (cache_) {
            const CacheCounters c = cache_->counters();
            result_.reach.gc_runs += c.gc_runs;
            result_.reach.cross_lane_closes += c.cross_lane_closes;
        }
        cache_.reset();
    }

    void execute(const WorkloadOp& op) {
        switch (op.kind) {
            case WorkloadOp::Kind::write:
                return do_write(op);
            case WorkloadOp::Kind::read:
                return do_read(op.off_bytes, op.len_bytes);
            case WorkloadOp::Kind::flush: {
                Status s = busy_retried([&] { return cache_->flush(); });
                if (!s.ok()) return fail_live("flush: " + s.to_string());
                oracle_.flushed();
                return;
            }
            case WorkloadOp::Kind::writeback: {
                const std::uint64_t before = cache_->counters().writeback_ksets;
                auto r = cache_->writeback_step();
                if (!r.status.ok()) fail_live("writeback_step: " + r.status.to_string());
                if (cache_->counters().writeback_ksets - before >= 32)
                    ++result_.reach.wb_full_batches;
                return;
            }
            case WorkloadOp::Kind::gc: {
                auto r = cache_->gc_step();
                if (!r.status.ok()) fail_live("gc_step: " + r.status.to_string());
                return;
            }
            case WorkloadOp::Kind::gc_percent: {
                Status s = cache_->set_gc_percent(op.value);
                if (!s.ok()) fail_live("set_gc_percent: " + s.to_string());
                return;
            }
            case WorkloadOp::Kind::reopen:
                return do_reopen();
        }
    }

    template <class F>
    Status busy_retried(F&& f) {
        std::string room;
        Status s = retry_busy(*cache_, std::forward<F>(f), room, &result_.reach);
        if (!room.empty()) fail_live(room);
        return s;
    }

    void do_write(const WorkloadOp& op) {
        PCACHE_SIM_ASSERT(op.len_bytes > 0 && op.off_bytes + op.len_bytes <= cfg_.backing_bytes);
        const std::uint64_t id = oracle_.begin_write(op.off_bytes, op.len_bytes);
        buf_.resize(op.len_bytes);
        for (std::uint64_t at = 0; at < op.len_bytes; at += kOracleSectorBytes)
            oracle_fill_sector(id, (op.off_bytes + at) / kOracleSectorBytes, buf_.data() + at);
        std::uint64_t done = 0;  // a busy write goes on from where it stopped
        Status s = busy_retried([&] {
            const WriteResult w =
                cache_->write(op.off_bytes + done, std::span(buf_).subspan(done), {.fua = op.fua});
            done += w.done_bytes;
            return w.status;
        });
        if (s.ok()) {
            oracle_.end_write(op.off_bytes, op.len_bytes, id, op.fua);
            if (cfg_.n_ksets >= 2 &&
                (op.off_bytes >> format::kSubtreeShift) !=
                    ((op.off_bytes + op.len_bytes - 1) >> format::kSubtreeShift))
                ++result_.reach.stripe_splits;
        } else if (s.code() != Errc::busy) {
            fail_live("write [" + std::to_string(op.off_bytes) + ", +" +
                      std::to_string(op.len_bytes) + "): " + s.to_string());
        }  // busy after every retry: the write stays in flight (a crash may show it or not)
    }

    void do_read(std::uint64_t off, std::uint64_t len) {
        buf_.resize(len);
        Status s = cache_->read(off, buf_);
        if (!s.ok())
            return fail_live("read [" + std::to_string(off) + ", +" + std::to_string(len) +
                             "): " + s.to_string());
        std::string why;
        for (std::uint64_t at = 0; at < len; at += kOracleSectorBytes)
            if (!oracle_.check_live((off + at) / kOracleSectorBytes, buf_.data() + at, why))
                return fail_live(why);
    }

    void do_reopen() {
        Status s = busy_retried([&] { return cache_->close(); });
        if (!s.ok()) return fail_live("close: " + s.to_string());
        oracle_.flushed();
        drop_cache();
        auto opened =
            SimCache::open(borrow(machine_.pmem), borrow(machine_.block), cfg_.cache_options());
        if (!opened.ok())
            return fail_live("reopen after a clean close: " + opened.status().to_string());
        cache_ = std::move(opened.value());
        if (Status st = cache_->check_invariants(); !st.ok())
            return fail_live("invariants broken after a clean reopen: " + st.to_string());
        for (const auto& [first, end] : oracle_.touched_runs())
            do_read(first * kOracleSectorBytes, (end - first) * kOracleSectorBytes);
    }

    void fail_live(const std::string& why) {
        if (result_.failures.size() >= cfg_.failures_max) return;
        result_.failures.push_back(std::string(kOracleMarker) + "live (no crash), op " +
                                   std::to_string(result_.ops_run) + ": " + why +
                                   " | REPRODUCE seed=" + std::to_string(cfg_.seed) +
                                   " cmd: " + campaign_command(cfg_, 0, 0));
        verdicts_.mix(0xFA11);
    }

    // ---- crash points -------------------------------------------------------------------------
    void on_persist(const PersistEvent& e) {
        if (recovery_target_ != 0) {
            if (e.ordinal == recovery_target_) throw SimCrash{e};
            return;
        }
        if (record_focus_ && writing_last_kset()) {  // the points around a segment switch
            focus_.emplace_back(e.ordinal > 2 ? e.ordinal - 2 : 1, e.ordinal + 2);
            return;
        }
        if (in_check_ || !selected(e.ordinal)) return;
        explore_point(e.ordinal);
    }

    // Whether the stores this fence makes durable write a LAST kset header (magic, then flags
    // with the LAST bit): the segment switch, whose neighbouring points M3-like bugs live at.
    bool writing_last_kset() const {
        const auto& log = machine_.pmem.pending_log();
        for (const PmemStore& st : log) {
            if (st.new_value != format::kKsetFlagLast) continue;
            for (const PmemStore& m : log)
                if (m.word_index + 1 == st.word_index && m.new_value == format::kKsetMagic)
                    return true;
        }
        return false;
    }

    bool selected(std::uint64_t point) const {
        if (cfg_.crash_point != CampaignConfig::kAll) return point == cfg_.crash_point;
        if (cfg_.explore_one_in <= 1) return true;
        for (const auto& [first, last] : focus_) {
            if (point < first) break;
            if (point > last) continue;
            const std::uint64_t stride = (last - first + cfg_.focus_points_max) /
                                         std::max<std::uint64_t>(cfg_.focus_points_max, 1);
            if ((point - first) % std::max<std::uint64_t>(stride, 1) == 0) return true;
        }
        std::uint64_t x = cfg_.seed ^ (point * 0x9E3779B97F4A7C15ull);
        return splitmix64(x) % cfg_.explore_one_in == 0;
    }

    // Up to `max` state numbers out of `count`: all of them, or 0, count-1 and a seeded sample.
    static std::vector<std::uint64_t> pick_states(std::uint64_t count, std::uint64_t max,
                                                  std::uint64_t filter, std::uint64_t seed) {
        std::vector<std::uint64_t> out;
        if (filter != CampaignConfig::kAll) {
            if (filter < count) out.push_back(filter);
            return out;
        }
        if (count <= max) {
            for (std::uint64_t s = 0; s < count; ++s) out.push_back(s);
            return out;
        }
        out.push_back(0);
        out.push_back(count - 1);
        Rng rng(seed);
        while (out.size() < max) out.push_back(rng.below(count));
        return out;
    }

    struct SavedContext {
        TraceHash trace;
        std::uint64_t points;
    };
    SavedContext enter_check() {
        in_check_ = true;
        return {machine_.ctx.trace, machine_.ctx.persist_points};
    }
    void leave_check(const SavedContext& saved) {
        machine_.ctx.trace = saved.trace;
        machine_.ctx.persist_points = saved.points;
        in_check_ = false;
    }

    void explore_point(std::uint64_t point) {
        const SavedContext saved = enter_check();
        ++result_.crash_points_explored;
        const std::uint64_t seed = cfg_.seed ^ (point * 0xD1B54A32D192ED03ull);
        SystemExplorer ex(
            machine_.pmem, machine_.block, {.seed = seed, .samples = cfg_.pmem_samples},
            {.seed = seed, .tear_writes = cfg_.tear_block_writes, .samples = cfg_.block_samples});
        for (std::uint64_t state :
             pick_states(ex.state_count(), cfg_.states_per_point_max, cfg_.state, seed)) {
            if (result_.failures.size() >= cfg_.failures_max) break;
            ex.apply(state);
            check_image(point, state, CampaignConfig::kAll, CampaignConfig::kAll, seed ^ state);
            ex.rollback();
            if (cfg_.recovery_crashes) crash_recovery(ex, point, state);
        }
        leave_check(saved);
    }

    // Cuts recovery of image `state` at its persistence points and checks the nested images.
    void crash_recovery(SystemExplorer& ex, std::uint64_t point, std::uint64_t state) {
        ex.apply(state);
        const std::uint64_t base = machine_.ctx.persist_points;
        { auto c = checker_.recover(); }
        const std::uint64_t recovery_points = machine_.ctx.persist_points - base;
        ex.rollback();
        const std::uint64_t seed = cfg_.seed ^ (point << 20) ^ state;
        for (std::uint64_t k :
             pick_states(recovery_points, cfg_.recovery_points_max, cfg_.recovery_point, seed)) {
            if (result_.failures.size() >= cfg_.failures_max) break;
            ex.apply(state);
            machine_.ctx.persist_points = base;
            recovery_target_ = base + k + 1;  // k is 0-based
            bool crashed = false;
            try {
                auto c = checker_.recover();
            } catch (const SimCrash&) {
                crashed = true;
            }
            recovery_target_ = 0;
            if (crashed) {
                ++result_.recovery_crashes;
                const std::uint64_t nseed = seed ^ (k * 0x9E37ull);
                SystemExplorer nested(machine_.pmem, machine_.block,
                                      {.seed = nseed, .samples = cfg_.pmem_samples},
                                      {.seed = nseed, .samples = cfg_.block_samples});
                for (std::uint64_t t : pick_states(nested.state_count(), cfg_.recovery_states_max,
                                                   cfg_.recovery_state, nseed)) {
                    nested.apply(t);
                    check_image(point, state, k, t, nseed ^ t);
                    nested.rollback();
                }
            }
            ex.rollback();
        }
    }

    // ---- the oracle on one crash image ----------------------------------------------------------
    void check_image(std::uint64_t point, std::uint64_t state, std::uint64_t rpoint,
                     std::uint64_t rstate, std::uint64_t salt) {
        ++result_.states_checked;
        std::string why = checker_.recover_and_check(salt);
        verdicts_.mix(point);
        verdicts_.mix(state);
        verdicts_.mix(why.empty() ? 1 : 2);
        verdicts_.mix(checker_.ids_hash());
        if (why.empty() || result_.failures.size() >= cfg_.failures_max) return;
        result_.failures.push_back(
            kOracleMarker + why + " | REPRODUCE seed=" + std::to_string(cfg_.seed) +
            " mode=" + std::string(pmem_mode_name(cfg_.mode)) + " ops=" + std::to_string(cfg_.ops) +
            " crash_point=" + std::to_string(point) + " state=" + std::to_string(state) +
            " cmd: " + campaign_command(cfg_, point, state, rpoint, rstate));
    }

    CampaignConfig cfg_;
    Machine machine_;
    SectorOracle oracle_;
    ReachObserver observer_;
    CampaignResult result_;
    ImageChecker checker_;
    std::unique_ptr<SimCache> cache_;
    TraceHash verdicts_;
    std::uint64_t recovery_target_ = 0;  // persistence ordinal at which recovery is cut
    bool in_check_ = false;
    bool record_focus_ = false;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> focus_;  // [first, last] points
    std::vector<std::byte> buf_;  // the workload's I/O buffer (the engine may hold a span of it)
};

}  // namespace pcache::sim
