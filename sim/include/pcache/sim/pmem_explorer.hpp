// PmemExplorer: the legal crash images of one CrashPoint, numbered 0..state_count()-1.
//
//   CrashPoint cp = pmem.capture();            // or caught SimCrash, then capture()
//   PmemExplorer ex(pmem, cp, {.seed = seed});
//   for (std::uint64_t i = 0; i < ex.state_count(); ++i) {
//       ex.apply(i);      // durable content == image i; CPU view reset to it (a reboot)
//       ...recover and check; recovery may write, and may itself crash and nest an explorer...
//       ex.rollback();    // device back at the crash point, as if nothing happened
//   }
//
// The pending log is split into independent *units*, each with `radix` choices:
//  * prefix unit (x86 and unsafe_shutdown: one per line's cached stores; eadr: one for all cached
//    stores): choice c keeps the first c stores, in program order;
//  * one-of unit (non-temporal stores, grouped per word; in `any` mode every store, per word):
//    choice 0 keeps the durable value, choice c keeps the c-th pending value.
// A state number is a mixed-radix number over the units. With at most `exhaustive_words_max`
// pending words (default 12) every state is enumerated (at most 2^12 = 4096 images); with more,
// state i is a sample drawn from (seed, i): state 0 keeps nothing, state 1 keeps everything,
// the others choose each unit uniformly.
//
// apply() costs O(pending words): the image is built by undoing part of the log in place.
#pragma once

#include <map>
#include <vector>

#include "pcache/sim/sim_pmem.hpp"

namespace pcache::sim {

struct ExploreOptions {
    std::uint64_t seed = 0;
    std::uint64_t exhaustive_words_max = 12;  // crash-model.md: enumerate all at <= ~12 words
    std::uint64_t samples = 256;              // states drawn when there are more
};

class PmemExplorer {
public:
    PmemExplorer(SimPmem& pmem, CrashPoint cp, ExploreOptions options = {})
        : pmem_(pmem), cp_(std::move(cp)), options_(options) {
        PCACHE_SIM_ASSERT(cp_.log.size() <= std::uint32_t(-1));
        build_units();
        exhaustive_ = cp_.log.size() <= options_.exhaustive_words_max;
        if (exhaustive_) {
            state_count_ = 1;
            for (const Unit& u : units_) state_count_ *= u.radix();  // <= 2^12: cannot overflow
        } else {
            state_count_ = std::max<std::uint64_t>(options_.samples, 2);
        }
        include_.assign(cp_.log.size(), 0);
        PCACHE_SIM_ASSERT(state_count_ >= 1);
    }
    PmemExplorer(const PmemExplorer&) = delete;
    PmemExplorer& operator=(const PmemExplorer&) = delete;
    ~PmemExplorer() { PCACHE_SIM_ASSERT(depth_ == 0); }  // every apply() needs its rollback()

    std::uint64_t state_count() const { return state_count_; }
    bool exhaustive() const { return exhaustive_; }
    const CrashPoint& crash_point() const { return cp_; }
    std::uint64_t unit_count() const { return units_.size(); }

    // Decides which pending stores state `state` keeps (no device access).
    void choose(std::uint64_t state) {
        PCACHE_SIM_ASSERT(state < state_count_);
        std::fill(include_.begin(), include_.end(), 0);
        if (exhaustive_) {
            std::uint64_t rest = state;
            for (const Unit& u : units_) {
                keep(u, rest % u.radix());
                rest /= u.radix();
            }
            PCACHE_SIM_ASSERT(rest == 0);
            return;
        }
        std::uint64_t stream = options_.seed ^ (state * 0xD1B54A32D192ED03ull);
        Rng rng(splitmix64(stream));
        for (const Unit& u : units_) {
            const std::uint64_t c = state == 0   ? 0
                                    : state == 1 ? u.radix() - 1
                                                 : rng.below(u.radix());
            keep(u, c);
        }
    }

    void apply(std::uint64_t state) {
        PCACHE_SIM_ASSERT(depth_ == 0);
        choose(state);
        depth_ = pmem_.begin_image();
        const std::vector<PmemStore>& log = cp_.log;
        // Undo everything (newest first, so each word ends at its durable value), then redo the
        // kept stores in program order (so the newest kept store of a word wins).
        for (std::size_t i = log.size(); i-- > 0;)
            pmem_.set_word(log[i].word_index, log[i].old_value);
        for (std::size_t i = 0; i < log.size(); ++i)
            if (include_[i]) pmem_.set_word(log[i].word_index, log[i].new_value);
        pmem_.end_image();
        PCACHE_SIM_ASSERT(pmem_.pending_words() == 0);
    }

    void rollback() {
        PCACHE_SIM_ASSERT(depth_ != 0);
        pmem_.rollback_image(depth_, cp_);
        depth_ = 0;
        PCACHE_SIM_ASSERT(pmem_.pending_words() == cp_.log.size());
    }

    // Which log entries the last choose()/apply() kept (for tests and diagnostics).
    const std::vector<std::uint8_t>& kept() const { return include_; }

private:
    struct Unit {
        std::uint32_t first = 0;  // into order_
        std::uint32_t count = 0;
        bool prefix = false;
        std::uint64_t radix() const { return std::uint64_t{count} + 1; }
    };

    void keep(const Unit& u, std::uint64_t choice) {
        PCACHE_SIM_ASSERT(choice < u.radix());
        if (u.prefix) {
            for (std::uint64_t k = 0; k < choice; ++k) include_[order_[u.first + k]] = 1;
        } else if (choice != 0) {
            include_[order_[u.first + choice - 1]] = 1;
        }
    }

    void add_groups(const std::map<std::uint64_t, std::vector<std::uint32_t>>& groups,
                    bool prefix) {
        for (const auto& [key, members] : groups) {  // std::map: deterministic unit order
            units_.push_back(Unit{static_cast<std::uint32_t>(order_.size()),
                                  static_cast<std::uint32_t>(members.size()), prefix});
            order_.insert(order_.end(), members.begin(), members.end());
        }
    }

    void build_units() {
        std::map<std::uint64_t, std::vector<std::uint32_t>> prefix_groups;  // key: line (or 0)
        std::map<std::uint64_t, std::vector<std::uint32_t>> word_groups;    // key: word
        for (std::uint32_t i = 0; i < cp_.log.size(); ++i) {
            const PmemStore& s = cp_.log[i];
            PCACHE_SIM_ASSERT(i == 0 || cp_.log[i - 1].seq < s.seq);  // log is in program order
            if (cp_.mode == PmemMode::any || s.non_temporal)
                word_groups[s.word_index].push_back(i);
            else if (cp_.mode == PmemMode::eadr)
                prefix_groups[0].push_back(i);
            else
                prefix_groups[s.line()].push_back(i);
        }
        add_groups(prefix_groups, true);
        add_groups(word_groups, false);
        PCACHE_SIM_ASSERT(order_.size() == cp_.log.size());
    }

    SimPmem& pmem_;
    CrashPoint cp_;
    ExploreOptions options_;
    std::vector<Unit> units_;
    std::vector<std::uint32_t> order_;
    std::vector<std::uint8_t> include_;
    std::uint64_t state_count_ = 0;
    bool exhaustive_ = false;
    std::size_t depth_ = 0;
};

}  // namespace pcache::sim
