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
// Determinism: every choice comes from the seed; the trace hash covers the workload's
// persistence events and the verdicts. A failure names (seed, mode, ops, geometry, crash point,
// state[, recovery point, recovery state]) and the `pcache sim` command replaying exactly it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "pcache/cache/cache.hpp"
#include "pcache/sim/crash_run.hpp"
#include "pcache/sim/oracle.hpp"

namespace pcache::sim {

struct WorkloadOp {
    enum class Kind : std::uint8_t { write, read, flush, writeback, gc, gc_percent, reopen };
    Kind kind = Kind::flush;
    std::uint64_t off_bytes = 0;
    std::uint32_t len_bytes = 0;
    bool fua = false;
    std::uint32_t value = 0;  // gc_percent
};

struct CampaignConfig {
    static constexpr std::uint64_t kAll = RunId::kAll;
    std::uint64_t seed = 1;
    PmemMode mode = PmemMode::x86;
    std::uint64_t ops = 60;
    std::uint64_t segment_bytes = 64 << 10;  // 16 MiB is kernel geometry (then segs >= 32)
    std::uint32_t segs = 8;
    std::uint64_t backing_bytes = 1 << 20;
    bool data_crc = false;
    std::uint32_t n_ksets = 1;
    // Replay filters: a single workload persistence point / crash image / recovery point.
    std::uint64_t crash_point = kAll;
    std::uint64_t state = kAll;
    std::uint64_t recovery_point = kAll;
    std::uint64_t recovery_state = kAll;
    std::uint32_t explore_one_in = 1;  // explore a point with probability 1/n (seeded)
    std::uint64_t states_per_point_max = 16;
    std::uint64_t pmem_samples = 16;
    std::uint64_t block_samples = 4;
    bool tear_block_writes = false;
    bool recovery_crashes = false;
    std::uint64_t recovery_points_max = 4;  // per image
    std::uint64_t recovery_states_max = 4;  // per recovery crash point
    std::uint32_t idempotence_one_in = 4;   // 0: never
    std::uint32_t backing_check_one_in = 4;
    std::uint32_t crc_flip_one_in = 4;  // with data_crc
    std::uint64_t failures_max = 4;
    std::string tool = "pcache";  // for the reproduce command

