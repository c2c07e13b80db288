// SimPmem: device conformance (write/read/range errors), media errors, the durable image, the
// explorer's counts, sampling, rollback (also of what recovery wrote, also nested), the undo-log
// bound, and the read-only view guard.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "pcache/sim/pmem_explorer.hpp"

namespace {

using namespace pcache;
using namespace pcache::sim;

std::vector<std::byte> bytes_of(std::size_t n, unsigned char v) {
    return std::vector<std::byte>(n, std::byte{v});
}

TEST(SimPmem, ConformsWriteReadAndRangeErrors) {
    SimPmem p(1 << 16);
    EXPECT_EQ(p.size(), 1u << 16);
    const auto src = bytes_of(100, 0xAB);
    ASSERT_TRUE(p.write(3, src, 0).ok());
    std::vector<std::byte> dst(100);
    ASSERT_TRUE(p.read(3, dst).ok());
    EXPECT_EQ(dst, src);
    EXPECT_EQ(std::memcmp(p.data() + 3, src.data(), src.size()), 0);
    EXPECT_EQ(p.write((1 << 16) - 10, src, 0).code(), Errc::invalid_argument);
    EXPECT_EQ(p.read((1 << 16) - 10, dst).code(), Errc::invalid_argument);
    EXPECT_EQ(p.flush(1 << 16, 1).code(), Errc::invalid_argument);
    EXPECT_EQ(p.pending_words(), 0u) << "a write with no flags is durable on return";
}

TEST(SimPmem, BadRangeMakesReadsFail) {
    SimPmem p(8192);
    p.add_bad_range(4096, 64);
    std::vector<std::byte> dst(64);
    EXPECT_TRUE(p.read(0, dst).ok());
    EXPECT_EQ(p.read(4090, dst).code(), Errc::io);
    EXPECT_EQ(p.read(4096 + 63, std::span<std::byte>(dst).first(1)).code(), Errc::io);
    EXPECT_TRUE(p.read(4096 + 64, dst).ok());
    p.clear_bad_ranges();
    EXPECT_TRUE(p.read(4096, dst).ok());
}

TEST(SimPmem, CpuViewAndDurableImageDiffer) {
    SimPmem p(4096);
    ASSERT_TRUE(p.write(0, bytes_of(64, 1), kPmemNoFlush | kPmemNoDrain).ok());
    EXPECT_EQ(p.pending_words(), 8u);
    std::vector<std::byte> d(64);
    ASSERT_TRUE(p.read_durable(0, d).ok());
    EXPECT_EQ(d, bytes_of(64, 0));
    ASSERT_TRUE(p.read(0, d).ok());
    EXPECT_EQ(d, bytes_of(64, 1));
    EXPECT_TRUE(p.drain().ok());
    EXPECT_EQ(p.pending_words(), 8u) << "a fence without a flush persists nothing";
    ASSERT_TRUE(p.flush(0, 64).ok());
    EXPECT_TRUE(p.drain().ok());
    EXPECT_EQ(p.pending_words(), 0u);
    ASSERT_TRUE(p.read_durable(0, d).ok());
    EXPECT_EQ(d, bytes_of(64, 1));
}

TEST(SimPmemExplorer, CountsArePrefixProducts) {
    SimPmem p(4096);
    ASSERT_TRUE(p.write(0, bytes_of(24, 1), kPmemNoFlush | kPmemNoDrain).ok());       // line 0: 3
    ASSERT_TRUE(p.write(64, bytes_of(16, 1), kPmemNoFlush | kPmemNoDrain).ok());      // line 1: 2
    ASSERT_TRUE(p.write(128, bytes_of(8, 1), kPmemNonTemporal | kPmemNoDrain).ok());  // NT: 1
    PmemExplorer ex(p, p.capture());
    EXPECT_TRUE(ex.exhaustive());
    EXPECT_EQ(ex.state_count(), 4u * 3u * 2u);
    EXPECT_EQ(ex.unit_count(), 3u);
}

TEST(SimPmemExplorer, SamplesWhenMoreThanTwelveWordsArePending) {
    SimPmem p(1 << 20);
    ASSERT_TRUE(p.write(0, bytes_of(4096, 9), kPmemNoFlush | kPmemNoDrain).ok());
    PmemExplorer ex(p, p.capture(), {.seed = 42, .samples = 100});
    EXPECT_FALSE(ex.exhaustive());
    EXPECT_EQ(ex.state_count(), 100u);
    ex.choose(0);
    for (auto k : ex.kept()) EXPECT_EQ(k, 0);
    ex.choose(1);
    for (auto k : ex.kept()) EXPECT_EQ(k, 1);
    ex.choose(7);
    const auto first = ex.kept();
    PmemExplorer again(p, p.capture(), {.seed = 42, .samples = 100});
    again.choose(7);
    EXPECT_EQ(again.kept(), first) << "a sample is a function of (seed, index)";
}

TEST(SimPmemExplorer, RollbackUndoesImageAndRecoveryWrites) {
    SimPmem p(1 << 16);
    ASSERT_TRUE(p.write(0, bytes_of(16, 5), 0).ok());
    ASSERT_TRUE(p.write(0, bytes_of(16, 6), kPmemNoFlush | kPmemNoDrain).ok());
    const auto cpu_before = std::vector<std::byte>(p.data(), p.data() + 4096);
    PmemExplorer ex(p, p.capture());
    ASSERT_EQ(ex.state_count(), 3u);
    ex.apply(0);
    EXPECT_EQ(p.data()[0], std::byte{5});
    ASSERT_TRUE(p.write(1000, bytes_of(2000, 7), 0).ok());  // "recovery" writes a lot
    ASSERT_TRUE(p.write(8, bytes_of(8, 8), kPmemNoFlush | kPmemNoDrain).ok());
    {  // recovery crashes too: a nested explorer on the nested crash point
        PmemExplorer inner(p, p.capture());
        EXPECT_EQ(inner.state_count(), 2u);
        inner.apply(0);
        EXPECT_EQ(p.data()[8], std::byte{5});
        inner.rollback();
        EXPECT_EQ(p.data()[8], std::byte{8});
    }
    ex.rollback();
    EXPECT_EQ(std::memcmp(p.data(), cpu_before.data(), cpu_before.size()), 0);
    EXPECT_EQ(p.pending_words(), 2u);
    EXPECT_TRUE(
        p.drain().ok());  // flush marks are restored too: nothing was flushed, nothing commits
    EXPECT_EQ(p.pending_words(), 2u);
}

TEST(SimPmem, UndoLogIsBounded) {
    SimPmem p(1 << 16, {.log_entries_max = 16});
    EXPECT_TRUE(p.write(0, bytes_of(128, 1), kPmemNoFlush | kPmemNoDrain).ok());
    EXPECT_EQ(p.write(128, bytes_of(8, 1), kPmemNoFlush | kPmemNoDrain).code(), Errc::no_space);
    ASSERT_TRUE(p.flush(0, 128).ok());
    EXPECT_TRUE(p.drain().ok());
    EXPECT_TRUE(p.write(128, bytes_of(8, 1), kPmemNoFlush | kPmemNoDrain).ok());
}

TEST(SimPmem, ProtectedViewAllowsWritesThroughThePolicy) {
    SimPmem p(1 << 16, {.protect_view = true});
    ASSERT_TRUE(p.write(100, bytes_of(5000, 3), 0).ok());
    ASSERT_TRUE(p.write(200, bytes_of(8, 4), kPmemNoFlush | kPmemNoDrain).ok());
    EXPECT_EQ(p.data()[100], std::byte{3});
    PmemExplorer ex(p, p.capture());
    ex.apply(0);
    EXPECT_EQ(p.data()[200], std::byte{3});
    ex.rollback();
    EXPECT_EQ(p.data()[200], std::byte{4});
}

using SimPmemDeathTest = ::testing::Test;
TEST_F(SimPmemDeathTest, RawStoreIntoProtectedViewFaults) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    SimPmem p(1 << 16, {.protect_view = true});
    ASSERT_TRUE(p.write(0, bytes_of(64, 1), 0).ok());
    EXPECT_DEATH(
        {
            auto* raw = const_cast<std::byte*>(p.data());  // the bug the guard exists to catch
            *static_cast<volatile std::byte*>(raw + 64) = std::byte{0x42};
        },
        "");
    SimPmem unguarded(1 << 16);
    auto* raw = const_cast<std::byte*>(unguarded.data());
    raw[64] = std::byte{0x42};  // without the option the same store succeeds (and is invisible)
    EXPECT_EQ(unguarded.pending_words(), 0u);
}

}  // namespace
