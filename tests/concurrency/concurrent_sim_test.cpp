// The engine under simulated threads (sim/include/pcache/sim/concurrent.hpp): writers, readers,
// writeback, GC and the kset flusher interleaved by the seeded scheduler at every lock and
// device call; reads checked against the interval oracle, invariants at quiescent points,
// the backing device compared after writeback.
//
// Reproduce a failure with the printed line: PCACHE_CSIM=<every parameter> <binary>
// --gtest_filter='ConcurrentSim.Campaign' runs exactly that configuration.
// PCACHE_CSIM_SEEDS=N widens the campaign (default below, sized for CI).
#include <gtest/gtest.h>

#include <cstdlib>

#include "cache_fixture.hpp"
#include "pcache/sim/concurrent.hpp"

namespace pcache::sim {
namespace {

constexpr std::uint64_t kCampaignSeeds = 48;

std::string describe(const ConcurrentResult& r) {
    return "writes " + std::to_string(r.writes) + ", reads " + std::to_string(r.reads) +
           ", sectors checked " + std::to_string(r.sectors_checked) + ", scheduling points " +
           std::to_string(r.sync_points) + ", switches " + std::to_string(r.switches) +
           ", busy retries " + std::to_string(r.busy_retries) + ", persistence points " +
           std::to_string(r.persist_points) + ", crash images " +
           std::to_string(r.crash_states_checked) + ", gc runs " +
           std::to_string(r.counters.gc_runs) + ", writeback ksets " +
           std::to_string(r.counters.writeback_ksets);
}

// Runs one shape at seeds 1 .. seeds; every run must pass (the first failing seed ends the test
// with its reproduce line), and `each` checks what a passing run reached.
template <class Each>
void run_seeds(ConcurrentConfig shape, std::uint64_t seeds, Each each) {
    for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
        shape.seed = seed;
        const ConcurrentResult r = run_concurrent(shape);
        ASSERT_TRUE(r.ok()) << r.failure << "\n  (" << describe(r) << ")";
        each(r);
    }
}

TEST(ConcurrentSim, SameSeedSameInterleavingAndTraceHash) {
    ConcurrentConfig c = derive_config({}, 11);
    c.ops = 30;
    const ConcurrentResult a = run_concurrent(c), b = run_concurrent(c);
    EXPECT_EQ(a.failure, b.failure);  // a failing seed fails the same way every time
    EXPECT_EQ(a.trace_hash, b.trace_hash);
    EXPECT_EQ(a.sync_points, b.sync_points);
    EXPECT_EQ(a.switches, b.switches);
    EXPECT_GT(a.switches, 100u);
    ConcurrentConfig other = c;
    other.seed = 12;  // same shape, another interleaving
    EXPECT_NE(run_concurrent(other).trace_hash, a.trace_hash);
}

TEST(ConcurrentSim, ReproduceLineCarriesEveryParameter) {
    ConcurrentConfig c = derive_config({}, 5);
    c.writers = 3;
    c.busy_retries_max = 7;
    ConcurrentConfig back;
    ASSERT_TRUE(back.parse(c.to_string()).ok());
    EXPECT_EQ(back.to_string(), c.to_string());
    EXPECT_NE(c.reproduce().find("PCACHE_CSIM=" + c.to_string()), std::string::npos);
    EXPECT_FALSE(back.parse("seed=1,bogus=2").ok());
    EXPECT_FALSE(back.parse("seed=x").ok());
}

// Seeds 1..N (or the one configuration in PCACHE_CSIM), each with its derived shape.
TEST(ConcurrentSim, Campaign) {
    std::vector<ConcurrentConfig> runs;
    if (const char* one = std::getenv("PCACHE_CSIM")) {
        ConcurrentConfig c;
        const Status s = c.parse(one);
        ASSERT_TRUE(s.ok()) << s.to_string();
        runs.push_back(c);
    } else {
        const std::uint64_t seeds = env_u64("PCACHE_CSIM_SEEDS").value_or(kCampaignSeeds);
        for (std::uint64_t seed = 1; seed <= seeds; ++seed) runs.push_back(derive_config({}, seed));
    }
    std::uint64_t reads = 0, gc_runs = 0, read_retries = 0, crash_images = 0, points = 0;
    std::uint64_t failures = 0, cross_lane_closes = 0, lane_crash_images = 0;
    for (const ConcurrentConfig& c : runs) {
        const ConcurrentResult r = run_concurrent(c);
        cross_lane_closes += r.counters.cross_lane_closes;
        if (c.n_lanes >= 2) lane_crash_images += r.crash_states_checked;
        reads += r.reads;
        gc_runs += r.counters.gc_runs;
        read_retries += r.counters.read_retries;
        crash_images += r.crash_states_checked;
        points += r.sync_points;
        if (!r.ok()) {
            ++failures;
            ADD_FAILURE() << r.failure << "\n  (" << describe(r) << ")";
            if (failures >= 4) break;
        } else if (runs.size() == 1) {
            std::printf("%s\n  %s\n", c.to_string().c_str(), describe(r).c_str());
        }
    }
    std::printf(
        "campaign: %zu runs, %llu reads, %llu re-walks, %llu gc runs, %llu scheduling "
        "points, %llu crash images (%llu with two lanes), %llu cross-lane closes\n",
        runs.size(), static_cast<unsigned long long>(reads),
        static_cast<unsigned long long>(read_retries), static_cast<unsigned long long>(gc_runs),
        static_cast<unsigned long long>(points), static_cast<unsigned long long>(crash_images),
        static_cast<unsigned long long>(lane_crash_images),
        static_cast<unsigned long long>(cross_lane_closes));
    EXPECT_GT(reads, 0u);
    if (runs.size() > 1 && failures == 0) {  // what a campaign must reach
        EXPECT_GT(gc_runs, 0u) << "GC must reclaim under the readers";
        EXPECT_GT(read_retries, 0u) << "reads must meet keys reclaimed under them";
        EXPECT_GT(crash_images, 0u) << "some runs must be cut by a crash";
        EXPECT_GT(cross_lane_closes, 0u) << "tasks on two lanes must overwrite each other's "
                                            "buffered keys (docs/design.md \"Lanes\")";
        EXPECT_GT(lane_crash_images, 0u) << "some runs with two lanes must be cut by a crash";
    }
}

// Long runs on a small cache: three writers and a reader keep every segment busy for
// thousands of writes, so buffered keys pin segments while the key log needs one (the FLUSH
// wedge of issue 14 shows here as a write busy for busy_retries_max tries).
TEST(ConcurrentSim, LongRunsOnASmallCache) {
    ConcurrentConfig c;
    c.writers = 3;
    c.readers = 1;
    c.ops = 400;
    c.rounds = 3;
    c.segs = 6;
    c.n_lanes = 2;
    c.gc_percent = 70;
    run_seeds(c, 3, [](const ConcurrentResult& r) {
        EXPECT_GT(r.counters.gc_runs, 100u) << describe(r);
    });
}

// A read copies a key's bytes while GC reclaims its segment and a writer reuses it: the read
// lock taken at the generation bump is what keeps the copy correct (mutant M31 shows here as
// "cache bytes reused under the read"). The campaign's derived shapes reach this state too
// rarely since GC removes retired keys and the lanes merge changed the schedules (seeds 390 and
// 396 stopped reaching it), so this test uses the shape that reaches it most: a cache of 6
// segments, GC at 0 %, three writers against three readers on one lane. Searched against the
// M31 build: seeds 46, 50, 86 and 148 of 1..160 catch it; all 160 run here so a change of the
// schedules keeps several seeds that do.
TEST(ConcurrentSim, ReadCopyRacesSegmentReuse) {
    ConcurrentConfig c;
    c.writers = 3;
    c.readers = 3;
    c.segs = 6;
    c.gc_percent = 0;
    c.stay_percent = 50;
    c.ops = 80;
    c.n_lanes = 1;
    c.gtest_filter = "ConcurrentSim.Campaign";  // the reproduce line runs this one shape
    std::uint64_t reads = 0;
    run_seeds(c, 160, [&](const ConcurrentResult& r) { reads += r.reads; });
    EXPECT_GT(reads, 0u);
}

// A write racing with close() (issue 17 "contention": needs_close_ is set after the append, and
// only when it is clear). close() clears the flag, then closes every buffer; a write whose key
// entered a buffer after that must leave the flag set, so that destroying the cache closes
// again and the acknowledged write is in the log. The old write path set the flag at the start
// of write(): a close running between that store and the append cleared it, the destructor
// skipped its close, and after a reopen the write was gone (most seeds below reach that order).
TEST(ConcurrentSim, WriteRacingCloseIsClosedOnDestroy) {
    using SimCache = Cache<CoopPmem, CoopBlock>;
    constexpr std::uint64_t kSeg = 256 << 10, kBacking = 16 << 20;
    std::vector<std::byte> data(4096);
    for (std::uint64_t seed = 1; seed <= 64; ++seed) {
        CoopMachine m(format::kSegmentsOffsetBytes + 16 * kSeg, kBacking, PmemMode::x86);
        CacheOptions o;
        o.geometry.segment_bytes = kSeg;
        o.n_lanes = 1;  // close_on_destroy: the default (on)
        auto c = testutil::format_or_fail(m.pmem, m.block, o);
        for (std::size_t i = 0; i < data.size(); ++i)
            data[i] = static_cast<std::byte>(seed * 31 + i / 512);
        Status ws, cs;
        {
            CoopScheduler sched({.seed = seed, .stay_percent = 30}, m.ctx);
            sched.spawn("writer", [&] { ws = c->write(8192, data).status; });
            sched.spawn("closer", [&] { cs = c->close(); });
            const auto outcome = sched.run();
            ASSERT_TRUE(outcome.ok()) << outcome.failure;
        }
        ASSERT_TRUE(ws.ok() && cs.ok()) << ws.to_string() << " / " << cs.to_string();
        c.reset();  // closes again if anything was written since the last close
        auto r = SimCache::open(borrow(m.pmem), borrow(m.block), o);
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        std::vector<std::byte> back(data.size());
        ASSERT_TRUE(r.value()->read(8192, back).ok());
        ASSERT_TRUE(back == data)
            << "seed " << seed << ": an acknowledged write racing with close() is not in the log "
            << "after the destructor (reproduce: --gtest_filter="
            << "ConcurrentSim.WriteRacingCloseIsClosedOnDestroy)";
    }
}

}  // namespace
}  // namespace pcache::sim