    std::uint64_t pmem_bytes() const {
        return format::kSegmentsOffsetBytes + std::uint64_t(segs) * segment_bytes;
    }
    CacheOptions cache_options() const {
        CacheOptions o;
        o.data_crc = data_crc;
        o.geometry.segment_bytes = segment_bytes;
        o.n_ksets = n_ksets;
        return o;
    }
    // Recovery under check: read misses are not filled into pmem (the workload exercises fills;
    // filling every checked sector of every image would dominate the cost of a state).
    CacheOptions check_options() const {
        CacheOptions o = cache_options();
        o.fill_on_read_miss = false;
        return o;
    }
};

struct CampaignResult {
    std::uint64_t ops_run = 0;
    std::uint64_t persist_points = 0;  // of the workload
    std::uint64_t crash_points_explored = 0;
    std::uint64_t states_checked = 0;  // recoveries checked, nested ones included
    std::uint64_t recovery_crashes = 0;
    std::uint64_t trace_hash = 0;
    std::vector<std::string> failures;  // one line each, with the reproduce command
};

// The command line that replays one case of a campaign.
inline std::string campaign_command(const CampaignConfig& c, std::uint64_t point,
                                    std::uint64_t state,
                                    std::uint64_t rpoint = CampaignConfig::kAll,
                                    std::uint64_t rstate = CampaignConfig::kAll) {
    std::string s = c.tool + " sim --seed " + std::to_string(c.seed) + " --mode " +
                    std::string(pmem_mode_name(c.mode)) + " --ops " + std::to_string(c.ops) +
                    " --segment-kib " + std::to_string(c.segment_bytes >> 10) + " --segs " +
                    std::to_string(c.segs) + " --backing-kib " +
                    std::to_string(c.backing_bytes >> 10) + " --n-ksets " +
                    std::to_string(c.n_ksets);
    if (c.data_crc) s += " --data-crc";
    if (c.tear_block_writes) s += " --tear-block-writes";
    if (c.recovery_crashes) s += " --recovery-crashes";
    s += " --crash-at " + std::to_string(point) + " --state " + std::to_string(state);
    if (rpoint != CampaignConfig::kAll) s += " --recovery-at " + std::to_string(rpoint);
    if (rstate != CampaignConfig::kAll) s += " --recovery-state " + std::to_string(rstate);
    return s;
}

// A seeded workload: writes of 1..256 sectors (a hot 64 KiB region for overlaps, 4 KiB-aligned
// or not), reads, FLUSH, FUA, writeback and GC steps, gc_percent changes, clean reopens.
inline std::vector<WorkloadOp> generate_workload(const CampaignConfig& c) {
    Rng rng(c.seed ^ 0xC0FFEE123ull);
    std::vector<WorkloadOp> ops;
    ops.reserve(c.ops);
    const std::uint64_t sectors = c.backing_bytes / kOracleSectorBytes;
    PCACHE_SIM_ASSERT(sectors >= 256);
    for (std::uint64_t i = 0; i < c.ops; ++i) {
        WorkloadOp op;
        const std::uint64_t pick = rng.below(24);
        if (pick < 11 || i == 0) {
            op.kind = WorkloadOp::Kind::write;
            const std::uint64_t size_class = rng.below(10);
            std::uint64_t n = size_class < 6   ? 1 + rng.below(8)
                              : size_class < 9 ? 8 + rng.below(25)
                                               : 32 + rng.below(225);
            std::uint64_t s = rng.below(3) == 0 ? rng.below(sectors) : rng.below(128);
            if (rng.below(2) == 0) {  // 4 KiB aligned start and length
                s &= ~std::uint64_t{7};
                n = (n + 7) & ~std::uint64_t{7};
            }
            n = std::min(n, sectors - s);
            op.off_bytes = s * kOracleSectorBytes;
            op.len_bytes = static_cast<std::uint32_t>(n * kOracleSectorBytes);
            op.fua = rng.below(5) == 0;
        } else if (pick < 14) {
            op.kind = WorkloadOp::Kind::read;
            const std::uint64_t s = rng.below(2) == 0 ? rng.below(sectors) : rng.below(128);
            op.off_bytes = s * kOracleSectorBytes;
            op.len_bytes = static_cast<std::uint32_t>(
                std::min<std::uint64_t>(1 + rng.below(64), sectors - s) * kOracleSectorBytes);
        } else if (pick < 17) {
            op.kind = WorkloadOp::Kind::flush;
        } else if (pick < 20) {
            op.kind = WorkloadOp::Kind::writeback;
        } else if (pick < 22) {
            op.kind = WorkloadOp::Kind::gc;
        } else if (pick < 23) {
            op.kind = WorkloadOp::Kind::gc_percent;
            op.value = static_cast<std::uint32_t>(rng.below(91));
        } else {
            op.kind = WorkloadOp::Kind::reopen;
        }
        ops.push_back(op);
    }
    return ops;
}

class Campaign {
public:
    using SimCache = Cache<SimPmem, SimBlockDevice>;

    explicit Campaign(CampaignConfig cfg)
        : cfg_(std::move(cfg)),
          machine_(MachineConfig{cfg_.pmem_bytes(), cfg_.backing_bytes, false}, cfg_.mode),
          oracle_(cfg_.backing_bytes) {
        PCACHE_SIM_ASSERT(cfg_.backing_bytes % 4096 == 0);
        PCACHE_SIM_ASSERT(cfg_.states_per_point_max >= 1);
    }

    CampaignResult run() { return run(generate_workload(cfg_)); }

