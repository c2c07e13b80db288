// The oracle for concurrent runs: per 512-byte sector, which writes a read may return.
//
// Every write stamps each sector with a unique id (oracle.hpp's pattern), and the oracle keeps,
// per sector, the writes of the current epoch with their logical [start, end) interval (a
// counter advanced at every operation start and end; only one simulated thread runs at a time,
// so it is a total order). A sector read during [rs, re] may return write w exactly when
//   * w started before the read ended (w.start < re: nothing from the future), and
//   * no write w2 of the sector started after w ended and ended before the read started
//     (w2.start > w.end and w2.end < rs: w was not already overwritten),
// the atomic-register condition: the value was current at some instant during the read. The
// original content (id 0) counts as a write that ended before time 0. A sector mixing two
// writes, or garbage, is never acceptable.
//
// At a quiescent point (no operation in flight) the value every sector reads as is settled:
// settle() checks it and makes it the only history entry, so histories stay one epoch long.
//
// After a crash a sector may hold write w exactly when no *durable* write of the sector started
// after w ended (check_after_crash). A write is durable once it returned with FUA, or once a
// FLUSH that started after it ended has returned (flushed()). These candidates live in a second
// history per sector that settle() leaves alone and flushed() prunes (a write replaced by a
// durable one can never come back).
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "pcache/sim/oracle.hpp"

namespace pcache::sim {

class IntervalOracle {
public:
    static constexpr std::uint64_t kOpen = ~std::uint64_t{0};  // end of a write in flight

    explicit IntervalOracle(std::uint64_t device_bytes)
        : sectors_(device_bytes / kOracleSectorBytes), crash_(sectors_.size()) {
        PCACHE_SIM_ASSERT(device_bytes % kOracleSectorBytes == 0 && device_bytes > 0);
        for (auto& s : sectors_) s.push_back(Entry{0, 0, 0, true});
        for (auto& s : crash_) s.push_back(Entry{0, 0, 0, true});
    }

    std::uint64_t now() const { return clock_; }
    std::uint64_t tick() { return ++clock_; }
    std::uint64_t sector_count() const { return sectors_.size(); }

    // A write is issued over [first, first + count) sectors: returns its id.
    std::uint64_t begin_write(std::uint64_t first, std::uint64_t count) {
        PCACHE_SIM_ASSERT(first + count <= sectors_.size());
        const std::uint64_t id = ++writes_;
        const std::uint64_t start = tick();
        for (std::uint64_t s = first; s < first + count; ++s) {
            sectors_[s].push_back(Entry{id, start, kOpen, false});
            crash_[s].push_back(Entry{id, start, kOpen, false});
        }
        return id;
    }
    // The write returned (ok, or failed midway: then its sectors stay possible forever).
    void end_write(std::uint64_t first, std::uint64_t count, std::uint64_t id, bool fua) {
        const std::uint64_t end = tick();
        for (std::uint64_t s = first; s < first + count; ++s) {
            for (Entry& e : sectors_[s])
                if (e.id == id) e.end = end;
            for (Entry& e : crash_[s])
                if (e.id == id) {
                    e.end = end;
                    e.durable = fua;
                }
            if (fua) prune(crash_[s]);
        }
    }
    // A FLUSH that started at `flush_start` returned ok: every write ended before it is durable.
    void flushed(std::uint64_t flush_start) {
        for (auto& hist : crash_) {
            for (Entry& e : hist)
                if (e.end < flush_start) e.durable = true;
            prune(hist);
        }
    }

