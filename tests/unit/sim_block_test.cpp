// SimBlockDevice: conformance (write/read/range and alignment errors), the volatile cache and
// its crash images (lost subsets, FUA, torn sectors), each injected fault, and rollback.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "pcache/sim/block_explorer.hpp"

namespace {

using namespace pcache;
using namespace pcache::sim;

std::vector<std::byte> fill(std::size_t n, unsigned char v) {
    return std::vector<std::byte>(n, std::byte{v});
}

unsigned char sector_byte(SimBlockDevice& d, std::uint64_t sector) {
    std::vector<std::byte> b(512);
    EXPECT_TRUE(d.read(sector * 512, b).ok());
    return static_cast<unsigned char>(b[0]);
}

TEST(SimBlockDevice, ConformsWriteReadAndArgumentErrors) {
    SimBlockDevice d(1 << 20);
    EXPECT_EQ(d.size(), 1u << 20);
    ASSERT_TRUE(d.write(4096, fill(8192, 7), false).ok());
    std::vector<std::byte> out(8192);
    ASSERT_TRUE(d.read(4096, out).ok());
    EXPECT_EQ(out, fill(8192, 7));
    EXPECT_EQ(d.write(100, fill(512, 1), false).code(), Errc::invalid_argument);
    EXPECT_EQ(d.write(0, fill(100, 1), false).code(), Errc::invalid_argument);
    EXPECT_EQ(d.read((1 << 20) - 512, out).code(), Errc::invalid_argument);
    EXPECT_TRUE(d.flush().ok());
    EXPECT_EQ(d.pending_sectors(), 0u);
}

TEST(SimBlockDevice, UnflushedWritesAreLostInAnySubsetFuaIsDurable) {
    SimBlockDevice d(1 << 16);
    ASSERT_TRUE(d.write(0, fill(512, 1), false).ok());
    ASSERT_TRUE(d.write(512, fill(1024, 2), false).ok());  // one write, two sectors
    ASSERT_TRUE(d.write(2048, fill(512, 3), true).ok());   // FUA: never lost
    std::vector<std::byte> dur(512);
    ASSERT_TRUE(d.read_durable(0, dur).ok());
    EXPECT_EQ(dur, fill(512, 0));
    BlockExplorer ex(d, d.capture());
    ASSERT_EQ(ex.state_count(), 4u);
    std::set<std::vector<unsigned char>> images;
    for (std::uint64_t i = 0; i < ex.state_count(); ++i) {
        ex.apply(i);
        images.insert({sector_byte(d, 0), sector_byte(d, 1), sector_byte(d, 2), sector_byte(d, 4)});
        ex.rollback();
    }
    const std::set<std::vector<unsigned char>> want = {
        {0, 0, 0, 3}, {1, 0, 0, 3}, {0, 2, 2, 3}, {1, 2, 2, 3}};
    EXPECT_EQ(images, want);
    EXPECT_EQ(sector_byte(d, 0), 1) << "rollback restores the pre-crash view";
}

TEST(SimBlockDevice, TornWritesAtSectorGranularity) {
    SimBlockDevice d(1 << 16);
    ASSERT_TRUE(d.write(0, fill(4096, 9), false).ok());
    BlockExplorer whole(d, d.capture());
    EXPECT_EQ(whole.state_count(), 2u);
    BlockExplorer torn(d, d.capture(), {.tear_writes = true});
    EXPECT_EQ(torn.state_count(), 256u);
    torn.apply(0b00000101);
    EXPECT_EQ(sector_byte(d, 0), 9);
    EXPECT_EQ(sector_byte(d, 1), 0);
    EXPECT_EQ(sector_byte(d, 2), 9);
    torn.rollback();
}

TEST(SimBlockDevice, FlushHookSeesEveryFlushAndCanCrash) {
    SimContext ctx;
    SimBlockDevice d(1 << 16, {.context = &ctx});
    ctx.crash_at(2);
    ASSERT_TRUE(d.write(0, fill(512, 1), false).ok());
    ASSERT_TRUE(d.flush().ok());
    ASSERT_TRUE(d.write(0, fill(512, 2), false).ok());
    EXPECT_THROW((void)d.flush(), SimCrash);
    EXPECT_EQ(d.pending_sectors(), 1u) << "the crash happens before the flush takes effect";
    EXPECT_EQ(ctx.persist_points, 2u);
}

TEST(SimBlockDevice, InjectedFaultsAreTaggedAndBehave) {
    SimBlockDevice d(1 << 16);
    d.arm({.kind = BlockFaultKind::lost_write, .write_ordinal = 1});
    d.arm({.kind = BlockFaultKind::misdirected_write, .write_ordinal = 2, .target_sector = 20});
    d.arm({.kind = BlockFaultKind::torn_write, .write_ordinal = 3, .sector_mask = 0b01});
    ASSERT_TRUE(d.write(0, fill(512, 1), true).ok());
    EXPECT_EQ(sector_byte(d, 0), 0) << "lost write";
    ASSERT_TRUE(d.write(512, fill(512, 2), true).ok());
    EXPECT_EQ(sector_byte(d, 1), 0);
    EXPECT_EQ(sector_byte(d, 20), 2) << "misdirected write";
    ASSERT_TRUE(d.write(1024, fill(1024, 3), true).ok());
    EXPECT_EQ(sector_byte(d, 2), 3);
    EXPECT_EQ(sector_byte(d, 3), 0) << "torn write";
    d.flip_bit(20, 1);
    EXPECT_EQ(sector_byte(d, 20), 0);
    d.make_unreadable(30, 2);
    std::vector<std::byte> b(1024);
    EXPECT_EQ(d.read(31 * 512, b).code(), Errc::io);
    EXPECT_TRUE(d.read(32 * 512, b).ok());
    ASSERT_EQ(d.faults().size(), 5u);
    for (const BlockFault& f : d.faults()) {
        EXPECT_TRUE(f.triggered) << block_fault_name(f.kind);
        EXPECT_EQ(f.tag, FaultTag::must_detect) << block_fault_name(f.kind);
    }
}

TEST(SystemExplorer, ProductOfPmemAndBlockStates) {
    SimContext ctx;
    SimPmem p(4096, {.context = &ctx});
    SimBlockDevice d(1 << 16, {.context = &ctx});
    std::byte w[8] = {std::byte{1}};
    ASSERT_TRUE(p.write(0, w, kPmemNoFlush | kPmemNoDrain).ok());
    ASSERT_TRUE(d.write(0, fill(512, 1), false).ok());
    SystemExplorer ex(p, d);
    ASSERT_EQ(ex.state_count(), 4u);
    std::set<std::pair<int, int>> seen;
    for (std::uint64_t i = 0; i < ex.state_count(); ++i) {
        ex.apply(i);
        seen.insert({static_cast<int>(p.data()[0]), sector_byte(d, 0)});
        ex.rollback();
    }
    EXPECT_EQ(seen, (std::set<std::pair<int, int>>{{0, 0}, {1, 0}, {0, 1}, {1, 1}}));
}

}  // namespace
