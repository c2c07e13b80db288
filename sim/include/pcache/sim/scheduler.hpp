// Scheduler: a seeded, deterministic choice of the next operation, and the run identity that
// reproduces a case from one line.
//
// A run is a function of its seed: the scheduler draws every choice from one Rng, and each
// chosen step is mixed into the context's trace hash, so two runs of a seed must end with the
// same hash (tests/unit/sim_sched_test.cpp checks it). Steps are the caller's: client writes,
// reads, FLUSH, writeback_step(), gc_step(), clean restarts; each one bounded.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "pcache/sim/sim_pmem.hpp"

namespace pcache::sim {

// Everything needed to replay one case exactly.
struct RunId {
    static constexpr std::uint64_t kAll = ~std::uint64_t{0};
    std::uint64_t seed = 1;
    PmemMode mode = PmemMode::x86;
    std::uint64_t ops = 100;
    std::uint64_t crash_point = kAll;  // 1-based persistence point; kAll = every point
    std::uint64_t state = kAll;        // crash image index; kAll = every image
};

// Environment overrides used by reproduce commands: PCACHE_SIM_{SEED,MODE,OPS,CRASH_POINT,STATE}.
inline RunId run_id_from_env(RunId id) {
    if (auto v = env_u64("PCACHE_SIM_SEED")) id.seed = *v;
    if (auto v = env_u64("PCACHE_SIM_OPS")) id.ops = *v;
    if (auto v = env_u64("PCACHE_SIM_CRASH_POINT")) id.crash_point = *v;
    if (auto v = env_u64("PCACHE_SIM_STATE")) id.state = *v;
    if (const char* m = std::getenv("PCACHE_SIM_MODE"))
        if (auto mode = parse_pmem_mode(m)) id.mode = *mode;
    return id;
}

// One line: what failed, and the command that replays exactly that case.
inline std::string reproduce_line(const RunId& id, std::string_view binary,
                                  std::string_view gtest_filter) {
    const std::string env = "PCACHE_SIM_SEED=" + std::to_string(id.seed) +
                            " PCACHE_SIM_MODE=" + std::string(pmem_mode_name(id.mode)) +
                            " PCACHE_SIM_OPS=" + std::to_string(id.ops) +
                            " PCACHE_SIM_CRASH_POINT=" + std::to_string(id.crash_point) +
                            " PCACHE_SIM_STATE=" + std::to_string(id.state);
    return "REPRODUCE seed=" + std::to_string(id.seed) +
           " mode=" + std::string(pmem_mode_name(id.mode)) + " ops=" + std::to_string(id.ops) +
           " crash_point=" + std::to_string(id.crash_point) + " state=" + std::to_string(id.state) +
           " cmd: " + env + " " + std::string(binary) + " --gtest_filter='" +
           std::string(gtest_filter) + "'";
}

class Scheduler {
public:
    static constexpr std::size_t kStepsMax = 64;  // distinct step kinds

    Scheduler(std::uint64_t seed, SimContext& context) : rng_(seed), context_(context) {
        context_.record(EventKind::sched_step, seed, ~std::uint64_t{0});  // the seed is traced
    }

    // Registers a step kind; weight is its relative frequency.
    void add(std::string name, std::uint32_t weight, std::function<void(Rng&)> step) {
        PCACHE_SIM_ASSERT(weight > 0 && steps_.size() < kStepsMax);
        PCACHE_SIM_ASSERT(static_cast<bool>(step));
        steps_.push_back(Step{std::move(name), weight, std::move(step)});
        weight_total_ += weight;
    }

    // Runs `count` steps, each chosen by weight from the seed; returns the steps taken.
    std::uint64_t run(std::uint64_t count) {
        PCACHE_SIM_ASSERT(!steps_.empty());
        for (std::uint64_t n = 0; n < count; ++n) {  // bounded by count
            std::uint64_t ticket = rng_.below(weight_total_);
            std::size_t chosen = 0;
            while (ticket >= steps_[chosen].weight) ticket -= steps_[chosen++].weight;
            PCACHE_SIM_ASSERT(chosen < steps_.size());
            context_.record(EventKind::sched_step, n, chosen);
            ++taken_;
            steps_[chosen].fn(rng_);
        }
        return taken_;
    }

    Rng& rng() { return rng_; }
    std::uint64_t steps_taken() const { return taken_; }

private:
    struct Step {
        std::string name;
        std::uint32_t weight;
        std::function<void(Rng&)> fn;
    };
    Rng rng_;
    SimContext& context_;
    std::vector<Step> steps_;
    std::uint64_t weight_total_ = 0;
    std::uint64_t taken_ = 0;
};

}  // namespace pcache::sim
