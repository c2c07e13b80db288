// Engine tests on MemPmem + MemBlockDevice: open/format/refusal, the write and read paths,
// FLUSH/FUA, replay after reopen, data CRC, writeback and GC.
#include <gtest/gtest.h>

#include "bytes_util.hpp"
#include "cache_fixture.hpp"

namespace pcache {
namespace {

using testutil::format_or_fail;
using testutil::MemCache;
using testutil::pattern;
using testutil::read_or_fail;
using testutil::small_options;
using testutil::small_pmem_bytes;

constexpr std::uint64_t kOneGiB = 1ull << 30;

std::unique_ptr<MemCache> open_ok(MemPmem& p, MemBlockDevice& b, CacheOptions o) {
    auto c = MemCache::open(borrow(p), borrow(b), o);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    return c.ok() ? std::move(c.value()) : nullptr;
}

TEST(CacheOpen, FreshKernelGeometryStatus) {
    MemPmem pmem(kOneGiB);
    MemBlockDevice disk(256 << 20);
    auto c = format_or_fail(pmem, disk, CacheOptions{});
    ASSERT_TRUE(c);
    EXPECT_EQ(c->status_line(), "0 63 63 1 70 1182 0:0 0:0 0:0");
    CacheOptions crc;
    crc.data_crc = true;
    MemPmem pmem2(kOneGiB);
    auto c2 = format_or_fail(pmem2, disk, crc);
    EXPECT_EQ(c2->status_line(), "0 63 63 1 70 1183 0:0 0:0 0:0");
}

TEST(CacheOpen, FreshImageMatchesAppendixA) {
    MemPmem pmem(kOneGiB);
    MemBlockDevice disk(256 << 20);
    auto c = format_or_fail(pmem, disk, CacheOptions{});
    const std::byte* d = pmem.data();
    auto rd = [&](std::uint64_t off, std::size_t n) {
        return std::span<const std::byte>(d + off, n);
    };
    // cache_info: slot 1 seq 1 (advance-then-write), slot 0 untouched.
    auto ci1 = format::decode_meta<format::CacheInfo>(rd(12288, 24), 12288);
    ASSERT_TRUE(ci1.ok());
    EXPECT_EQ(ci1->header.seq, 1);
    EXPECT_FALSE(format::decode_meta<format::CacheInfo>(rd(8192, 24), 8192).ok());
    // Tails: slot 0 seq 1, slot 1 zero.
    EXPECT_EQ(format::decode_meta<format::CachePos>(rd(16384, 16), 0)->header.seq, 1);
    EXPECT_FALSE(format::decode_meta<format::CachePos>(rd(16400, 16), 0).ok());
    EXPECT_EQ(format::decode_meta<format::CachePos>(rd(16416, 16), 0)->header.seq, 1);
    // Segment 0: slot 1 seq 1 flags 0x2, slot 0 seq 2 flags 0x3 next 1; gen[1] seq 1.
    auto s0 = format::decode_meta<format::SegmentInfo>(rd(20480, 16), 0);
    auto s1 = format::decode_meta<format::SegmentInfo>(rd(20480 + 4096, 16), 0);
    ASSERT_TRUE(s0.ok() && s1.ok());
    EXPECT_EQ(s0->header.seq, 2);
    EXPECT_EQ(s0->flags, 3u);
    EXPECT_EQ(s0->next_seg, 1u);
    EXPECT_EQ(s1->flags, 2u);
    auto last =
        format::decode_meta<format::SegmentInfo>(rd(20480 + 62ull * (16 << 20) + 4096, 16), 0);
    ASSERT_TRUE(last.ok());
    EXPECT_EQ(last->flags, 2u);
    EXPECT_EQ(format::decode_meta<format::SegGen>(rd(20480 + 8192 + 16, 16), 0)->header.seq, 1);
}

TEST(CacheOpen, RefusesCorruptSuperblockAndWritesNothing) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    { auto c = format_or_fail(pmem, disk); }
    pmem.raw_for_tests()[4096 + 16] ^= std::byte{1};  // seg_num: CRC now fails
    const auto before = testutil::snapshot(pmem);
    auto c = MemCache::open(borrow(pmem), borrow(disk), small_options());
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.code(), Errc::corrupt);
    EXPECT_NE(c.status().message().find("superblock.crc"), std::string::npos)
        << c.status().message();
    EXPECT_EQ(testutil::snapshot(pmem), before);
}

TEST(CacheOpen, RefusesDataCrcMismatch) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    { auto c = format_or_fail(pmem, disk, small_options(false)); }
    const auto before = testutil::snapshot(pmem);
    auto c = MemCache::open(borrow(pmem), borrow(disk), small_options(true));
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("data_crc"), std::string::npos);
    EXPECT_EQ(testutil::snapshot(pmem), before);
}

