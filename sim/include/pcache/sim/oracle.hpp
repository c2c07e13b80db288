// The crash oracle of crash-model.md, per 512-byte sector of the backing device.
//
// Every sector a workload writes carries a self-describing pattern: bytes 0..7 hold the write's
// id (1, 2, ...), bytes 8..15 the sector number, the rest a stream derived from both. Id 0 is
// the original content (zeros). A read therefore names the write it came from, and a sector
// mixing two writes (or garbage) fails the full comparison.
//
// Per sector the oracle keeps the ids written to it in issue order (ids[0] = 0, the original)
// and two indexes into that history:
//   durable : the newest entry that is guaranteed to survive a crash (FLUSH or FUA returned);
//   live    : the newest entry a read on the running cache must return.
// After a crash a sector may hold any entry from `durable` on (acknowledged or in flight):
// that is durability (nothing older than `durable`) and no invention (nothing outside the list).
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "pcache/sim/sim_common.hpp"

namespace pcache::sim {

inline constexpr std::uint64_t kOracleSectorBytes = 512;

// The 512 bytes write `id` puts in `sector` (id 0: zeros, the device's original content).
inline void oracle_fill_sector(std::uint64_t id, std::uint64_t sector, std::byte* out) {
    if (id == 0) {
        std::memset(out, 0, kOracleSectorBytes);
        return;
    }
    std::memcpy(out, &id, 8);
    std::memcpy(out + 8, &sector, 8);
    // One multiply per word: distinct for every (id, sector, word), cheap enough to check every
    // sector of every crash image in full.
    const std::uint64_t base = id * 0x9E3779B97F4A7C15ull ^ (sector + 1) * 0xC2B2AE3D27D4EB4Full;
    for (std::uint64_t at = 16; at < kOracleSectorBytes; at += 8) {
        const std::uint64_t word = (base + at) * 0xBF58476D1CE4E5B9ull;
        std::memcpy(out + at, &word, 8);
    }
}

// Which write a sector's bytes came from; returns false for a mix or garbage.
inline bool oracle_identify_sector(const std::byte* in, std::uint64_t sector, std::uint64_t& id) {
    std::memcpy(&id, in, 8);
    std::byte expect[kOracleSectorBytes];
    oracle_fill_sector(id, sector, expect);
    return std::memcmp(in, expect, kOracleSectorBytes) == 0;
}

class SectorOracle {
public:
    explicit SectorOracle(std::uint64_t device_bytes)
        : sectors_(device_bytes / kOracleSectorBytes) {
        PCACHE_SIM_ASSERT(device_bytes % kOracleSectorBytes == 0 && device_bytes > 0);
    }

    std::uint64_t sector_count() const { return sectors_.size(); }

    // A write is issued: from now on a crash may expose it. Returns its id.
    std::uint64_t begin_write(std::uint64_t off_bytes, std::uint64_t len_bytes) {
        PCACHE_SIM_ASSERT(off_bytes % kOracleSectorBytes == 0 &&
                          len_bytes % kOracleSectorBytes == 0);
        PCACHE_SIM_ASSERT(off_bytes + len_bytes <= sectors_.size() * kOracleSectorBytes);
        const std::uint64_t id = ++writes_;
        for (std::uint64_t s = off_bytes / kOracleSectorBytes;
             s < (off_bytes + len_bytes) / kOracleSectorBytes; ++s) {
            Sector& st = sectors_[s];
            if (st.ids.empty()) {
                st.ids.push_back(0);
                touched_dirty_ = true;
            }
            st.ids.push_back(id);
        }
        return id;
    }
    // The write returned ok: reads must return it; with FUA it is durable too.
    void end_write(std::uint64_t off_bytes, std::uint64_t len_bytes, std::uint64_t id, bool fua) {
        for (std::uint64_t s = off_bytes / kOracleSectorBytes;
             s < (off_bytes + len_bytes) / kOracleSectorBytes; ++s) {
            Sector& st = sectors_[s];
            const auto at = static_cast<std::uint32_t>(std::find(st.ids.begin(), st.ids.end(), id) -
                                                       st.ids.begin());
            PCACHE_SIM_ASSERT(at < st.ids.size());
            st.live = at;
            if (fua) st.durable = std::max(st.durable, at);
        }
    }
    // FLUSH (or a clean close) returned ok: every acknowledged write is durable.
    void flushed() {
        for (Sector& st : sectors_) st.durable = std::max(st.durable, st.live);
    }

