// pcache sim: a crash campaign on simulated hardware (sim/include/pcache/sim/campaign.hpp).
//
// Runs seeded workloads on Cache<SimPmem, SimBlockDevice>, cuts each at its persistence points,
// recovers every crash image and checks the oracle of crash-model.md. One seed (--seed S), or
// consecutive seeds from S until --seconds have passed (the budget is measured here, in the
// tool: the simulator never reads a clock). A progress line goes to stderr on a terminal; the
// summary goes to stdout; every failure prints the one-line command that replays it, and
// `--seed S --crash-at K --state I` replays exactly that case. Exit 0: no failure; 1: failures
// (findings in `any` mode are reported but do not fail); 2: usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "pcache/cli.hpp"
#include "pcache/sim/campaign.hpp"

namespace pcache::tool {
namespace {

using Clock = std::chrono::steady_clock;

int run_sim(const std::vector<std::string>& args) {
    po::options_description opts("options");
    std::uint64_t seed = 1, ops = 100, seconds = 0, segment_kib = 64, backing_kib = 1024;
    std::uint32_t segs = 8, n_ksets = 1, explore_one_in = 1;
    std::uint64_t crash_at = sim::CampaignConfig::kAll, state = sim::CampaignConfig::kAll;
    std::uint64_t recovery_at = sim::CampaignConfig::kAll,
                  recovery_state = sim::CampaignConfig::kAll;
    std::string mode_name = "x86";
    opts.add_options()("seed", integer(&seed, std::uint64_t{0}, UINT64_MAX - 1, "seed"),
                       "first (or only) seed")(
        "seconds", integer(&seconds, std::uint64_t{0}, std::uint64_t{31536000}, "seconds"),
        "run consecutive seeds until this many seconds have passed")(
        "ops", integer(&ops, std::uint64_t{1}, std::uint64_t{100000000}, "ops"),
        "operations per workload")("mode", po::value(&mode_name),
                                   "pmem model: x86, eadr or any (any: findings only)")(
        "segment-kib",
        integer(&segment_kib, std::uint64_t{64}, std::uint64_t{16384}, "segment-kib"),
        "segment size in KiB (16384: kernel geometry)")("segs", integer(&segs, 2u, 4096u, "segs"),
                                                        "segments in the simulated cache device")(
        "backing-kib",
        integer(&backing_kib, std::uint64_t{128}, std::uint64_t{4} << 20, "backing-kib"),
        "simulated backing device size in KiB")("n-ksets", integer(&n_ksets, 1u, 1024u, "n-ksets"),
                                                "kset buffers")("data-crc", "per-key data CRC on")(
        "tear-block-writes", "unflushed backing writes may tear at 512-byte sectors")(
        "recovery-crashes", "also crash recovery at its persistence points")(
        "explore-one-in", integer(&explore_one_in, 1u, 1000000000u, "explore-one-in"),
        "explore one persistence point in N (seeded)")(
        "crash-at", integer(&crash_at, std::uint64_t{0}, UINT64_MAX - 1, "crash-at", false),
        "replay: only this persistence point")(
        "state", integer(&state, std::uint64_t{0}, UINT64_MAX - 1, "state", false),
        "replay: only this crash image")(
        "recovery-at",
        integer(&recovery_at, std::uint64_t{0}, UINT64_MAX - 1, "recovery-at", false),
        "replay: only this recovery persistence point (0-based)")(
        "recovery-state",
        integer(&recovery_state, std::uint64_t{0}, UINT64_MAX - 1, "recovery-state", false),
        "replay: only this image of the recovery crash");
    po::variables_map vm;
    const int parsed =
        parse_args("sim", "[--seed S | --seconds N] [options]", opts, nullptr, args, vm);
    if (parsed >= 0) return parsed;
    const auto mode = sim::parse_pmem_mode(mode_name);
    if (!mode || *mode == sim::PmemMode::unsafe_shutdown)
        return usage_error("sim", "--mode: expected x86, eadr or any");
    if (ops == 0 || segs < 2 || backing_kib < 128 || backing_kib % 4 != 0)
        return usage_error(
            "sim", "expected --ops >= 1, --segs >= 2, --backing-kib >= 128 and a multiple of 4");
    if (segment_kib < 64 || segment_kib > 16384 || segment_kib % 4 != 0)
        return usage_error("sim", "--segment-kib: expected a multiple of 4 between 64 and 16384");
    if (segment_kib == 16384 && segs < 32)
        return usage_error("sim", "kernel geometry needs --segs >= 32 (512 MiB)");

    sim::CampaignConfig base;
    base.mode = *mode;
    base.ops = ops;
    base.segment_bytes = segment_kib << 10;
    base.segs = segs;
    base.backing_bytes = backing_kib << 10;
    base.n_ksets = n_ksets;
    base.data_crc = vm.count("data-crc") > 0;
    base.tear_block_writes = vm.count("tear-block-writes") > 0;
    base.recovery_crashes = vm.count("recovery-crashes") > 0;
    base.explore_one_in = explore_one_in;
    base.crash_point = crash_at;
    base.state = state;
    base.recovery_point = recovery_at;
    base.recovery_state = recovery_state;
    base.tool = "pcache";
    const bool replay = crash_at != sim::CampaignConfig::kAll;
    if (replay) base.failures_max = 1;

    const bool tty = ::isatty(STDERR_FILENO) == 1;
    const auto start = Clock::now();
    auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    std::uint64_t runs = 0, points = 0, explored = 0, states = 0, recovery_crashes = 0, hash = 0;
    std::vector<std::string> failures;
    const std::uint64_t seeds_max = seconds == 0 ? 1 : UINT64_MAX;
    for (std::uint64_t n = 0; n < seeds_max; ++n) {
        sim::CampaignConfig c = base;
        c.seed = seed + n;
        const sim::CampaignResult r = sim::Campaign(c).run();
        ++runs;
        points += r.persist_points;
        explored += r.crash_points_explored;
        states += r.states_checked;
        recovery_crashes += r.recovery_crashes;
        hash = hash * 0x100000001B3ull ^ r.trace_hash;
        for (const auto& f : r.failures) {
            if (failures.size() < 20) failures.push_back(f);
            std::fprintf(stderr, "%s%s %s\n", tty ? "\r\033[K" : "",
                         *mode == sim::PmemMode::any ? "finding:" : "FAIL:", f.c_str());
        }
        const double t = elapsed_s();
        if (tty)
            std::fprintf(
                stderr,
                "\r\033[Ksim: seed %llu, %llu runs, %.0f states/s, %llu crash points, %zu failures",
                static_cast<unsigned long long>(c.seed), static_cast<unsigned long long>(runs),
                t > 0 ? double(states) / t : 0.0, static_cast<unsigned long long>(explored),
                failures.size());
        if (seconds == 0 || t >= double(seconds) ||
            (!failures.empty() && *mode != sim::PmemMode::any))
            break;
    }
    if (tty) std::fputs("\n", stderr);
    const double t = elapsed_s();
    std::printf(
        "pcache sim: mode %s, %llu seed(s) from %llu, %llu ops each, segment %llu KiB x %u%s\n",
        mode_name.c_str(), static_cast<unsigned long long>(runs),
        static_cast<unsigned long long>(seed), static_cast<unsigned long long>(ops),
        static_cast<unsigned long long>(segment_kib), segs, base.data_crc ? ", data_crc" : "");
    std::printf(
        "  persistence points %llu, explored %llu, crash states checked %llu (%llu in recovery "
        "crashes)\n",
        static_cast<unsigned long long>(points), static_cast<unsigned long long>(explored),
        static_cast<unsigned long long>(states), static_cast<unsigned long long>(recovery_crashes));
    std::printf("  %.1f s, %.0f states/s, trace hash %016llx\n", t,
                t > 0 ? double(states) / t : 0.0, static_cast<unsigned long long>(hash));
    if (replay && states == 0)
        return usage_error(
            "sim", "--crash-at " + std::to_string(crash_at) +
                       (state != sim::CampaignConfig::kAll ? " --state " + std::to_string(state)
                                                           : std::string()) +
                       ": no such crash image (this run has " + std::to_string(points) +
                       " persistence points, 0-based)");
    if (failures.empty()) {
        std::printf("  no failures\n");
        return kExitOk;
    }
    std::printf(
        "  %zu %s; replay the first with:\n    %s\n", failures.size(),
        *mode == sim::PmemMode::any ? "finding(s) (any mode: triage, not failures)" : "FAILURE(S)",
        failures.front().substr(failures.front().find("cmd: ") + 5).c_str());
    return *mode == sim::PmemMode::any ? kExitOk : kExitProblems;
}

}  // namespace

PCACHE_COMMAND(sim, "crash campaign on simulated pmem and disk: seeds, crash points, oracle",
               run_sim);

}  // namespace pcache::tool
