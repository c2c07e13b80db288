// The runtime: background writeback/GC threads, the blocking write on a full cache, flush_all,
// and a multi-threaded stress of overlapping writes, reads and flushes (run under TSan with the
// tsan preset).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cache_fixture.hpp"
#include "pcache/runtime.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
using testutil::pattern;

TEST(Runtime, BlockingWritesOnAFullCacheComplete) {
    MemPmem pmem(testutil::small_pmem_bytes(8));
    MemBlockDevice disk(32 << 20);
    auto c =
        std::move(MemCache::format(borrow(pmem), borrow(disk), testutil::small_options()).value());
    Runtime<MemCache> rt(*c, {std::chrono::milliseconds(20), std::chrono::milliseconds(5)});
    ASSERT_TRUE(rt.start().ok());
    std::vector<std::byte> model(32 << 20);
    for (std::uint32_t i = 0; i < 300; ++i) {  // ~20 MiB through a 2 MiB cache
        const std::uint64_t off = (i * 69632ull) % ((32 << 20) - 65536);
        auto d = pattern(65536, i);
        Status s = rt.write_blocking(off, d, {.fua = i % 5 == 0}).status;
        ASSERT_TRUE(s.ok()) << s.to_string();
        std::copy(d.begin(), d.end(), model.begin() + off);
    }
    std::vector<FlushProgress> seen;
    ASSERT_TRUE(rt.flush_all([&](const FlushProgress& p) { seen.push_back(p); }).ok());
    rt.stop();
    EXPECT_TRUE(c->is_clean());
    EXPECT_EQ(c->dirty_bytes(), 0u);
    EXPECT_TRUE(rt.last_error().ok()) << rt.last_error().to_string();
    EXPECT_TRUE(disk.bytes() == model);
    std::vector<std::byte> all(model.size());
    ASSERT_TRUE(c->read(0, all).ok());
    EXPECT_TRUE(all == model);
    ASSERT_TRUE(c->check_invariants().ok());
}

TEST(Runtime, ConcurrentOverlappingWritesReadsFlushes) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    MemBlockDevice disk(16 << 20);
    CacheOptions o = testutil::small_options(true);
    o.n_ksets = 2;
    auto c = std::move(MemCache::format(borrow(pmem), borrow(disk), o).value());
    Runtime<MemCache> rt(*c, {std::chrono::milliseconds(10), std::chrono::milliseconds(5)});
    ASSERT_TRUE(rt.start().ok());
    // Each thread owns every 4th 64 KiB block for its final value (so the end state is known)
    // but reads everywhere and overwrites shared blocks with data it re-writes at the end.
    constexpr int kThreads = 4;
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
        ts.emplace_back([&, t] {
            std::vector<std::byte> out(8192);
            for (std::uint32_t i = 0; i < 150; ++i) {
                const std::uint64_t block = (i * 7 + t) % 64;
                const std::uint64_t off = block * 65536 + (i % 8) * 4096;
                if (!rt.write_blocking(off, pattern(12288, t * 1000 + i), {.fua = i % 9 == 0}).ok())
                    ++failures;
                if (!c->read((i * 13 % 200) * 8192, out).ok()) ++failures;
                if (i % 17 == 0 && !rt.flush_blocking().ok()) ++failures;
            }
        });
    }
    for (auto& th : ts) th.join();
    EXPECT_EQ(failures.load(), 0);
    // Final, deterministic overwrite of everything, then compare.
    std::vector<std::byte> model(4 << 20);
    for (std::uint32_t b = 0; b < 64; ++b) {
        auto d = pattern(65536, 90000 + b);
        ASSERT_TRUE(rt.write_blocking(b * 65536, d).ok());
        std::copy(d.begin(), d.end(), model.begin() + b * 65536);
    }
    ASSERT_TRUE(rt.flush_all().ok());
    rt.stop();
    std::vector<std::byte> all(model.size());
    ASSERT_TRUE(c->read(0, all).ok());
    EXPECT_TRUE(all == model);
    EXPECT_TRUE(std::equal(model.begin(), model.end(), disk.bytes().begin()));
    EXPECT_TRUE(c->check_invariants().ok());
}

}  // namespace
}  // namespace pcache