    // The sectors ever written, as [first, end) sector runs in ascending order.
    const std::vector<std::pair<std::uint64_t, std::uint64_t>>& touched_runs() {
        if (!touched_dirty_) return runs_;
        runs_.clear();
        for (std::uint64_t s = 0; s < sectors_.size(); ++s) {
            if (sectors_[s].ids.empty()) continue;
            if (!runs_.empty() && runs_.back().second == s)
                runs_.back().second = s + 1;
            else
                runs_.emplace_back(s, s + 1);
        }
        touched_dirty_ = false;
        return runs_;
    }

    // A recovered image becomes the new starting point (work on a copy of the oracle): each
    // touched sector's history is what recovery returned, durable and live. `ids` holds one id
    // per sector of touched_runs(), in order.
    void adopt_recovered(const std::vector<std::uint64_t>& ids) {
        std::size_t at = 0;
        for (const auto& [first, end] : touched_runs())
            for (std::uint64_t s = first; s < end; ++s, ++at) {
                PCACHE_SIM_ASSERT(at < ids.size());
                sectors_[s].ids.assign(1, ids[at]);
                sectors_[s].durable = sectors_[s].live = 0;
            }
    }
    // Whether `id` is in the sector's history (any write ever issued to it, or 0).
    bool ever_wrote(std::uint64_t sector, std::uint64_t id) const {
        const auto& ids = sectors_[sector].ids;
        return id == 0 || std::find(ids.begin(), ids.end(), id) != ids.end();
    }

    // Checks one sector read after a crash; on failure explains why.
    bool check_after_crash(std::uint64_t sector, const std::byte* bytes, std::uint64_t& id,
                           std::string& why) const {
        if (!oracle_identify_sector(bytes, sector, id)) {
            why = "sector " + std::to_string(sector) +
                  " holds bytes no write produced (a mix or garbage)";
            return false;
        }
        const Sector& st = sectors_[sector];
        if (st.ids.empty()) {
            if (id == 0) return true;
            why = "sector " + std::to_string(sector) + " was never written but reads as write " +
                  std::to_string(id);
            return false;
        }
        for (std::size_t i = st.durable; i < st.ids.size(); ++i)
            if (st.ids[i] == id) return true;
        const bool older = std::find(st.ids.begin(), st.ids.begin() + st.durable, id) !=
                           st.ids.begin() + st.durable;
        why = "sector " + std::to_string(sector) + " reads as write " + std::to_string(id) +
              (older ? " but write " + std::to_string(st.ids[st.durable]) +
                           " was durable (lost a flushed write)"
                     : " which never wrote it");
        return false;
    }

    // Checks one sector read on the running cache: exactly the newest acknowledged write.
    bool check_live(std::uint64_t sector, const std::byte* bytes, std::string& why) const {
        const Sector& st = sectors_[sector];
        std::uint64_t id = 0;
        const bool whole = oracle_identify_sector(bytes, sector, id);
        const std::uint64_t want = st.ids.empty() ? 0 : st.ids[st.live];
        if (whole && id == want) return true;
        // A write that failed midway (busy after its retries) may show either version.
        if (whole && !st.ids.empty() && st.live + 1 < st.ids.size() &&
            std::find(st.ids.begin() + st.live, st.ids.end(), id) != st.ids.end())
            return true;
        why = "live read of sector " + std::to_string(sector) + ": expected write " +
              std::to_string(want) +
              (whole ? ", found write " + std::to_string(id) : ", found bytes no write produced");
        return false;
    }

private:
    struct Sector {
        std::vector<std::uint64_t> ids;  // ids[0] = 0 once written
        std::uint32_t durable = 0;
        std::uint32_t live = 0;
    };
    std::vector<Sector> sectors_;
    std::uint64_t writes_ = 0;
    bool touched_dirty_ = false;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> runs_;
};

}  // namespace pcache::sim
