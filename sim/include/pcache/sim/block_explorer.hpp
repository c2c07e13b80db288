// BlockExplorer: the legal crash images of a SimBlockDevice, and SystemExplorer: the product
// of a pmem and a block explorer (one simulated machine losing power once).
//
// Units: each pending write (or, with tear_writes, each pending sector) is kept or lost
// independently, so a state number is a bit set over the units. Up to `exhaustive_units_max`
// units (default 12: 4096 images) every state is enumerated; beyond that state i is drawn from
// (seed, i), state 0 losing everything pending and state 1 keeping everything.
// Kept stores are redone in completion order, so the newest kept write of a sector wins.
#pragma once

#include <map>
#include <vector>

#include "pcache/sim/pmem_explorer.hpp"
#include "pcache/sim/sim_block_device.hpp"

namespace pcache::sim {

struct BlockExploreOptions {
    std::uint64_t seed = 0;
    bool tear_writes = false;  // sectors of one write persist independently (must-survive)
    std::uint64_t exhaustive_units_max = 12;
    std::uint64_t samples = 256;
};

class BlockExplorer {
public:
    BlockExplorer(SimBlockDevice& dev, BlockCrashPoint cp, BlockExploreOptions options = {})
        : dev_(dev), cp_(std::move(cp)), options_(options) {
        std::map<std::uint64_t, std::uint32_t> unit_of_write;  // write_id -> unit
        unit_of_entry_.reserve(cp_.log.size());
        for (std::uint32_t i = 0; i < cp_.log.size(); ++i) {
            const std::uint64_t key = options_.tear_writes ? i : cp_.log[i].write_id;
            auto [it, inserted] = unit_of_write.try_emplace(key, unit_count_);
            if (inserted) ++unit_count_;
            unit_of_entry_.push_back(it->second);
        }
        exhaustive_ = unit_count_ <= options_.exhaustive_units_max;
        state_count_ = exhaustive_ ? std::uint64_t{1} << unit_count_
                                   : std::max<std::uint64_t>(options_.samples, 2);
        keep_unit_.assign(unit_count_, 0);
        PCACHE_SIM_ASSERT(unit_count_ <= cp_.log.size() && state_count_ >= 1);
    }
    BlockExplorer(const BlockExplorer&) = delete;
    BlockExplorer& operator=(const BlockExplorer&) = delete;
    ~BlockExplorer() { PCACHE_SIM_ASSERT(depth_ == 0); }

    std::uint64_t state_count() const { return state_count_; }
    bool exhaustive() const { return exhaustive_; }
    std::uint64_t unit_count() const { return unit_count_; }

    void choose(std::uint64_t state) {
        PCACHE_SIM_ASSERT(state < state_count_);
        if (exhaustive_) {
            for (std::uint64_t u = 0; u < unit_count_; ++u) keep_unit_[u] = (state >> u) & 1;
            return;
        }
        std::uint64_t stream = options_.seed ^ (state * 0xA24BAED4963EE407ull);
        Rng rng(splitmix64(stream));
        for (std::uint64_t u = 0; u < unit_count_; ++u)
            keep_unit_[u] = state == 0 ? 0 : state == 1 ? 1 : rng.next() & 1;
    }

    void apply(std::uint64_t state) {
        PCACHE_SIM_ASSERT(depth_ == 0);
        choose(state);
        depth_ = dev_.begin_image();
        const std::vector<BlockStore>& log = cp_.log;
        for (std::size_t i = log.size(); i-- > 0;) dev_.set_sector(log[i].sector, log[i].old_data);
        for (std::size_t i = 0; i < log.size(); ++i)
            if (keep_unit_[unit_of_entry_[i]]) dev_.set_sector(log[i].sector, log[i].new_data);
        dev_.end_image();
        PCACHE_SIM_ASSERT(dev_.pending_sectors() == 0);
    }

    void rollback() {
        PCACHE_SIM_ASSERT(depth_ != 0);
        dev_.rollback_image(depth_, cp_);
        depth_ = 0;
        PCACHE_SIM_ASSERT(dev_.pending_sectors() == cp_.log.size());
    }

private:
    SimBlockDevice& dev_;
    BlockCrashPoint cp_;
    BlockExploreOptions options_;
    std::vector<std::uint32_t> unit_of_entry_;
    std::vector<std::uint8_t> keep_unit_;
    std::uint64_t unit_count_ = 0;
    std::uint64_t state_count_ = 0;
    bool exhaustive_ = false;
    std::size_t depth_ = 0;
};

// Both devices of one machine: state i = pmem state (i % P) and block state (i / P).
class SystemExplorer {
public:
    SystemExplorer(SimPmem& pmem, SimBlockDevice& dev, ExploreOptions pmem_options = {},
                   BlockExploreOptions block_options = {})
        : pmem_(pmem, pmem.capture(), pmem_options), block_(dev, dev.capture(), block_options) {
        PCACHE_SIM_ASSERT(pmem_.state_count() <= (std::uint64_t{1} << 32));
        PCACHE_SIM_ASSERT(block_.state_count() <= (std::uint64_t{1} << 32));
    }
    std::uint64_t state_count() const { return pmem_.state_count() * block_.state_count(); }
    void apply(std::uint64_t state) {
        PCACHE_SIM_ASSERT(state < state_count());
        pmem_.apply(state % pmem_.state_count());
        block_.apply(state / pmem_.state_count());
    }
    void rollback() {
        block_.rollback();
        pmem_.rollback();
    }
    PmemExplorer& pmem() { return pmem_; }
    BlockExplorer& block() { return block_; }

private:
    PmemExplorer pmem_;
    BlockExplorer block_;
};

}  // namespace pcache::sim
