// pcache sim: a crash campaign on simulated hardware (sim/include/pcache/sim/campaign.hpp).
//
// Runs seeded workloads on Cache<SimPmem, SimBlockDevice>, cuts each at its persistence points,
// recovers every crash image and checks the oracle of crash-model.md. One seed (--seed S),
// --cases N consecutive seeds from S, or consecutive seeds until --seconds have passed (the
// budget is measured here, in the tool: the simulator never reads a clock). data_crc is on for
// every second seed by default (--data-crc mixed). The summary lists what the campaign reached
// (segment switches, LAST ksets, log wraps, GC runs, stripe splits, sequence wraps, work after
// recovery); unless replaying one case or given --no-reach-check, reaching none of a required
// kind is a failure (exit 1): a campaign that never leaves key-log segment 0 proves nothing
// about the rest of the log. A progress line goes to stderr on a terminal; the
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
    const sim::CampaignConfig d;
    // Defaults: one campaign that reaches every required kind (10000 operations cross key-log
    // segments, wrap the log and every 8-bit sequence; 8 MiB = two stripes, two kset buffers).
    std::uint64_t seed = 1, ops = 10000, seconds = 0, cases = 1, segment_kib = 64,
                  backing_kib = 8192;
    std::uint32_t segs = 8, n_ksets = 2, explore_one_in = 64;
    std::uint64_t pmem_samples = d.pmem_samples, block_samples = d.block_samples,
                  recovery_states_max = d.recovery_states_max;
    std::uint32_t idempotence_one_in = d.idempotence_one_in,
                  backing_check_one_in = d.backing_check_one_in,
                  crc_flip_one_in = d.crc_flip_one_in,
                  after_recovery_one_in = d.after_recovery_one_in,
                  after_recovery_ops = d.after_recovery_ops;
    std::string data_crc = "mixed";
    std::uint64_t crash_at = sim::CampaignConfig::kAll, state = sim::CampaignConfig::kAll;
    std::uint64_t recovery_at = sim::CampaignConfig::kAll,
                  recovery_state = sim::CampaignConfig::kAll;
    std::string mode_name = "x86";
    using U64 = std::uint64_t;
    opts.add_options()("seed", integer(&seed, U64{0}, UINT64_MAX - 1, "seed"),
                       "first (or only) seed")("cases",
                                               integer(&cases, U64{1}, U64{1000000000}, "cases"),
                                               "run this many consecutive seeds")(
        "seconds", integer(&seconds, U64{0}, U64{31536000}, "seconds"),
        "run consecutive seeds until this many seconds have passed (0: use --cases)")(
        "ops", integer(&ops, U64{1}, U64{100000000}, "ops"), "operations per workload")(
        "mode", po::value(&mode_name)->default_value(mode_name),
        "pmem model: x86, eadr or any (any: findings only)")(
        "segment-kib", integer(&segment_kib, U64{64}, U64{16384}, "segment-kib"),
        "segment size in KiB (16384: kernel geometry)")("segs", integer(&segs, 2u, 4096u, "segs"),
                                                        "segments in the simulated cache device")(
        "backing-kib", integer(&backing_kib, U64{128}, U64{4} << 20, "backing-kib"),
        "simulated backing device size in KiB")("n-ksets", integer(&n_ksets, 1u, 1024u, "n-ksets"),
                                                "lanes (data head and kset buffer each)")(
        "data-crc", po::value(&data_crc)->default_value(data_crc)->implicit_value("on"),
        "per-key data CRC: on, off or mixed (every second seed)")(
        "pmem-samples", integer(&pmem_samples, U64{1}, U64{1000000}, "pmem-samples"),
        "sampled pmem images per crash point")(
        "block-samples", integer(&block_samples, U64{1}, U64{1000000}, "block-samples"),
        "sampled backing images per crash point")(
        "idempotence-one-in", integer(&idempotence_one_in, 0u, 1000000000u, "idempotence-one-in"),
        "recover twice on one image in N (0: never)")(
        "backing-check-one-in",
        integer(&backing_check_one_in, 0u, 1000000000u, "backing-check-one-in"),
        "writeback to clean and compare the backing device on one image in N")(
        "crc-flip-one-in", integer(&crc_flip_one_in, 0u, 1000000000u, "crc-flip-one-in"),
        "with data_crc: flip cached data on one image in N")(
        "after-recovery-one-in",
        integer(&after_recovery_one_in, 0u, 1000000000u, "after-recovery-one-in"),
        "go on writing, writing back and collecting on one recovered image in N")(
        "after-recovery-ops", integer(&after_recovery_ops, 0u, 1000000u, "after-recovery-ops"),
        "operations after such a recovery")(
        "recovery-states-max",
        integer(&recovery_states_max, U64{1}, U64{1000000}, "recovery-states-max"),
        "images per recovery crash point")("no-reach-check",
                                           "do not fail when a kind of event was never reached")(
        "no-focus", "do not explore every point of the operations that switch log segments")(
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
    if (data_crc != "on" && data_crc != "off" && data_crc != "mixed")
        return usage_error("sim", "--data-crc: expected on, off or mixed");
    if (cases == 0) return usage_error("sim", "--cases: expected at least 1");
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
    base.pmem_samples = pmem_samples;
    base.block_samples = block_samples;
    base.idempotence_one_in = idempotence_one_in;
    base.backing_check_one_in = backing_check_one_in;
    base.crc_flip_one_in = crc_flip_one_in;
    base.after_recovery_one_in = after_recovery_one_in;
    base.after_recovery_ops = after_recovery_ops;
    base.recovery_states_max = recovery_states_max;
    base.focus = vm.count("no-focus") == 0;
    base.tear_block_writes = vm.count("tear-block-writes") > 0;
    base.recovery_crashes = vm.count("recovery-crashes") > 0;
    base.explore_one_in = explore_one_in;
    base.crash_point = crash_at;
    base.state = state;
    base.recovery_point = recovery_at;
    base.recovery_state = recovery_state;
    base.tool = "pcache";
    const bool replay = crash_at != sim::CampaignConfig::kAll;
    const bool reach_check = !replay && vm.count("no-reach-check") == 0;
    if (replay) base.failures_max = 1;

    const bool tty = ::isatty(STDERR_FILENO) == 1;
    const auto start = Clock::now();
    auto elapsed_s = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
    std::uint64_t runs = 0, points = 0, explored = 0, states = 0, recovery_crashes = 0, hash = 0;
    std::uint64_t crc_runs = 0;
    sim::CampaignReach reach;
    std::vector<std::string> failures;
    const std::uint64_t seeds_max = seconds == 0 ? cases : UINT64_MAX;
    for (std::uint64_t n = 0; n < seeds_max; ++n) {
        sim::CampaignConfig c = base;
        c.seed = seed + n;
        c.data_crc = data_crc == "on" || (data_crc == "mixed" && c.seed % 2 == 1);
        crc_runs += c.data_crc ? 1 : 0;
        const sim::CampaignResult r = sim::Campaign(c).run();
        reach.add(r.reach);
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
        if ((seconds != 0 && t >= double(seconds)) ||
            (!failures.empty() && *mode != sim::PmemMode::any))
            break;
    }
    if (tty) std::fputs("\n", stderr);
    const double t = elapsed_s();
    std::printf(
        "pcache sim: mode %s, %llu seed(s) from %llu (%llu with data_crc), %llu ops each, segment "
        "%llu KiB x %u, backing %llu KiB, %u lanes\n",
        mode_name.c_str(), static_cast<unsigned long long>(runs),
        static_cast<unsigned long long>(seed), static_cast<unsigned long long>(crc_runs),
        static_cast<unsigned long long>(ops), static_cast<unsigned long long>(segment_kib), segs,
        static_cast<unsigned long long>(backing_kib), n_ksets);
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
    std::printf("  reached:");
    reach.for_each([](const char* name, std::uint64_t v, bool) {
        std::printf(" %s=%llu", name, static_cast<unsigned long long>(v));
    });
    std::printf("\n");
    const std::string missing = reach.missing();
    if (reach_check && !missing.empty())
        std::printf(
            "  NOT REACHED: %s (the campaign proves nothing about these paths: more --ops, "
            "more --cases, a larger --backing-kib or --n-ksets 2)\n",
            missing.c_str());
    if (failures.empty()) {
        if (reach_check && !missing.empty()) return kExitProblems;
        std::printf("  no failures\n");
        // What was proven, in plain words, and what to try next.
        std::printf(
            "  In words: power was cut at %llu of the %llu persistence points of %llu generated "
            "workload(s); each of the %llu crash images (pending cache lines and unflushed disk "
            "writes kept or dropped) was recovered, and no recovery lost a write acknowledged by "
            "FLUSH or FUA or returned bytes that no write produced (one image in %u was also "
            "written back to clean and the backing device compared).\n"
            "  Next: more seeds (--seconds 600, --cases N), --recovery-crashes (power cuts during "
            "recovery), --tear-block-writes, --mode any (weaker hardware, findings only), or "
            "--segment-kib 16384 --segs 32 (kernel geometry).\n",
            static_cast<unsigned long long>(explored), static_cast<unsigned long long>(points),
            static_cast<unsigned long long>(runs), static_cast<unsigned long long>(states),
            backing_check_one_in);
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
