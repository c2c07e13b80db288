// Lanes (docs/design.md "Lanes"): per-lane data heads and kset buffers, and the cross-lane rule
// that keeps log order = write order for every byte range.
//
// The bug the rule prevents: lane 1 buffers a write of range R (its kset stays open), lane 0
// overwrites R and closes its kset first (FUA); a later FLUSH closes lane 1. The log then holds
// the newer data BEFORE the older, and replay (and writeback, which walks the log in order)
// resurrects the older data. Mutant M32 disables the rule; these tests then fail with an
// oracle verdict (scripts/mutants.table).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cache_fixture.hpp"

namespace pcache {
namespace {

using testutil::pattern;

// MemPmem with the lane seam (pcache/sync.hpp): the test decides the "calling CPU".
class LanePmem : public MemPmem {
public:
    using MemPmem::MemPmem;
    std::uint32_t current_cpu() const { return cpu; }
    std::uint32_t cpu_count() const { return 2; }
    std::uint32_t cpu = 0;
};
static_assert(PmemDevice<LanePmem>);
using LaneCache = Cache<LanePmem, MemBlockDevice>;

constexpr std::uint64_t kOff = 3 << 20;
constexpr std::size_t kLen = 8192;

struct Rig {
    LanePmem pmem{testutil::small_pmem_bytes(16)};
    MemBlockDevice disk{16 << 20};
    std::unique_ptr<LaneCache> cache;

