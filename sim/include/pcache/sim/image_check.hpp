// The oracle on one crash image (crash-model.md, "The oracle"): recover, check the invariants,
// read every written sector, and on seeded subsets recover a second time (idempotence), drive
// writeback to clean and compare the backing device, flip a cached data word under data_crc and
// follow it with a cut, writeback and GC, or go on writing, writing back and collecting on the
// recovered image. Every check returns "" or why it failed; a failure message starts with the
// verdict marker the mutant harness looks for (kOracleMarker).
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pcache/cache/cache.hpp"
#include "pcache/sim/crash_run.hpp"
#include "pcache/sim/oracle.hpp"
#include "pcache/sim/reach.hpp"
#include "pcache/sim/recover.hpp"
#include "pcache/sim/workload.hpp"

namespace pcache::sim {

// Every oracle verdict printed by a campaign starts with this (scripts/mutants.sh counts a
// mutant as caught only on it, never on a crash, an assert or a timeout).
inline constexpr const char* kOracleMarker = "ORACLE VIOLATION: ";

using SimCache = Cache<SimPmem, SimBlockDevice>;

// Drives a cache through busy: FLUSH, writeback and GC steps, bounded. Returns the first error
// of a step ("" when none).
// `corrupt_ok`: a data_crc error of writeback is expected (cached data was corrupted on
// purpose) and not a failure.
// `steps_max` bounds the steps (until neither makes progress): one step keeps the cache at the
// edge of full, as background work at an interval does (the key-log reserve then decides who
// gets the next free segment, and the log re-enters segments it left).
inline std::string make_room(SimCache& c, CampaignReach* reach = nullptr, bool corrupt_ok = false,
                             int steps_max = 4096, bool* progressed = nullptr) {
    (void)c.flush();  // busy here is what the steps below resolve
    for (int step = 0; step < steps_max; ++step) {
        const std::uint64_t before = c.counters().writeback_ksets;
        auto wb = c.writeback_step();
        if (!wb.status.ok() && !(corrupt_ok && wb.status.code() == Errc::data_crc))
            return "writeback_step while making room: " + wb.status.to_string();
        if (reach && c.counters().writeback_ksets - before >= 32) ++reach->wb_full_batches;
        auto gc = c.gc_step();
        if (!gc.status.ok()) return "gc_step while making room: " + gc.status.to_string();
        if (!wb.progressed && !gc.progressed) break;
        if (progressed) *progressed = true;
    }
    return {};
}

template <class F>
Status retry_busy(SimCache& c, F&& f, std::string& room_error, CampaignReach* reach = nullptr,
                  bool corrupt_ok = false) {
    Status s;
    for (int attempt = 0; attempt < 4096; ++attempt) {  // bounded: busy needs writeback + GC
        s = f();
        if (s.code() != Errc::busy) return s;
        bool progressed = false;  // one step at a time; all of them when one step is not enough
        std::string why = make_room(c, reach, corrupt_ok, 1, &progressed);
        if (why.empty() && !progressed) why = make_room(c, reach, corrupt_ok, 4096, &progressed);
        if (!why.empty()) {
            room_error = why;
            return s;
        }
        if (!progressed) return s;  // nothing left to free: busy stays (a wedge, reported)
    }
    return s;
}

class ImageChecker {
public:
    ImageChecker(const CampaignConfig& cfg, Machine& m, SectorOracle& oracle, CampaignReach& reach)
        : cfg_(cfg), m_(m), oracle_(oracle), reach_(reach) {}

    std::uint64_t ids_hash() const { return ids_hash_; }
    // The workload's Cache::format returned: from now on recovery only opens.
    void set_format_returned() { format_returned_ = true; }
    bool format_returned() const { return format_returned_; }
    Result<std::unique_ptr<SimCache>> recover() {
        return sim::recover<SimCache>(m_.pmem, m_.block, cfg_.check_options(), format_returned_);
    }