TEST(CacheOpen, RefusesWrongGeometry) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    { auto c = format_or_fail(pmem, disk); }
    CacheOptions o = small_options();
    o.geometry.segment_bytes = 512 * 1024;
    auto c = MemCache::open(borrow(pmem), borrow(disk), o);
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("seg_num"), std::string::npos) << c.status().message();
}

TEST(CacheOpen, RefusesReformatWhenLogHoldsDataUnlessForced) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    {
        auto c = format_or_fail(pmem, disk);
        ASSERT_TRUE(c->write(0, pattern(4096, 1), {.fua = true}).ok());
    }
    std::memset(pmem.raw_for_tests() + 8192, 0, 8192);  // both cache_info copies gone
    const auto before = testutil::snapshot(pmem);
    auto o = MemCache::open(borrow(pmem), borrow(disk), small_options());
    ASSERT_FALSE(o.ok());  // open never formats: a format that never finished is refused
    EXPECT_EQ(o.code(), Errc::not_found) << o.status().to_string();
    EXPECT_EQ(testutil::snapshot(pmem), before);
    auto c = MemCache::format(borrow(pmem), borrow(disk), small_options());
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("refusing to re-format"), std::string::npos);
    EXPECT_EQ(testutil::snapshot(pmem), before);
    CacheOptions forced = small_options();
    forced.force_format = true;
    auto f = format_or_fail(pmem, disk, forced);
    EXPECT_EQ(read_or_fail(*f, 0, 4096), std::vector<std::byte>(4096));  // re-formatted: data gone
}

TEST(CacheOpen, TooSmallDevice) {
    MemPmem pmem(256 << 20);
    MemBlockDevice disk(8 << 20);
    auto c = MemCache::format(borrow(pmem), borrow(disk), CacheOptions{});
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.code(), Errc::no_space);
}

TEST(CacheIo, WriteReadHitMissPartial) {
    MemPmem pmem(small_pmem_bytes(32));
    MemBlockDevice disk(16 << 20);
    const auto base = pattern(16 << 20, 99);
    ASSERT_TRUE(disk.write(0, base, true).ok());
    auto c = format_or_fail(pmem, disk);
    const auto a = pattern(8192, 1);
    ASSERT_TRUE(c->write(4096, a).ok());
    EXPECT_EQ(read_or_fail(*c, 4096, 8192), a);  // full hit
    auto got = read_or_fail(*c, 0, 16384);       // partial: miss, hit, miss
    std::vector<std::byte> want(base.begin(), base.begin() + 16384);
    std::copy(a.begin(), a.end(), want.begin() + 4096);
    EXPECT_EQ(got, want);
    EXPECT_TRUE(c->check_invariants().ok());
}

TEST(CacheIo, WriteSpanningSubtreesAndSegments) {
    MemPmem pmem(small_pmem_bytes(64));
    MemBlockDevice disk(16 << 20);
    auto c = format_or_fail(pmem, disk);
    const auto a = pattern(1 << 20, 7);
    const std::uint64_t off =
        (4 << 20) - 8192;  // crosses a 4 MiB subtree, several 244 KiB segments
    ASSERT_TRUE(c->write(off, a).ok());
    EXPECT_EQ(read_or_fail(*c, off, a.size()), a);
    ASSERT_TRUE(c->flush().ok());
    c.reset();
    auto r = open_ok(pmem, disk, small_options());
    EXPECT_EQ(read_or_fail(*r, off, a.size()), a);
    EXPECT_TRUE(r->check_invariants().ok());
}

TEST(CacheIo, OverlapsThroughTheCache) {
    MemPmem pmem(small_pmem_bytes(32));
    MemBlockDevice disk(8 << 20);
    auto c = format_or_fail(pmem, disk, small_options(true));
    std::vector<std::byte> model(65536);
    auto put = [&](std::uint64_t off, std::size_t len, std::uint32_t seed) {
        auto d = pattern(len, seed);
        ASSERT_TRUE(c->write(off, d).ok());
        std::copy(d.begin(), d.end(), model.begin() + off);
    };
    put(0, 16384, 1);
    put(4096, 4096, 2);   // inside: split
    put(12288, 8192, 3);  // tail overlap
    put(0, 2048, 4);      // head
    put(1024, 30720, 5);  // covers many
    EXPECT_EQ(read_or_fail(*c, 0, 65536), model);
    ASSERT_TRUE(c->flush().ok());
    c.reset();
    auto r = open_ok(pmem, disk, small_options(true));
    EXPECT_EQ(read_or_fail(*r, 0, 65536), model);
}