    void open(std::uint32_t n_lanes = 0) {
        cache.reset();  // a "crash": no close, nothing but what is on pmem survives
        CacheOptions o = testutil::small_options();
        o.n_lanes = n_lanes;
        auto r = LaneCache::open(borrow(pmem), borrow(disk), o);
        if (r.code() == Errc::not_found) r = LaneCache::format(borrow(pmem), borrow(disk), o);
        ASSERT_TRUE(r.ok()) << r.status().to_string();
        cache = std::move(r.value());
    }
    std::vector<std::byte> read(std::uint64_t off, std::size_t len) {
        std::vector<std::byte> out(len);
        EXPECT_TRUE(cache->read(off, out).ok());
        return out;
    }
};

// The later lane's kset closes first (FUA), then FLUSH closes the earlier lane's; crash and
// reopen: the newest data must win.
TEST(CrossLane, NewestWinsAfterReplayWhenTheLaterLaneClosesFirst) {
    Rig rig;
    rig.open(2);
    ASSERT_EQ(rig.cache->n_lanes(), 2u);
    const auto older = pattern(kLen, 1), newer = pattern(kLen, 2);
    ASSERT_TRUE(rig.cache->write(kOff, older, {.fua = false, .lane = 1}).ok());  // lane 1, buffered
    ASSERT_TRUE(rig.cache->write(kOff, newer, {.fua = true, .lane = 0}).ok());   // lane 0, FUA
    EXPECT_EQ(rig.cache->counters().cross_lane_closes, 1u);
    ASSERT_TRUE(rig.cache->flush().ok());
    EXPECT_EQ(rig.read(kOff, kLen), newer) << "before the crash";
    rig.open(2);
    EXPECT_TRUE(rig.read(kOff, kLen) == newer)
        << "ORACLE VIOLATION: after replay the range holds the older write (lane 1's kset was "
           "logged after lane 0's newer one)";
    EXPECT_TRUE(rig.cache->check_invariants().ok());
}

// The same order problem through writeback: the backing device must end with the newest data.
TEST(CrossLane, WritebackLeavesTheNewestDataOnTheBackingDevice) {
    Rig rig;
    rig.open(2);
    const auto older = pattern(kLen, 3), newer = pattern(kLen, 4);
    ASSERT_TRUE(rig.cache->write(kOff, older, {.fua = false, .lane = 1}).ok());
    ASSERT_TRUE(
        rig.cache->write(kOff + 4096, newer, {.fua = true, .lane = 0}).ok());  // overlaps half
    ASSERT_TRUE(rig.cache->close().ok());
    while (rig.cache->writeback_step().progressed) {
    }
    ASSERT_TRUE(rig.cache->is_clean());
    std::vector<std::byte> disk(kLen + 4096);
    ASSERT_TRUE(rig.disk.read(kOff, disk).ok());
    std::vector<std::byte> want(older.begin(), older.begin() + 4096);
    want.insert(want.end(), newer.begin(), newer.end());
    EXPECT_TRUE(disk == want)
        << "ORACLE VIOLATION: writeback left older data over newer on the backing device";
}

// Read-miss fills (CLEAN keys of the backing data) follow the rule too: a fill buffered on
// lane 1 and a newer write on lane 0 must not replay as the fill.
TEST(CrossLane, ReadMissFillOnAnotherLaneDoesNotReplayOverANewerWrite) {
    Rig rig;
    rig.open();  // n_lanes 0: one per (simulated) CPU
    ASSERT_EQ(rig.cache->n_lanes(), 2u);
    const auto on_disk = pattern(kLen, 5), newer = pattern(kLen, 6);
    ASSERT_TRUE(rig.disk.write(kOff, on_disk, false).ok());
    rig.pmem.cpu = 1;
    EXPECT_EQ(rig.read(kOff, kLen), on_disk);  // miss: filled as a CLEAN key on lane 1
    rig.pmem.cpu = 0;
    ASSERT_TRUE(rig.cache->write(kOff, newer, {.fua = true}).ok());  // calling CPU 0: lane 0, FUA
    EXPECT_EQ(rig.cache->counters().cross_lane_closes, 1u);
    ASSERT_TRUE(rig.cache->flush().ok());
    rig.open();
    EXPECT_TRUE(rig.read(kOff, kLen) == newer)
        << "ORACLE VIOLATION: after replay a read-miss fill hides the newer write";
}

// The subtree's lane marks (close_other_lanes' filter) hold four lanes. A fifth lane writing
// into the subtree takes slot 0 and closes that slot's lane first: once its mark is gone,
// nothing else would find the lane's buffered keys. Here lanes 1-4 fill the marks, lane 5 takes
// lane 1's, lanes 2-5 close by FUA writes elsewhere, and lane 0 then overwrites every range
// with no other lane marked open (no walk). With mutant M33 lane 1 stays open, unmarked, and
// its older write is logged after lane 0's newer one.
TEST(CrossLane, AFifthLaneInASubtreeClosesTheLaneWhoseMarkItTakes) {
    Rig rig;
    rig.open(6);
    ASSERT_EQ(rig.cache->n_lanes(), 6u);
    auto& c = *rig.cache;
    auto at = [](std::uint32_t i) { return kOff + i * kLen; };  // one 4 MiB subtree
    for (std::uint32_t l = 1; l <= 5; ++l)
        ASSERT_TRUE(c.write(at(l), pattern(kLen, 20 + l), {.fua = false, .lane = l}).ok());
    EXPECT_EQ(c.counters().cross_lane_closes, 1u) << "lane 5 takes lane 1's mark: lane 1 closed";
    for (std::uint32_t l = 2; l <= 5; ++l)  // another subtree: each lane's buffer closes
        ASSERT_TRUE(
            c.write(8 * kLen + (8u << 20), pattern(kLen, 30), {.fua = true, .lane = l}).ok());
    for (std::uint32_t l = 1; l <= 5; ++l)
        ASSERT_TRUE(c.write(at(l), pattern(kLen, 40 + l), {.fua = true, .lane = 0}).ok());
    ASSERT_TRUE(c.flush().ok());
    rig.open(6);
    for (std::uint32_t l = 1; l <= 5; ++l)
        EXPECT_TRUE(rig.read(at(l), kLen) == pattern(kLen, 40 + l))
            << "ORACLE VIOLATION: after replay [" << at(l) << ", +" << kLen << ") holds lane " << l
            << "'s older write";
    EXPECT_TRUE(rig.cache->check_invariants().ok());
}

// The rule closes only what it must: not the writer's own lane, not a lane whose keys for the
// range are already in the log, not a lane with no overlapping key.
TEST(CrossLane, NoEarlyCloseWhenNotNeeded) {
    Rig rig;
    rig.open(2);
    auto& c = *rig.cache;
    ASSERT_TRUE(c.write(kOff, pattern(kLen, 7), {.fua = false, .lane = 1}).ok());
    ASSERT_TRUE(c.write(kOff, pattern(kLen, 8), {.fua = false, .lane = 1}).ok());  // same lane
    ASSERT_TRUE(
        c.write(kOff + kLen, pattern(kLen, 9), {.fua = false, .lane = 0}).ok());  // no overlap
    EXPECT_EQ(c.counters().cross_lane_closes, 0u);
    ASSERT_TRUE(c.flush().ok());
    const std::uint64_t ksets = c.counters().ksets_written;
    ASSERT_TRUE(c.write(kOff, pattern(kLen, 10), {.fua = false, .lane = 0}).ok());  // lane 1 closed
    EXPECT_EQ(c.counters().cross_lane_closes, 0u);
    EXPECT_EQ(c.counters().ksets_written, ksets);
    ASSERT_TRUE(c.write(kOff, pattern(kLen, 11), {.fua = false, .lane = 1}).ok());  // lane 0 open
    EXPECT_EQ(c.counters().cross_lane_closes, 1u);
    EXPECT_EQ(rig.read(kOff, kLen), pattern(kLen, 11));
    EXPECT_TRUE(c.check_invariants().ok());
}

// Lanes are independent data heads: writes on two lanes fill two different segments.
TEST(Lanes, EachLaneHasItsOwnDataHead) {
    Rig rig;
    rig.open(2);
    const std::uint32_t before = rig.cache->segs_used();
    ASSERT_TRUE(rig.cache->write(0, pattern(4096, 1), {.fua = false, .lane = 0}).ok());
    EXPECT_EQ(rig.cache->segs_used(), before + 1);
    ASSERT_TRUE(rig.cache->write(8 << 20, pattern(4096, 2), {.fua = false, .lane = 1}).ok());
    EXPECT_EQ(rig.cache->segs_used(), before + 2);
    ASSERT_TRUE(
        rig.cache->write(4096, pattern(4096, 3), {.fua = false, .lane = 2}).ok());  // 2 % 2 = 0
    EXPECT_EQ(rig.cache->segs_used(), before + 2);
    EXPECT_TRUE(rig.cache->check_invariants().ok());
}

// Real threads on two lanes overwrite each other's bytes (explicit lanes and the calling CPU's):
// after FLUSH, replay must rebuild exactly what the live cache returned, and writeback must
// leave exactly that on the backing device. (With M32 the log order of overlapping keys on two
// lanes follows the closes, not the writes.) Also a ThreadSanitizer target.
TEST(Lanes, ThreadsOnTwoLanesReplayAndWriteBackTheLiveState) {
    MemPmem pmem(testutil::small_pmem_bytes(16));
    MemBlockDevice disk(16 << 20);
    CacheOptions o = testutil::small_options();
    o.n_lanes = 2;
    auto c = testutil::format_or_fail(pmem, disk, o);
    constexpr std::uint64_t kRegion = 64 << 10;
    std::vector<std::thread> threads;
    std::atomic<int> errors{0};
    for (std::uint32_t t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            std::uint64_t x = 0x9E3779B97F4A7C15ull * (t + 1);
            for (std::uint32_t i = 0; i < 400; ++i) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                const std::uint64_t off = (x % (kRegion / 512)) * 512;
                const std::size_t len =
                    std::min<std::uint64_t>(512 * (1 + (x >> 40) % 4), kRegion - off);
                const std::uint32_t lane = t == 3 ? kAutoLane : t;  // t 2: lane 2 % 2 = 0
                if (!c->write(off, pattern(len, t * 1000 + i),
                              {.fua = (x >> 20) % 8 == 0, .lane = lane})
                         .ok())
                    ++errors;
                if ((x >> 30) % 64 == 0 && !c->flush().ok()) ++errors;
            }
        });
    for (auto& th : threads) th.join();
    ASSERT_EQ(errors.load(), 0);
    ASSERT_TRUE(c->flush().ok());
    ASSERT_TRUE(c->check_invariants().ok());
    std::vector<std::byte> live(kRegion), replayed(kRegion), backing(kRegion);
    ASSERT_TRUE(c->read(0, live).ok());
    c.reset();  // a crash after the FLUSH
    c = std::move(testutil::MemCache::open(borrow(pmem), borrow(disk), o).value());
    ASSERT_TRUE(c->read(0, replayed).ok());
    EXPECT_TRUE(replayed == live)
        << "ORACLE VIOLATION: replay after FLUSH differs from what the live cache returned";
    ASSERT_TRUE(c->close().ok());
    for (int i = 0; i < 1000 && !c->is_clean(); ++i) ASSERT_TRUE(c->writeback_step().status.ok());
    ASSERT_TRUE(c->is_clean());
    ASSERT_TRUE(disk.read(0, backing).ok());
    EXPECT_TRUE(backing == live)
        << "ORACLE VIOLATION: writeback left other data than the live cache returned";
}