    // Recovers on the applied image and checks it; returns why it fails ("" when it passes).
    std::string recover_and_check(std::uint64_t salt) {
        auto opened = recover();
        if (!opened.ok()) return "recovery refused a crash image: " + opened.status().to_string();
        if (Status s = (*opened)->check_invariants(); !s.ok())
            return "invariants broken after recovery: " + s.to_string();
        std::vector<std::uint64_t> ids;
        if (std::string why = read_and_check(**opened, ids); !why.empty()) return why;
        ids_hash_ = hash_ids(ids);
        if (one_in(cfg_.idempotence_one_in, salt)) {
            opened = Status{Errc::io, "dropped"};
            auto again = SimCache::open(borrow(m_.pmem), borrow(m_.block), cfg_.check_options());
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
        if (cfg_.data_crc && one_in(cfg_.crc_flip_one_in, salt * 3)) return check_crc_flip(c, ids);
        if (one_in(cfg_.after_recovery_one_in, salt * 5))
            return continue_after_recovery(c, ids, salt);
        if (one_in(cfg_.backing_check_one_in, salt * 7)) return check_backing(c, ids, oracle_);
        return {};
    }

private:
    bool one_in(std::uint32_t n, std::uint64_t salt) const {
        if (n == 0) return false;
        std::uint64_t x = salt ^ 0xA5A5A5A5ull;
        return splitmix64(x) % n == 0;
    }

    static std::uint64_t hash_ids(const std::vector<std::uint64_t>& ids) {
        TraceHash h;
        for (std::uint64_t id : ids) h.mix(id);
        return h.value();
    }

    std::string read_and_check(SimCache& c, std::vector<std::uint64_t>& ids) {
        for (const auto& [first, end] : oracle_.touched_runs()) {
            for (std::uint64_t s = first; s < end;) {
                const std::uint64_t n = std::min<std::uint64_t>(end - s, 256);
                buf_.resize(n * kOracleSectorBytes);
                Status st = c.read(s * kOracleSectorBytes, buf_);
                if (!st.ok())
                    return "read of sectors [" + std::to_string(s) + ", +" + std::to_string(n) +
                           ") after recovery failed: " + st.to_string();
                std::string why;
                for (std::uint64_t i = 0; i < n; ++i) {
                    std::uint64_t id = 0;
                    if (!oracle_.check_after_crash(s + i, buf_.data() + i * kOracleSectorBytes, id,
                                                   why))
                        return why;
                    ids.push_back(id);
                }
                s += n;
            }
        }
        return {};
    }

    // Writeback to clean, flush the backing device: it alone must hold what the cache returned
    // (`ids`, one per sector of `o.touched_runs()`).
    std::string check_backing(SimCache& c, const std::vector<std::uint64_t>& ids, SectorOracle& o) {
        const std::uint64_t steps_max = std::uint64_t(cfg_.segs) * 4096;
        if (Status s = c.flush(); !s.ok()) return "flush after recovery failed: " + s.to_string();
        for (std::uint64_t steps = 0; steps < steps_max; ++steps) {
            auto r = c.writeback_step();
            if (!r.status.ok()) return "writeback after recovery failed: " + r.status.to_string();
            if (!r.progressed) break;
        }
        if (!c.is_clean()) return "writeback after recovery stopped before the cache was clean";
        if (Status s = m_.block.flush(); !s.ok()) return "backing flush: " + s.to_string();
        std::size_t at = 0;
        std::byte sector[kOracleSectorBytes];
        for (const auto& [first, end] : o.touched_runs()) {
            for (std::uint64_t s = first; s < end; ++s, ++at) {
                PCACHE_SIM_ASSERT(at < ids.size());
                if (Status st = m_.block.read(s * kOracleSectorBytes, sector); !st.ok())
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

    // Writes `n` sectors at `sector` with a new id of `o`; "" or why it failed.
    std::string oracle_write(SimCache& c, SectorOracle& o, std::uint64_t sector, std::uint64_t n,
                             bool fua, bool& acked, bool corrupt_ok = false) {
        const std::uint64_t off = sector * kOracleSectorBytes, len = n * kOracleSectorBytes;
        const std::uint64_t id = o.begin_write(off, len);
        wbuf_.resize(len);
        for (std::uint64_t i = 0; i < n; ++i)
            oracle_fill_sector(id, sector + i, wbuf_.data() + i * kOracleSectorBytes);
        std::string room;
        std::uint64_t done = 0;  // a busy write goes on from where it stopped
        Status s = retry_busy(
            c,
            [&] {
                std::uint64_t now = 0;
                const WriteResult w =
                    c.write(off + done, std::span(wbuf_).subspan(done), {.fua = fua});
                now = w.done_bytes;
                Status st = w.status;
                done += now;
                return st;
            },
            room, nullptr, corrupt_ok);
        if (!room.empty()) return room;
        acked = s.ok();
        if (s.ok()) {
            o.end_write(off, len, id, fua);
            return {};
        }
        return "write [" + std::to_string(off) + ", +" + std::to_string(len) +
               ") on a recovered image: " + s.to_string() + " (status " + c.status_line() +
               ", dirty " + std::to_string(c.dirty_bytes()) + " B)";
    }

    // The recovered image goes on: new writes (crossing segments, FUA and not), FLUSH, writeback
    // and GC; every read must return the newest write, and writeback to clean must leave the
    // backing device equal to the cache.
    std::string continue_after_recovery(SimCache& c, const std::vector<std::uint64_t>& ids,
                                        std::uint64_t salt) {
        SectorOracle o = oracle_;
        o.adopt_recovered(ids);
        Rng rng(salt ^ 0x5EC0DULL);
        const std::uint64_t sectors = o.sector_count();
        for (std::uint32_t i = 0; i < cfg_.after_recovery_ops; ++i) {
            const std::uint64_t pick = rng.below(10);
            if (pick < 6) {
                const WorkloadOp w = random_write(
                    rng, sectors, 1 + rng.below(rng.below(4) == 0 ? 128 : 8), rng.below(4) == 0);
                bool acked = false;
                if (std::string why = oracle_write(c, o, w.off_bytes / kOracleSectorBytes,
                                                   w.len_bytes / kOracleSectorBytes, w.fua, acked);
                    !why.empty())
                    return why;
                reach_.after_recovery_writes += acked ? 1 : 0;
            } else if (pick < 7) {
                std::string room;
                Status s = retry_busy(
                    c, [&] { return c.flush(); }, room);
                if (!room.empty()) return room;
                if (!s.ok()) return "flush on a recovered image: " + s.to_string();
                o.flushed();
            } else if (pick < 9) {
                auto r = c.writeback_step();
                if (!r.status.ok())
                    return "writeback on a recovered image: " + r.status.to_string();
                reach_.after_recovery_wb += r.progressed ? 1 : 0;
            } else {
                const std::uint64_t before = c.counters().gc_runs;
                auto r = c.gc_step();
                if (!r.status.ok()) return "gc on a recovered image: " + r.status.to_string();
                reach_.after_recovery_gc += c.counters().gc_runs - before;
            }
        }
        if (Status s = c.check_invariants(); !s.ok())
            return "invariants broken after writing on a recovered image: " + s.to_string();
        std::vector<std::uint64_t> now;
        for (const auto& [first, end] : o.touched_runs())
            for (std::uint64_t s = first; s < end; ++s) {
                buf_.resize(kOracleSectorBytes);
                if (Status st = c.read(s * kOracleSectorBytes, buf_); !st.ok())
                    return "read on a recovered image after new writes: " + st.to_string();
                std::string why;
                if (!o.check_live(s, buf_.data(), why)) return "after recovery: " + why;
                std::uint64_t id = 0;
                oracle_identify_sector(buf_.data(), s, id);
                now.push_back(id);
            }
        return check_backing(c, now, o);
    }

    // data_crc: flip one word of a cached data sector. Reads must fail with data_crc or return
    // the right write; then a write cutting that key, writeback and GC must never put the
    // flipped bytes on the backing device.
    std::string check_crc_flip(SimCache& c, const std::vector<std::uint64_t>& ids) {
        const format::Geometry geo = cfg_.cache_options().geometry;
        std::byte sector[kOracleSectorBytes];
        std::uint64_t victim = 0, victim_lba = 0;
        for (std::uint32_t seg = 0; seg < cfg_.segs && victim == 0; ++seg) {
            const std::uint64_t base = geo.data_offset(seg);
            for (std::uint64_t off = 0; off + kOracleSectorBytes <= geo.seg_data_bytes();
                 off += kOracleSectorBytes) {
                (void)m_.pmem.read(base + off, sector);
                std::uint64_t id = 0, lba = 0;
                std::memcpy(&lba, sector + 8, 8);
                if (lba < oracle_.sector_count() && oracle_identify_sector(sector, lba, id) &&
                    id != 0) {
                    victim = base + off;
                    victim_lba = lba;
                    break;
                }
            }
        }
        if (victim == 0) return {};
        const std::uint64_t flipped = ~std::uint64_t{0};
        (void)m_.pmem.write(victim + 96, std::as_bytes(std::span(&flipped, 1)), 0);
        if (std::string why = reads_after_flip(c, ids, oracle_); !why.empty()) return why;
        // Follow the corruption: cut the key it lies in, write back, collect.
        SectorOracle o = oracle_;
        o.adopt_recovered(ids);
        bool acked = false;
        if (std::string why = oracle_write(c, o, victim_lba ^ 1, 1, false, acked, true);
            !why.empty())
            return why;
        std::vector<std::uint64_t> now;
        for (const auto& [first, end] : o.touched_runs())
            for (std::uint64_t s = first; s < end; ++s) {
                buf_.resize(kOracleSectorBytes);
                Status st = c.read(s * kOracleSectorBytes, buf_);
                std::uint64_t id = 0;
                if (st.ok()) {
                    std::string why;
                    if (!o.check_live(s, buf_.data(), why))
                        return "data_crc on, after cutting a corrupt key: " + why;
                    oracle_identify_sector(buf_.data(), s, id);
                } else if (st.code() != Errc::data_crc && st.code() != Errc::io) {
                    // data_crc: the read found the flip; io: writeback found it first and
                    // reported the extent lost (docs/design.md, fault policy)
                    return "read after cutting a corrupt key: " + st.to_string();
                }
                now.push_back(id);
            }
        for (int step = 0; step < 64; ++step) {
            auto wb = c.writeback_step();
            auto gc = c.gc_step();
            if (!wb.status.ok() && wb.status.code() != Errc::data_crc)
                return "writeback after a data flip: " + wb.status.to_string();
            if (!gc.status.ok()) return "gc after a data flip: " + gc.status.to_string();
            if (!wb.progressed && !gc.progressed) break;
        }
        if (Status s = m_.block.flush(); !s.ok()) return "backing flush: " + s.to_string();
        for (const auto& [first, end] : o.touched_runs())
            for (std::uint64_t s = first; s < end; ++s) {
                if (Status st = m_.block.read(s * kOracleSectorBytes, sector); !st.ok())
                    return "backing read: " + st.to_string();
                std::uint64_t id = 0;
                if (!oracle_identify_sector(sector, s, id) ||
                    !(oracle_.ever_wrote(s, id) || o.ever_wrote(s, id)))
                    return "data_crc on: corrupt cached data reached backing sector " +
                           std::to_string(s) + " through writeback";
            }
        ++reach_.corruption_followups;
        return {};
    }

    std::string reads_after_flip(SimCache& c, const std::vector<std::uint64_t>& ids,
                                 SectorOracle& o) {
        std::size_t at = 0;
        std::byte sector[kOracleSectorBytes];
        for (const auto& [first, end] : o.touched_runs()) {
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

    const CampaignConfig& cfg_;
    Machine& m_;
    SectorOracle& oracle_;
    CampaignReach& reach_;
    std::uint64_t ids_hash_ = 0;
    bool format_returned_ = false;
    std::vector<std::byte> buf_, wbuf_;
};

}  // namespace pcache::sim