TEST(CacheIo, UnflushedWritesAreVolatileFuaIsDurable) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    auto c = format_or_fail(pmem, disk);
    ASSERT_TRUE(c->write(0, pattern(4096, 1)).ok());
    ASSERT_TRUE(c->write(8192, pattern(4096, 2), {.fua = true}).ok());
    ASSERT_TRUE(c->write(16384, pattern(4096, 3)).ok());
    c.reset();  // a crash: no close, buffered keys lost
    auto r = open_ok(pmem, disk, small_options());
    // Keys 1 and 2 share the kset buffer: the FUA close persisted both; key 3 was lost.
    EXPECT_EQ(read_or_fail(*r, 0, 4096), pattern(4096, 1));
    EXPECT_EQ(read_or_fail(*r, 8192, 4096), pattern(4096, 2));
    EXPECT_EQ(read_or_fail(*r, 16384, 4096), std::vector<std::byte>(4096));
}

TEST(CacheIo, BadArguments) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    auto c = format_or_fail(pmem, disk);
    auto d = pattern(4096, 1);
    EXPECT_EQ(c->write(100, d).code(), Errc::invalid_argument);
    EXPECT_EQ(c->write((8 << 20) - 512, d).code(), Errc::invalid_argument);
    EXPECT_EQ(c->write(0, std::span(d).first(0)).code(), Errc::invalid_argument);
    std::vector<std::byte> out(4096);
    EXPECT_EQ(c->read(8 << 20, out).code(), Errc::invalid_argument);
}

TEST(CacheIo, DataCrcMismatchIsAnErrorNeverData) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    auto c = format_or_fail(pmem, disk, small_options(true));
    ASSERT_TRUE(c->write(0, pattern(4096, 1), {.fua = true}).ok());
    // The first data segment is cache segment 1 (segment 0 holds the key log).
    const std::uint64_t data = small_options().geometry.data_offset(1);
    pmem.raw_for_tests()[data + 100] ^= std::byte{0x40};
    std::vector<std::byte> out(4096);
    EXPECT_EQ(c->read(0, out).code(), Errc::data_crc);
    c.reset();
    auto r = open_ok(pmem, disk, small_options(true));  // replay keeps going, the key is marked bad
    EXPECT_EQ(r->read(0, out).code(), Errc::data_crc);
    EXPECT_EQ(r->counters().data_crc_errors, 2u);
}

TEST(CacheBackground, WorkloadLargerThanCacheCompletes) {
    MemPmem pmem(small_pmem_bytes(8));  // 8 x 244 KiB of cache
    MemBlockDevice disk(16 << 20);
    auto c = format_or_fail(pmem, disk);
    std::vector<std::byte> model(16 << 20);
    for (std::uint32_t i = 0; i < 400; ++i) {
        const std::uint64_t off = (i * 40960ull) % ((16 << 20) - 65536);
        auto d = pattern(16384 + (i % 4) * 4096, i);
        for (int tries = 0;; ++tries) {
            ASSERT_LT(tries, 1000);
            Status s = c->write(off, d, {.fua = i % 7 == 0}).status;
            if (s.ok()) break;
            ASSERT_EQ(s.code(), Errc::busy) << s.to_string();
            ASSERT_TRUE(c->flush().ok());  // FLUSH always completes (the key-log reserve)
            auto wb = c->writeback_step();
            ASSERT_TRUE(wb.status.ok()) << wb.status.to_string();
            auto gc = c->gc_step();
            ASSERT_TRUE(gc.status.ok()) << gc.status.to_string();
        }
        std::copy(d.begin(), d.end(), model.begin() + off);
        ASSERT_TRUE(c->check_invariants().ok());
    }
    EXPECT_EQ(read_or_fail(*c, 0, model.size()), model);
    EXPECT_GT(c->counters().gc_ksets_retired, 0u);
    // Flush everything: writeback to clean, then the backing device alone equals the model.
    ASSERT_TRUE(c->flush().ok());
    for (int i = 0; i < 100000 && !c->is_clean(); ++i) ASSERT_TRUE(c->writeback_step().status.ok());
    ASSERT_TRUE(c->is_clean());
    EXPECT_TRUE(disk.bytes() == model);
}

TEST(CacheStatus, GcPercentMessage) {
    MemPmem pmem(kOneGiB);
    MemBlockDevice disk(256 << 20);
    auto c = format_or_fail(pmem, disk, CacheOptions{.data_crc = true});
    ASSERT_TRUE(c->message("gc_percent 50").ok());
    EXPECT_EQ(c->status_line(), "0 63 63 1 50 c83 0:0 0:0 0:0");
    EXPECT_EQ(c->message("gc_percent 91").code(), Errc::invalid_argument);
    EXPECT_EQ(c->message("gc_percent 300").code(), Errc::invalid_argument);  // no u8 truncation
    EXPECT_EQ(c->message("GC_PERCENT 0").code(), Errc::ok);
    EXPECT_EQ(c->message("gc_percent").code(), Errc::invalid_argument);
    EXPECT_EQ(c->message("other 1").code(), Errc::invalid_argument);
    EXPECT_EQ(c->message("gc_percent -1").code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace pcache