    // Checks one sector of a recovered crash image; on failure explains why.
    bool check_after_crash(std::uint64_t sector, const std::byte* bytes, std::string& why) const {
        std::uint64_t id = 0;
        if (!oracle_identify_sector(bytes, sector, id)) {
            why = "sector " + std::to_string(sector) +
                  " holds bytes no write produced after the crash (a mix or garbage)";
            return false;
        }
        const auto& hist = crash_[sector];
        const Entry* w = nullptr;
        for (const Entry& e : hist)
            if (e.id == id) w = &e;
        if (w == nullptr) {
            why = "sector " + std::to_string(sector) + " reads as write " + std::to_string(id) +
                  " after the crash: a durable write replaced it (a flushed write was lost) or it "
                  "never wrote there";
            return false;
        }
        for (const Entry& e : hist)
            if (e.durable && w->end != kOpen && e.start > w->end) {
                why = "sector " + std::to_string(sector) + " reads as write " + std::to_string(id) +
                      " after the crash, but write " + std::to_string(e.id) +
                      " replaced it and was durable (lost a flushed write)";
                return false;
            }
        return true;
    }

    // Checks one sector of a read that ran during [rs, re]; on failure explains why.
    bool check(std::uint64_t sector, const std::byte* bytes, std::uint64_t rs, std::uint64_t re,
               std::string& why) const {
        std::uint64_t id = 0;
        if (!oracle_identify_sector(bytes, sector, id)) {
            std::uint64_t other = 0, other_id = 0;
            std::memcpy(&other, bytes + 8, 8);
            why = "sector " + std::to_string(sector) +
                  (other != sector && other < sectors_.size() &&
                           oracle_identify_sector(bytes, other, other_id)
                       ? " holds sector " + std::to_string(other) + " of write " +
                             std::to_string(other_id) + " (cache bytes reused under the read)"
                       : " holds bytes no write produced (a mix or garbage)");
            return false;
        }
        const auto& hist = sectors_[sector];
        const Entry* w = nullptr;
        for (const Entry& e : hist)
            if (e.id == id) w = &e;
        if (w == nullptr) {
            why = "sector " + std::to_string(sector) + " reads as write " + std::to_string(id) +
                  ", which never wrote it (or was settled away)";
            return false;
        }
        if (w->start >= re) {
            why = "sector " + std::to_string(sector) + " reads as write " + std::to_string(id) +
                  ", which started after the read ended";
            return false;
        }
        for (const Entry& e : hist) {
            if (w->end != kOpen && e.start > w->end && e.end < rs) {
                why = "sector " + std::to_string(sector) + " reads as write " + std::to_string(id) +
                      " (ended at t" + std::to_string(w->end) + ") but write " +
                      std::to_string(e.id) + " replaced it during [t" + std::to_string(e.start) +
                      ", t" + std::to_string(e.end) + "), before the read began at t" +
                      std::to_string(rs) + " (stale data)";
                return false;
            }
        }
        return true;
    }
    // Quiescent: the sector reads as `bytes` from now on (checked first).
    bool settle(std::uint64_t sector, const std::byte* bytes, std::string& why) {
        const std::uint64_t t = tick();
        if (!check(sector, bytes, t, t, why)) return false;
        std::uint64_t id = 0;
        oracle_identify_sector(bytes, sector, id);
        sectors_[sector].assign(1, Entry{id, 0, 0, false});
        return true;
    }
    // The settled id of a sector (valid right after settle()).
    std::uint64_t settled_id(std::uint64_t sector) const {
        PCACHE_SIM_ASSERT(sectors_[sector].size() == 1);
        return sectors_[sector].front().id;
    }

private:
    struct Entry {
        std::uint64_t id;
        std::uint64_t start;
        std::uint64_t end;  // kOpen while in flight
        bool durable;       // crash_ only: survives a crash (FUA, or a later FLUSH returned)
    };
    // Drops the writes a durable write replaced (started after they ended).
    static void prune(std::vector<Entry>& hist) {
        std::uint64_t newest_durable_start = 0;
        for (const Entry& e : hist)
            if (e.durable) newest_durable_start = std::max(newest_durable_start, e.start);
        std::erase_if(
            hist, [&](const Entry& e) { return e.end != kOpen && e.end < newest_durable_start; });
    }

    std::vector<std::vector<Entry>> sectors_;  // live reads: settled at quiescent points
    std::vector<std::vector<Entry>> crash_;    // after a crash: pruned by durability
    std::uint64_t clock_ = 0;
    std::uint64_t writes_ = 0;
};

}  // namespace pcache::sim
