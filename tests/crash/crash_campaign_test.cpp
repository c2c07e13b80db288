// Crash-consistency suite of the engine: Cache<SimPmem, SimBlockDevice> cut at every
// persistence point, every crash image recovered and checked by the oracle of crash-model.md
// (sim/include/pcache/sim/campaign.hpp does the work; this file chooses what to run).
//
//   CrashProperty.*  RapidCheck: generated workloads, x86 and eadr, small and kernel geometry,
//                    crashes in the workload and (second property) inside recovery.
//   CrashSuite.*     fixed seeds: the suite scripts/mutants.sh runs against every seeded bug.
//   CrashDetect.*    must-detect faults: corrupt ksets are refused, never followed.
//   CrashControl.*   controls that must pass (no false alarm).
//   CrashTriage.*    `any` mode: findings are printed, never failures.
// Reproduce a RapidCheck failure with RC_PARAMS="reproduce=..."; a seeded one with the printed
// `pcache sim ...` command.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "crash_faults.hpp"
#include "pcache/sim/campaign.hpp"

namespace pcache::sim {
namespace {

std::string summary(const CampaignResult& r) {
    std::string s = "ops " + std::to_string(r.ops_run) + ", points " +
                    std::to_string(r.persist_points) + ", explored " +
                    std::to_string(r.crash_points_explored) + ", states " +
                    std::to_string(r.states_checked) + ", recovery crashes " +
                    std::to_string(r.recovery_crashes);
    for (const auto& f : r.failures) s += "\n  " + f;
    return s;
}

// ---- RapidCheck properties ---------------------------------------------------------------------
constexpr std::uint64_t kBackingBytes = 1 << 20;

rc::Gen<WorkloadOp> gen_op() {
    using rc::gen::inRange;
    using K = WorkloadOp::Kind;
    constexpr std::uint64_t sectors = kBackingBytes / 512;
    auto lens = rc::gen::weightedOneOf<std::uint32_t>({{6, inRange<std::uint32_t>(1, 9)},
                                                       {3, inRange<std::uint32_t>(9, 33)},
                                                       {1, inRange<std::uint32_t>(33, 257)}});
    auto starts = rc::gen::weightedOneOf<std::uint64_t>(
        {{2, inRange<std::uint64_t>(0, 128)}, {1, inRange<std::uint64_t>(0, sectors)}});
    auto clamp = [](std::uint64_t s, std::uint32_t n, bool aligned) {
        if (aligned) {
            s &= ~std::uint64_t{7};
            n = (n + 7) & ~7u;
        }
        n = static_cast<std::uint32_t>(std::min<std::uint64_t>(n, sectors - s));
        return std::pair<std::uint64_t, std::uint32_t>{s * 512, n * 512};
    };
    return rc::gen::weightedOneOf<WorkloadOp>({
        {11, rc::gen::apply(
                 [clamp](std::uint64_t s, std::uint32_t n, bool aligned, bool fua) {
                     auto [off, len] = clamp(s, n, aligned);
                     return WorkloadOp{K::write, off, len, fua, 0};
                 },
                 starts, lens, rc::gen::arbitrary<bool>(),
                 rc::gen::weightedElement<bool>({{4, false}, {1, true}}))},
        {3, rc::gen::apply(
                [clamp](std::uint64_t s, std::uint32_t n) {
                    auto [off, len] = clamp(s, n, false);
                    return WorkloadOp{K::read, off, len, false, 0};
                },
                starts, lens)},
        {3, rc::gen::just(WorkloadOp{K::flush})},
        {3, rc::gen::just(WorkloadOp{K::writeback})},
        {2, rc::gen::just(WorkloadOp{K::gc})},
        {1, rc::gen::map(inRange<std::uint32_t>(0, 91),
                         [](std::uint32_t p) {
                             return WorkloadOp{K::gc_percent, 0, 0, false, p};
                         })},
        {1, rc::gen::just(WorkloadOp{K::reopen})},
    });
}

CampaignConfig property_config(PmemMode mode) {
    CampaignConfig c;
    c.mode = mode;
    c.backing_bytes = kBackingBytes;
    c.data_crc = *rc::gen::arbitrary<bool>();
    c.n_ksets = *rc::gen::element<std::uint32_t>(1, 2);
    c.segs = *rc::gen::inRange<std::uint32_t>(4, 10);
    c.segment_bytes = *rc::gen::element<std::uint64_t>(64 << 10, 128 << 10, 256 << 10);
    c.explore_one_in = 3;
    c.states_per_point_max = 6;
    c.pmem_samples = 8;
    c.block_samples = 2;
    c.tool = "build/dev/tools/pcache";
    return c;
}

void property(PmemMode mode, bool recovery_crashes, const char* test) {
    CampaignConfig c = property_config(mode);
    c.replay_cmd = std::string(
                       "RC_PARAMS=\"reproduce=<the string RapidCheck prints below>\" "
                       "build/dev/tests/crash/crash_campaign_test --gtest_filter=CrashProperty.") +
                   test;
    c.recovery_crashes = recovery_crashes;
    if (recovery_crashes) {
        c.explore_one_in = 8;
        c.states_per_point_max = 2;
        c.recovery_points_max = 3;
        c.recovery_states_max = 2;
    }
    const auto ops = *rc::gen::resize(40, rc::gen::container<std::vector<WorkloadOp>>(gen_op()));
    c.ops = ops.size();
    const CampaignResult r = Campaign(c).run(ops);
    RC_LOG() << summary(r) << "\n";
    RC_ASSERT(r.failures.empty());
}

RC_GTEST_PROP(CrashProperty, EveryPointX86, ()) { property(PmemMode::x86, false, "EveryPointX86"); }
RC_GTEST_PROP(CrashProperty, EveryPointEadr, ()) {
    property(PmemMode::eadr, false, "EveryPointEadr");
}
RC_GTEST_PROP(CrashProperty, CrashDuringRecoveryX86, ()) {
    property(PmemMode::x86, true, "CrashDuringRecoveryX86");
}
RC_GTEST_PROP(CrashProperty, CrashDuringRecoveryEadr, ()) {
    property(PmemMode::eadr, true, "CrashDuringRecoveryEadr");
}

// Kernel geometry: 16 MiB segments on a 512 MiB SimPmem (MAP_NORESERVE: only touched pages cost).
TEST(CrashProperty, KernelGeometry) {
    for (std::uint64_t seed : {1, 2}) {
        CampaignConfig c;
        c.seed = seed;
        c.segment_bytes = format::kKernelSegmentBytes;
        c.segs = 32;
        c.backing_bytes = 4 << 20;
        c.ops = 40;
        c.explore_one_in = 3;
        c.states_per_point_max = 4;
        c.recovery_crashes = seed == 2;
        const CampaignResult r = Campaign(c).run();
        EXPECT_TRUE(r.failures.empty()) << summary(r);
        EXPECT_GT(r.states_checked, 50u);
    }
}

// ---- the fixed-seed suite (what scripts/mutants.sh runs; must pass on correct code) -------------
struct SuiteCase {
    const char* name;
    PmemMode mode;
    bool data_crc;
    std::uint32_t n_ksets;
    std::uint64_t segment_bytes;
    std::uint32_t segs;
    bool recovery_crashes;
    std::uint64_t ops = 150;
    std::uint64_t backing_bytes = 1 << 20;
    std::uint32_t explore_one_in = 0;  // 0: 2 (6 with recovery crashes)
    bool focus = false;
    std::uint64_t seeds = 0;  // 0: PCACHE_CRASH_SEEDS (6)
    bool tear = false;        // unflushed backing writes tear at 512-byte sectors
};

// The long cases: `log` crosses key-log segments, chains LAST ksets, wraps the log and every
// 8-bit sequence, fills 32-kset writeback batches (10000 operations, sampled points plus every
// point of the operations that switch segments); `stripes` splits writes across two 4 MiB
// stripes into two kset buffers, data_crc on every second seed.
const SuiteCase kSuite[] = {
    {"x86", PmemMode::x86, false, 1, 64 << 10, 6, false},
    {"x86-crc", PmemMode::x86, true, 1, 64 << 10, 6, false},
    {"x86-ksets2", PmemMode::x86, false, 2, 128 << 10, 5, false},
    {"x86-recovery", PmemMode::x86, false, 1, 64 << 10, 6, true},
    {"eadr", PmemMode::eadr, false, 1, 64 << 10, 6, false},
    {"x86-log", PmemMode::x86, false, 1, 64 << 10, 8, false, 10000, 1 << 20, 2048, true, 2},
    {"x86-stripes", PmemMode::x86, false, 2, 64 << 10, 8, false, 1500, 8 << 20, 16, true, 2, true},
};

std::uint64_t suite_seeds() { return env_u64("PCACHE_CRASH_SEEDS").value_or(6); }

CampaignConfig suite_config(const SuiteCase& sc, std::uint64_t seed) {
    CampaignConfig c;
    c.seed = seed;
    c.mode = sc.mode;
    c.data_crc = sc.data_crc || (sc.seeds != 0 && seed % 2 == 0);
    c.n_ksets = sc.n_ksets;
    c.segment_bytes = sc.segment_bytes;
    c.segs = sc.segs;
    c.ops = sc.ops;
    c.backing_bytes = sc.backing_bytes;
    c.recovery_crashes = sc.recovery_crashes;
    c.explore_one_in = sc.explore_one_in != 0 ? sc.explore_one_in : sc.recovery_crashes ? 6 : 2;
    c.focus = sc.focus;
    c.tear_block_writes = sc.tear;
    c.states_per_point_max = sc.recovery_crashes ? 3 : 8;
    c.crc_flip_one_in = 2;
    c.tool = "build/dev/tools/pcache";
    return c;
}

CampaignReach run_suite(const SuiteCase& sc) {
    std::uint64_t failures = 0;
    CampaignReach reach;
    const std::uint64_t seeds = sc.seeds != 0 ? sc.seeds : suite_seeds();
    for (std::uint64_t seed = 1; seed <= seeds && failures == 0; ++seed) {
        CampaignConfig c = suite_config(sc, seed);
        if (auto v = env_u64("PCACHE_CRASH_SEGS")) c.segs = static_cast<std::uint32_t>(*v);
        if (auto v = env_u64("PCACHE_CRASH_SEED0")) c.seed += *v;
        const CampaignResult r = Campaign(c).run();
        failures += r.failures.size();
        reach.add(r.reach);
        EXPECT_TRUE(r.failures.empty()) << sc.name << " seed " << seed << ": " << summary(r);
    }
    std::printf("%s reached: %s\n", sc.name, reach.to_string().c_str());
    return reach;
}

TEST(CrashSuite, X86) { run_suite(kSuite[0]); }
TEST(CrashSuite, X86DataCrc) { run_suite(kSuite[1]); }
TEST(CrashSuite, X86TwoKsets) {  // two lanes: per-operation simulated CPUs (campaign.hpp)
    const CampaignReach r = run_suite(kSuite[2]);
    EXPECT_GT(r.cross_lane_closes, 0u) << "the cross-lane rule (docs/design.md \"Lanes\")";
}
TEST(CrashSuite, X86CrashDuringRecovery) { run_suite(kSuite[3]); }
TEST(CrashSuite, Eadr) { run_suite(kSuite[4]); }
TEST(CrashSuite, X86LongLog) {
    const CampaignReach r = run_suite(kSuite[5]);
    EXPECT_GT(r.seg_switches, 0u);
    EXPECT_GT(r.log_wraps, 0u);
    EXPECT_GT(r.gc_past_last, 0u);
    EXPECT_GT(r.wb_full_batches, 0u);
    EXPECT_GT(r.tail_seq_wraps, 0u);
    EXPECT_GT(r.gen_seq_wraps, 0u);
    EXPECT_GT(r.after_recovery_writes, 0u);
    EXPECT_GT(r.after_recovery_gc, 0u);
}
TEST(CrashSuite, X86Stripes) {
    const CampaignReach r = run_suite(kSuite[6]);
    EXPECT_GT(r.stripe_splits, 0u);
    EXPECT_GT(r.cross_lane_closes, 0u);
    EXPECT_GT(r.corruption_followups, 0u);
    EXPECT_GT(r.after_recovery_writes, 0u);
}

// Regression found by the long workloads: GC persisted a reclaimed segment's generation before
// key_tail passed the kset; after a crash in between, replay skipped the stale key but kept an
// older read-miss fill of the same range, so a flushed write read back as an older one (first
// seen as `pcache sim --seed 1 --ops 2000 --backing-kib 8192 --n-ksets 2 --crash-at 4252` on the
// generator of that day; fixed in cache_replay.hpp; mutant M22 puts the bug back).
TEST(CrashRegression, StaleKeyDoesNotResurrectOlderFill) {
    // Seed 8 reached the state before lanes (crash point 7419, state 3), seeds 1 and 2 with the
    // workload generator of that day. With lanes a sequential workload cannot reach it any more
    // (crash_stale_punch_test.cpp explains why and builds the state directly; that test is what
    // keeps M22 caught); these seeds stay as a campaign over the same workload shape.
    for (std::uint64_t seed : {1, 2, 8}) {
        CampaignConfig c;
        c.seed = seed;
        c.ops = 2000;
        c.backing_bytes = 8 << 20;
        c.n_ksets = 2;
        c.explore_one_in = 8;
        c.after_recovery_one_in = 0;
        c.tool = "build/dev/tools/pcache";
        const CampaignResult r = Campaign(c).run();
        EXPECT_TRUE(r.failures.empty()) << summary(r);
        EXPECT_GT(r.states_checked, 0u);
    }
}

TEST(CrashSuite, SameSeedSameTraceHash) {
    CampaignConfig c;
    c.seed = 42;
    c.ops = 60;
    c.explore_one_in = 4;
    const CampaignResult a = Campaign(c).run();
    const CampaignResult b = Campaign(c).run();
    EXPECT_EQ(a.trace_hash, b.trace_hash);
    EXPECT_EQ(a.states_checked, b.states_checked);
    EXPECT_TRUE(a.failures.empty()) << summary(a);
}

// ---- must-detect: corrupt but CRC-valid metadata is refused, and replay is bounded
// --------------- Runs `fn` in a child process; a child that does not finish within the bound is a
// hang.
int run_bounded(const std::function<int()>& fn) {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(fn());
    int status = 0;
    for (int tick = 0; tick < 500; ++tick) {  // 5 s
        if (::waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return 101;  // hang
}

TEST(CrashDetect, OutOfBoundsKeyIsRefused) {
    for (auto kind :
         {testutil::KeyCorruption::seg_off_past_data_area,
          testutil::KeyCorruption::off_past_backing, testutil::KeyCorruption::zero_len}) {
        const int rc = run_bounded([kind] { return testutil::open_with_corrupt_key(kind); });
        EXPECT_EQ(rc, 0) << testutil::detect_marker(rc) << "corruption " << int(kind) << ": "
                         << testutil::corruption_verdict(rc);
    }
}

TEST(CrashDetect, KsetChainCycleIsRefused) {
    const int rc = run_bounded([] { return testutil::open_with_chain_cycle(); });
    EXPECT_EQ(rc, 0) << testutil::detect_marker(rc)
                     << "kset chain cycle: " << testutil::corruption_verdict(rc);
}

// ---- controls: correct protocols must pass in the modes they are correct for ------------------
TEST(CrashControl, SameLinePublishX86) {
    EXPECT_EQ(testutil::control_same_line(PmemMode::x86), "");
}
TEST(CrashControl, CommitWordAllModes) {
    for (PmemMode m : {PmemMode::x86, PmemMode::eadr, PmemMode::any})
        EXPECT_EQ(testutil::control_commit_word(m), "") << pmem_mode_name(m);
}
TEST(CrashControl, EadrWithoutFlushes) { EXPECT_EQ(testutil::control_eadr_no_flush(), ""); }

// ---- triage: `any` mode produces states no x86 machine can; findings are reported only
// -----------
TEST(CrashTriage, AnyMode) {
    CampaignConfig c;
    c.mode = PmemMode::any;
    c.ops = 80;
    c.explore_one_in = 3;
    c.failures_max = 3;
    const CampaignResult r = Campaign(c).run();
    std::printf("any-mode triage: %s\n", summary(r).c_str());
    // Findings are not failures here, but the triage must have run: crash images were checked.
    EXPECT_GT(r.crash_points_explored, 0u);
    EXPECT_GT(r.states_checked, r.crash_points_explored);
}

}  // namespace
}  // namespace pcache::sim