// MemPmem whose "calling CPU" is per thread: each test thread reads on its own lane.
class ThreadCpuPmem : public MemPmem {
public:
    using MemPmem::MemPmem;
    static inline thread_local std::uint32_t cpu = 0;
    std::uint32_t current_cpu() const { return cpu; }
    std::uint32_t cpu_count() const { return 4; }
};
static_assert(PmemDevice<ThreadCpuPmem>);

// Counters and dirty bytes are sharded per lane (issue 17 "contention"): counters() and
// dirty_bytes() must add up every lane's shard. Four threads on four lanes write and read
// disjoint blocks; every sum is checked exactly (a shard left out of a sum fails it).
TEST(Lanes, CountersAndDirtyBytesAddUpEveryLane) {
    ThreadCpuPmem pmem(testutil::small_pmem_bytes(64));
    MemBlockDevice disk(64 << 20);
    CacheOptions o = testutil::small_options();  // n_lanes 0: one per "CPU", 4
    auto c = testutil::format_or_fail(pmem, disk, o);
    ASSERT_EQ(c->n_lanes(), 4u);
    constexpr std::uint32_t kThreads = 4, kWrites = 200, kBlock = 4096;
    std::vector<std::thread> threads;
    std::atomic<int> errors{0};
    for (std::uint32_t t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            ThreadCpuPmem::cpu = t;
            const std::uint64_t base = std::uint64_t(t) << 22;  // own subtree, no overlaps
            for (std::uint32_t i = 0; i < kWrites; ++i)
                if (!c->write(base + i * kBlock, pattern(kBlock, t * 1000 + i)).ok()) ++errors;
            std::vector<std::byte> out(kBlock);
            for (std::uint32_t i = 0; i < kWrites; ++i)
                if (!c->read(base + i * kBlock, out).ok() || out != pattern(kBlock, t * 1000 + i))
                    ++errors;
        });
    for (auto& th : threads) th.join();
    ASSERT_EQ(errors.load(), 0);
    const std::uint64_t bytes = std::uint64_t(kThreads) * kWrites * kBlock;
    // 200 keys a lane: one full kset of 128 written, 72 keys still in each open buffer.
    CacheCounters k = c->counters();
    EXPECT_EQ(k.pmem_written_bytes, bytes);
    EXPECT_EQ(k.ksets_written, kThreads);
    EXPECT_EQ(k.read_hits, kThreads * kWrites);
    EXPECT_EQ(k.read_misses, 0u);
    EXPECT_EQ(k.pmem_read_bytes, bytes);
    EXPECT_EQ(k.cross_lane_closes, 0u);
    EXPECT_EQ(c->dirty_bytes(), bytes) << "keys in the log and in every lane's open buffer";
    ASSERT_TRUE(c->flush().ok());
    k = c->counters();
    EXPECT_EQ(k.ksets_written, 2 * kThreads);
    EXPECT_EQ(c->dirty_bytes(), bytes);
    for (int i = 0; i < 1000 && c->writeback_step().progressed; ++i) {
    }
    EXPECT_EQ(c->dirty_bytes(), 0u);
    EXPECT_TRUE(c->is_clean());
    EXPECT_EQ(c->counters().backing_written_bytes, bytes);
}

TEST(Lanes, OptionsAreChecked) {
    LanePmem pmem(testutil::small_pmem_bytes(8));
    MemBlockDevice disk(16 << 20);
    CacheOptions o = testutil::small_options();
    o.n_lanes = 1025;
    EXPECT_EQ(LaneCache::format(borrow(pmem), borrow(disk), o).status().code(),
              Errc::invalid_argument);
    o.n_lanes = 0;
    o.n_ksets = 3;  // the former name still works
    auto c = LaneCache::format(borrow(pmem), borrow(disk), o);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c.value()->n_lanes(), 3u);
}

}  // namespace
}  // namespace pcache
