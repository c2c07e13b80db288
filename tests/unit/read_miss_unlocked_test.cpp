// A read miss reads the backing device without holding its subtree's lock (docs/design.md
// "Reads"): a write to the same 4 MiB subtree does not wait for a slow backing read, and the
// bytes of a read that a write overtook are neither returned as they are nor filled: the gap is
// read again under the lock, so the miss's fill never puts older backing bytes over the write.
//
// GatedBlock (tests/support) holds a read inside the backing device, after its bytes are
// copied out (the reader already has the old bytes), until the test opens the gate. The first
// two tests fail on the old read path, which held the subtree lock across the backing read: the
// write waits for the gate and the wait below gives up (the gate is then opened, so the test
// ends either way).
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "cache_fixture.hpp"
#include "gated_block.hpp"

namespace pcache {
namespace {

using testutil::pattern;

using testutil::GatedBlock;
using GatedCache = Cache<MemPmem, GatedBlock>;
constexpr std::uint64_t kKey = 4096;
// How long the test waits for a write that must not wait for the held read. Generous: the write
// takes microseconds when it does not wait, and the old code never finishes it while the gate
// is closed.
constexpr auto kNoWait = std::chrono::seconds(20);

struct Rig {
    MemPmem pmem{testutil::small_pmem_bytes(32)};
    GatedBlock disk{8u << 20, GatedBlock::Gate::reads, false};
    std::unique_ptr<GatedCache> cache;
    Rig() {
        CacheOptions o = testutil::small_options();
        o.fill_on_read_miss = true;
        cache = testutil::format_or_fail(pmem, disk, o);
    }
};

// Runs `write` on another thread while a read miss of [0, 4 KiB) is held inside the backing
// device; returns whether the write finished while the read was still held. Then lets the
// read go and returns its bytes in `read_bytes`.
template <class Write>
bool write_during_held_miss(Rig& r, Write write, std::vector<std::byte>& read_bytes) {
    read_bytes.assign(kKey, std::byte{0});
    r.disk.shut();
    std::thread reader([&] { EXPECT_TRUE(r.cache->read(0, read_bytes).ok()); });
    EXPECT_TRUE(r.disk.wait_held());
    auto w = std::async(std::launch::async, write);
    const bool done_while_held = w.wait_for(kNoWait) == std::future_status::ready;
    r.disk.open();
    reader.join();
    w.get();
    return done_while_held;
}

TEST(ReadMissUnlocked, AWriteToTheSubtreeDoesNotWaitForABackingRead) {
    Rig r;
    const auto old = pattern(kKey, 1), fresh = pattern(kKey, 2);
    ASSERT_TRUE(r.disk.write(0, old, false).ok());
    std::vector<std::byte> got;
    const bool done = write_during_held_miss(
        r, [&] { EXPECT_TRUE(r.cache->write(kKey, fresh).status.ok()); }, got);
    EXPECT_TRUE(done) << "a write to [4 KiB, 8 KiB) waited for a read miss of [0, 4 KiB) in the "
                         "same subtree";
    EXPECT_EQ(got, old);
    EXPECT_EQ(testutil::read_or_fail(*r.cache, kKey, kKey), fresh);
    EXPECT_EQ(testutil::read_or_fail(*r.cache, 0, kKey), old);
}

TEST(ReadMissUnlocked, AFillNeverCoversAWriteMadeDuringItsBackingRead) {
    Rig r;
    const auto old = pattern(kKey, 3), fresh = pattern(kKey, 4);
    ASSERT_TRUE(r.disk.write(0, old, false).ok());
    std::vector<std::byte> got;
    const bool done = write_during_held_miss(
        r, [&] { EXPECT_TRUE(r.cache->write(0, fresh).status.ok()); }, got);
    ASSERT_TRUE(done) << "the write waited for the read miss of the same range";
    // The read and the write overlapped: either version is a correct answer (this engine reads
    // the gap again under the lock and finds the write's key).
    EXPECT_TRUE(got == old || got == fresh) << "the read returned neither version";
    EXPECT_EQ(r.cache->counters().read_miss_rereads, 1u)
        << "the raced backing read was not done again under the lock";
    // The miss read the older bytes; its fill must not put them over the newer write.
    EXPECT_EQ(testutil::read_or_fail(*r.cache, 0, kKey), fresh)
        << "ORACLE VIOLATION: the read miss's fill replaced a write made during its backing read";
    ASSERT_TRUE(r.cache->flush().ok());
    EXPECT_EQ(testutil::read_or_fail(*r.cache, 0, kKey), fresh)
        << "ORACLE VIOLATION: after FLUSH the range reads as the older fill";
}

TEST(ReadMissUnlocked, AFillStillHappensWhenNothingWasWritten) {
    Rig r;
    const auto old = pattern(kKey, 5);
    ASSERT_TRUE(r.disk.write(0, old, false).ok());
    EXPECT_EQ(testutil::read_or_fail(*r.cache, 0, kKey), old);
    const auto c0 = r.cache->counters();
    EXPECT_EQ(testutil::read_or_fail(*r.cache, 0, kKey), old);
    const auto c1 = r.cache->counters();
    EXPECT_EQ(c1.read_hits - c0.read_hits, 1u) << "the miss was not filled";
    EXPECT_EQ(c1.backing_read_bytes, c0.backing_read_bytes);
}

}  // namespace
}  // namespace pcache