    CampaignResult run(const std::vector<WorkloadOp>& ops) {
        machine_.ctx.hook = [this](const PersistEvent& e) { on_persist(e); };
        auto opened = SimCache::open(machine_.pmem, machine_.block, cfg_.cache_options());
        if (!opened.ok()) {
            fail_live("format: " + opened.status().to_string());
        } else {
            cache_ = std::move(opened.value());
            for (const WorkloadOp& op : ops) {
                if (result_.failures.size() >= cfg_.failures_max || !cache_) break;
                execute(op);
                ++result_.ops_run;
            }
        }
        cache_.reset();
        machine_.ctx.hook = nullptr;
        result_.persist_points = machine_.ctx.persist_points;
        TraceHash h = machine_.ctx.trace;
        h.mix(verdicts_.value());
        result_.trace_hash = h.value();
        return result_;
    }

private:
    // ---- the workload -------------------------------------------------------------------------
    void execute(const WorkloadOp& op) {
        switch (op.kind) {
            case WorkloadOp::Kind::write:
                return do_write(op);
            case WorkloadOp::Kind::read:
                return do_read(op.off_bytes, op.len_bytes);
            case WorkloadOp::Kind::flush: {
                Status s = retry_busy([&] { return cache_->flush(); });
                if (!s.ok()) return fail_live("flush: " + s.to_string());
                oracle_.flushed();
                return;
            }
            case WorkloadOp::Kind::writeback: {
                auto r = cache_->writeback_step();
                if (!r.status.ok()) fail_live("writeback_step: " + r.status.to_string());
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
    Status retry_busy(F&& f) {
        Status s;
        for (int attempt = 0; attempt < 32; ++attempt) {  // bounded: busy needs writeback + GC
            s = f();
            if (s.code() != Errc::busy) return s;
            make_room();
        }
        return s;
    }

    void make_room() {
        (void)cache_->flush();
        for (int step = 0; step < 8; ++step) {
            auto wb = cache_->writeback_step();
            if (!wb.status.ok())
                fail_live("writeback_step while making room: " + wb.status.to_string());
            auto gc = cache_->gc_step();
            if (!gc.status.ok()) fail_live("gc_step while making room: " + gc.status.to_string());
            if (!wb.progressed && !gc.progressed) break;
        }
    }

    void do_write(const WorkloadOp& op) {
        PCACHE_SIM_ASSERT(op.len_bytes > 0 && op.off_bytes + op.len_bytes <= cfg_.backing_bytes);
        const std::uint64_t id = oracle_.begin_write(op.off_bytes, op.len_bytes);
        buf_.resize(op.len_bytes);
        for (std::uint64_t at = 0; at < op.len_bytes; at += kOracleSectorBytes)
            oracle_fill_sector(id, (op.off_bytes + at) / kOracleSectorBytes, buf_.data() + at);
        Status s = retry_busy([&] { return cache_->write(op.off_bytes, buf_, op.fua); });
        if (s.ok()) {
            oracle_.end_write(op.off_bytes, op.len_bytes, id, op.fua);
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
        Status s = retry_busy([&] { return cache_->close(); });
        if (!s.ok()) return fail_live("close: " + s.to_string());
        oracle_.flushed();
        cache_.reset();
        auto opened = SimCache::open(machine_.pmem, machine_.block, cfg_.cache_options());
        if (!opened.ok())
            return fail_live("reopen after a clean close: " + opened.status().to_string());
        cache_ = std::move(opened.value());
        for (const auto& [first, end] : oracle_.touched_runs())
            do_read(first * kOracleSectorBytes, (end - first) * kOracleSectorBytes);
    }

    void fail_live(const std::string& why) {
        if (result_.failures.size() >= cfg_.failures_max) return;
        result_.failures.push_back("live (no crash), op " + std::to_string(result_.ops_run) + ": " +
                                   why + " | REPRODUCE seed=" + std::to_string(cfg_.seed) +
                                   " cmd: " + campaign_command(cfg_, 0, 0));
        verdicts_.mix(0xFA11);
    }

    // ---- crash points -------------------------------------------------------------------------
    void on_persist(const PersistEvent& e) {
        if (recovery_target_ != 0) {
            if (e.ordinal == recovery_target_) throw SimCrash{e};
            return;
        }
        if (in_check_ || !selected(e.ordinal)) return;
        explore_point(e.ordinal);
    }

    bool selected(std::uint64_t point) const {
        if (cfg_.crash_point != CampaignConfig::kAll) return point == cfg_.crash_point;
        if (cfg_.explore_one_in <= 1) return true;
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
        { auto c = SimCache::open(machine_.pmem, machine_.block, cfg_.check_options()); }
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
                auto c = SimCache::open(machine_.pmem, machine_.block, cfg_.check_options());
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
    bool one_in(std::uint32_t n, std::uint64_t salt) const {
        if (n == 0) return false;
        std::uint64_t x = salt ^ 0xA5A5A5A5ull;
        return splitmix64(x) % n == 0;
    }

    void check_image(std::uint64_t point, std::uint64_t state, std::uint64_t rpoint,
                     std::uint64_t rstate, std::uint64_t salt) {
        ++result_.states_checked;
        std::string why = recover_and_check(salt);
        verdicts_.mix(point);
        verdicts_.mix(state);
        verdicts_.mix(why.empty() ? 1 : 2);
        verdicts_.mix(ids_hash_);
        if (why.empty() || result_.failures.size() >= cfg_.failures_max) return;
        result_.failures.push_back(
            why + " | REPRODUCE seed=" + std::to_string(cfg_.seed) +
            " mode=" + std::string(pmem_mode_name(cfg_.mode)) + " ops=" + std::to_string(cfg_.ops) +
            " crash_point=" + std::to_string(point) + " state=" + std::to_string(state) +
            " cmd: " + campaign_command(cfg_, point, state, rpoint, rstate));
    }

    // Recovers on the applied image and checks it; returns why it fails ("" when it passes).
    std::string recover_and_check(std::uint64_t salt) {
        auto opened = SimCache::open(machine_.pmem, machine_.block, cfg_.check_options());
        if (!opened.ok()) return "recovery refused a crash image: " + opened.status().to_string();
        std::vector<std::uint64_t> ids;
        if (std::string why = read_and_check(**opened, ids); !why.empty()) return why;
        ids_hash_ = hash_ids(ids);
        if (one_in(cfg_.idempotence_one_in, salt)) {
            opened = Status{Errc::io, "dropped"};
            auto again = SimCache::open(machine_.pmem, machine_.block, cfg_.check_options());
            if (!again.ok())
                return "second recovery refused what the first accepted: " +
                       again.status().to_string();
            std::vector<std::uint64_t> ids2;
            if (std::string why = read_and_check(**again, ids2); !why.empty())
                return "second recovery: " + why;
            if (ids2 != ids)
                return "recovery is not idempotent: a second recovery reads different writes";
            opened = std::move(again);
        }
        SimCache& c = **opened;
        if (cfg_.data_crc && one_in(cfg_.crc_flip_one_in, salt * 3)) {
            if (std::string why = check_crc_flip(c, ids); !why.empty()) return why;
            return {};  // the flipped byte stays: skip the backing check
        }
        if (one_in(cfg_.backing_check_one_in, salt * 7)) return check_backing(c, ids);
        return {};
    }

    std::string read_and_check(SimCache& c, std::vector<std::uint64_t>& ids) {
        for (const auto& [first, end] : oracle_.touched_runs()) {
            for (std::uint64_t s = first; s < end;) {
                const std::uint64_t n = std::min<std::uint64_t>(end - s, 256);
                check_buf_.resize(n * kOracleSectorBytes);
                Status st = c.read(s * kOracleSectorBytes, check_buf_);
                if (!st.ok())
                    return "read of sectors [" + std::to_string(s) + ", +" + std::to_string(n) +
                           ") after recovery failed: " + st.to_string();
                std::string why;
                for (std::uint64_t i = 0; i < n; ++i) {
                    std::uint64_t id = 0;
                    if (!oracle_.check_after_crash(
                            s + i, check_buf_.data() + i * kOracleSectorBytes, id, why))
                        return why;
                    ids.push_back(id);
                }
                s += n;
            }
        }
        return {};
    }

    static std::uint64_t hash_ids(const std::vector<std::uint64_t>& ids) {
        TraceHash h;
        for (std::uint64_t id : ids) h.mix(id);
        return h.value();
    }

    // Writeback to clean, flush the backing device: it alone must hold what the cache returned.
    std::string check_backing(SimCache& c, const std::vector<std::uint64_t>& ids) {
        const std::uint64_t steps_max = std::uint64_t(cfg_.segs) * 4096;
        if (Status s = c.flush(); !s.ok()) return "flush after recovery failed: " + s.to_string();
        std::uint64_t steps = 0;
        for (; steps < steps_max; ++steps) {
            auto r = c.writeback_step();
            if (!r.status.ok()) return "writeback after recovery failed: " + r.status.to_string();
            if (!r.progressed) break;
        }
        if (!c.is_clean()) return "writeback after recovery stopped before the cache was clean";
        if (Status s = machine_.block.flush(); !s.ok()) return "backing flush: " + s.to_string();
        std::size_t at = 0;
        std::byte sector[kOracleSectorBytes];
        for (const auto& [first, end] : oracle_.touched_runs()) {
            for (std::uint64_t s = first; s < end; ++s, ++at) {
                PCACHE_SIM_ASSERT(at < ids.size());
                if (Status st = machine_.block.read(s * kOracleSectorBytes, sector); !st.ok())
                    return "backing read: " + st.to_string();
                std::uint64_t id = 0;
                const bool whole = oracle_identify_sector(sector, s, id);
                if (!whole || id != ids[at])
                    return "after writeback to clean, backing sector " + std::to_string(s) +
                           " holds " +
                           (whole ? "write " + std::to_string(id)
                                  : std::string("bytes no write produced")) +
                           " but the cache returned write " + std::to_string(ids[at]);
            }
        }
        return {};
    }

    // data_crc: flip one word of a cached data sector; reads must fail or stay correct.
    std::string check_crc_flip(SimCache& c, const std::vector<std::uint64_t>& ids) {
        const format::Geometry geo = cfg_.cache_options().geometry;
        std::byte sector[kOracleSectorBytes];
        std::uint64_t victim = 0;
        for (std::uint32_t seg = 0; seg < cfg_.segs && victim == 0; ++seg) {
            const std::uint64_t base = geo.data_offset(seg);
            for (std::uint64_t off = 0; off + kOracleSectorBytes <= geo.seg_data_bytes();
                 off += kOracleSectorBytes) {
                (void)machine_.pmem.read(base + off, sector);
                std::uint64_t id = 0, lba = 0;
                std::memcpy(&lba, sector + 8, 8);
                if (lba < oracle_.sector_count() && oracle_identify_sector(sector, lba, id) &&
                    id != 0) {
                    victim = base + off;
                    break;
                }
            }
        }
        if (victim == 0) return {};
        const std::uint64_t flipped = ~std::uint64_t{0};
        (void)machine_.pmem.write(victim + 96, std::as_bytes(std::span(&flipped, 1)), 0);
        std::size_t at = 0;
        for (const auto& [first, end] : oracle_.touched_runs()) {
            for (std::uint64_t s = first; s < end; ++s, ++at) {
                Status st = c.read(s * kOracleSectorBytes,
                                   std::span<std::byte>(sector, kOracleSectorBytes));
                if (!st.ok()) {
                    if (st.code() != Errc::data_crc)
                        return "read after a data flip: " + st.to_string();
                    continue;
                }
                std::uint64_t id = 0;
                if (!oracle_identify_sector(sector, s, id) || id != ids[at])
                    return "data_crc on, cached data corrupted: sector " + std::to_string(s) +
                           " returned bad bytes instead of an error";
            }
        }
        return {};
    }

    CampaignConfig cfg_;
    Machine machine_;
    SectorOracle oracle_;
    std::unique_ptr<SimCache> cache_;
    CampaignResult result_;
    TraceHash verdicts_;
    std::uint64_t ids_hash_ = 0;
    std::uint64_t recovery_target_ = 0;  // persistence ordinal at which recovery is cut
    bool in_check_ = false;
    std::vector<std::byte> buf_;  // the workload's I/O buffer (the engine may hold a span of it)
    std::vector<std::byte> check_buf_;  // the checks' own, so a check never moves buf_
};

}  // namespace pcache::sim
