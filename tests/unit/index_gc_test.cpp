// The index forgets what GC retires (issue 17 item 2): after writeback and GC have retired every
// kset, no key is left in the index; a newer key over a retired key's range stays, with its data.
// Reads never allocate: this binary counts every operator new.
#include <gtest/gtest.h>

#include "cache_fixture.hpp"

std::uint64_t operator_new_calls();  // alloc_counter.cpp

namespace pcache {
namespace {

using testutil::MemCache;
using testutil::pattern;
using testutil::small_options;
using testutil::small_pmem_bytes;

std::unique_ptr<MemCache> open_gc0(MemPmem& p, MemBlockDevice& b) {
    auto c = testutil::format_or_fail(p, b);
    if (c) {
        EXPECT_TRUE(c->set_gc_percent(0).ok());  // GC retires whatever writeback passed
    }
    return c;
}

// Writeback to dirty_tail == key_head, then GC until key_tail reaches it.
void write_back_and_collect(MemCache& c) {
    for (int i = 0; i < 10000; ++i) {
        auto wb = c.writeback_step();
        ASSERT_TRUE(wb.status.ok()) << wb.status.to_string();
        if (!wb.progressed) break;
    }
    for (int i = 0; i < 10000; ++i) {
        auto gc = c.gc_step();
        ASSERT_TRUE(gc.status.ok()) << gc.status.to_string();
        if (!gc.progressed) break;
    }
    ASSERT_EQ(c.key_tail(), c.key_head());
}

TEST(IndexGc, RetiringEveryKsetEmptiesTheIndex) {
    MemPmem pmem(small_pmem_bytes(32));
    MemBlockDevice disk(64 << 20);
    auto c = open_gc0(pmem, disk);
    ASSERT_TRUE(c);
    std::vector<std::byte> model(disk.size());
    // Scattered 4 KiB writes with overwrites and partial overlaps, several rounds: each round
    // ends with everything written back and retired.
    for (std::uint32_t round = 0; round < 4; ++round) {
        for (std::uint32_t i = 0; i < 300; ++i) {
            const std::uint64_t off = ((i * 7919ull + round * 131) % 4000) * 4096 + (i % 3) * 1024;
            auto d = pattern(4096, round * 1000 + i);
            Status s = c->write(off, d).status;
            if (s.code() == Errc::busy) {
                ASSERT_TRUE(c->flush().ok());
                write_back_and_collect(*c);
                s = c->write(off, d).status;
            }
            ASSERT_TRUE(s.ok()) << s.to_string();
            std::copy(d.begin(), d.end(), model.begin() + off);
        }
        EXPECT_GT(c->index_stats().keys, 0u);
        ASSERT_TRUE(c->flush().ok());
        write_back_and_collect(*c);
        ASSERT_TRUE(c->check_invariants().ok());
        // On the code before this change the retired keys stayed (stale, dropped only when a
        // walk met them): hundreds of keys here.
        EXPECT_EQ(c->index_stats().keys, 0u) << "round " << round;
        std::vector<std::byte> out(model.size());
        ASSERT_TRUE(c->read(0, out).ok());
        ASSERT_TRUE(out == model) << "round " << round;
    }
    EXPECT_GT(c->counters().gc_ksets_retired, 0u);
}

TEST(IndexGc, NewerKeyOverARetiredRangeSurvives) {
    MemPmem pmem(small_pmem_bytes(32));
    MemBlockDevice disk(16 << 20);
    auto c = open_gc0(pmem, disk);
    ASSERT_TRUE(c);
    const auto old_data = pattern(16384, 1), new_data = pattern(4096, 2);
    ASSERT_TRUE(c->write(0, old_data).ok());
    ASSERT_TRUE(c->flush().ok());  // the old key's kset is in the log
    // A newer key over the middle, still buffered (not in the log, not written back): the index
    // holds the old key's head and tail pieces and the newer key.
    ASSERT_TRUE(c->write(4096, new_data).ok());
    ASSERT_EQ(c->index_stats().keys, 3u);
    write_back_and_collect(*c);  // retires the old key's kset only
    EXPECT_GE(c->counters().gc_ksets_retired, 1u);
    // The old key's pieces are gone, the newer key stays, and reads return the newest bytes.
    EXPECT_EQ(c->index_stats().keys, 1u);
    std::vector<std::byte> want = old_data, out(16384);
    std::copy(new_data.begin(), new_data.end(), want.begin() + 4096);
    ASSERT_TRUE(c->read(0, out).ok());
    EXPECT_TRUE(out == want);
    ASSERT_TRUE(c->check_invariants().ok());
    // Once the newer key is written back and retired too, the index is empty.
    ASSERT_TRUE(c->flush().ok());
    write_back_and_collect(*c);
    EXPECT_EQ(c->index_stats().keys, 0u);
    ASSERT_TRUE(c->read(0, out).ok());
    EXPECT_TRUE(out == want);
}

TEST(IndexRead, ReadsNeverAllocate) {
    MemPmem pmem(small_pmem_bytes(32));
    MemBlockDevice disk(16 << 20);
    CacheOptions o = small_options();
    o.fill_on_read_miss = false;  // the holes stay holes: every read meets them
    auto c = testutil::format_or_fail(pmem, disk, o);
    ASSERT_TRUE(c);
    // 96 keys of 4 KiB in one subtree with 4 KiB holes between some of them, so one read of
    // 512 KiB meets many keys (the old read path collected hits in a vector of 8 on the stack
    // and went to the heap past that) and some gaps read from the backing device.
    for (std::uint64_t i = 0; i < 128; ++i)
        if (i % 4 != 3) {
            ASSERT_TRUE(c->write(i * 4096, pattern(4096, std::uint32_t(i))).ok());
        }
    std::vector<std::byte> out(512 << 10);
    ASSERT_TRUE(c->read(0, out).ok());  // warm: anything lazily made once
    const std::uint64_t before = operator_new_calls();
    for (int r = 0; r < 10; ++r) {
        ASSERT_TRUE(c->read(0, out).ok());
        ASSERT_TRUE(c->read(8192, std::span(out).first(4096)).ok());
    }
    EXPECT_EQ(operator_new_calls() - before, 0u) << "operator new calls during 20 reads";
    ASSERT_TRUE(c->read(0, out).ok());
    for (std::uint64_t i = 0; i < 128; ++i) {
        const auto want =
            i % 4 != 3 ? pattern(4096, std::uint32_t(i)) : std::vector<std::byte>(4096);
        ASSERT_TRUE(std::equal(want.begin(), want.end(), out.begin() + std::ptrdiff_t(i * 4096)))
            << "block " << i;
    }
}

}  // namespace
}  // namespace pcache
