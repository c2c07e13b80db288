// The key-log reserve (docs/design.md "The key-log reserve"): FLUSH and close always complete.
//
// Regressions of issue 14's live bug: buffered keys pinned every data segment, the key log
// needed a new segment to close their kset, and FLUSH failed with busy forever (the simulator
// seeds below), or, under the threaded Runtime, every write waited out its timeout.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cache_fixture.hpp"
#include "pcache/runtime.hpp"
#include "pcache/sim/campaign.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
using testutil::pattern;

std::string failures(const sim::CampaignResult& r) {
    std::string s;
    for (const auto& f : r.failures) s += "\n  " + f;
    return s;
}

// The campaign's live workload only (no crash point is explored): every FLUSH, close and read
// of the seeded workload must succeed and read back what the oracle expects.
void run_live_campaign(std::uint64_t seed, std::uint64_t ops) {
    sim::CampaignConfig cfg;
    cfg.seed = seed;
    cfg.ops = ops;
    cfg.crash_point = sim::CampaignConfig::kAll - 1;  // never reached: no crash exploration
    const sim::CampaignResult r = sim::Campaign(cfg).run();
    EXPECT_EQ(r.ops_run, ops) << failures(r);
    EXPECT_TRUE(r.failures.empty()) << "seed " << seed << failures(r);
}

TEST(KeyLogReserve, SimSeed26FlushNeverBusy) { run_live_campaign(26, 2000); }
TEST(KeyLogReserve, SimSeed4FlushNeverBusy) { run_live_campaign(4, 3000); }
TEST(KeyLogReserve, SimSeed5FlushNeverBusy) { run_live_campaign(5, 3000); }
TEST(KeyLogReserve, SimSeed10FlushNeverBusy) { run_live_campaign(10, 3000); }

// Direct: fill the cache with buffered keys (no background work) until writes are refused, then
// FLUSH must succeed; writeback and GC then make room again. Repeated so that the key log
// crosses segments at the moment the cache is full.
TEST(KeyLogReserve, FlushSucceedsWhenDataIsRefused) {
    for (std::uint32_t n_ksets : {1u, 3u}) {
        MemPmem pmem(testutil::small_pmem_bytes(8));
        MemBlockDevice disk(32 << 20);
        CacheOptions o = testutil::small_options();
        o.n_ksets = n_ksets;
        auto c = testutil::format_or_fail(pmem, disk, o);
        std::uint32_t i = 0;
        for (int cycle = 0; cycle < 60; ++cycle) {
            Status s;
            const std::uint32_t first = i;
            for (; i < first + 100000; ++i) {  // 4 KiB writes scattered over 4 MiB stripes
                s = c->write((i * 4096ull * 1031) % (28 << 20), pattern(4096, i)).status;
                if (!s.ok()) break;
            }
            ASSERT_EQ(s.code(), Errc::busy) << s.to_string();
            ASSERT_GT(i - first, 10u);
            Status f = c->flush();
            ASSERT_TRUE(f.ok()) << "ORACLE VIOLATION: FLUSH failed with data refused: n_ksets "
                                << n_ksets << ", cycle " << cycle << ": " << f.to_string()
                                << " | status " << c->status_line();
            ASSERT_TRUE(c->check_invariants().ok());
            for (int step = 0; step < 1000; ++step) {
                auto wb = c->writeback_step();
                auto gc = c->gc_step();
                ASSERT_TRUE(wb.status.ok() && gc.status.ok());
                if (!wb.progressed && !gc.progressed) break;
            }
        }
        EXPECT_TRUE(c->close().ok());
    }
}

// Issue 14's workload: one writer (write_blocking, 16 KiB, FUA every 7th) and two readers on an
// 8-segment cache, writeback/GC/kset-flush intervals of 1 ms. The old engine wedged within
// seconds: every later write waited out its timeout. A wedge shows here as a write_blocking
// that reports no progress for 20 s (a bound far beyond any healthy wait; no speed is
// asserted).
TEST(KeyLogReserve, RuntimeWriterAndReadersNeverWedge) {
    MemPmem pmem(testutil::small_pmem_bytes(8));
    MemBlockDevice disk(32 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    RuntimeOptions ro{std::chrono::milliseconds(1), std::chrono::milliseconds(1)};
    ro.write_timeout = std::chrono::seconds(20);
    Runtime<MemCache> rt(*c, ro);
    ASSERT_TRUE(rt.start().ok());
    std::atomic<bool> done{false};
    std::atomic<int> read_errors{0};
    std::vector<std::thread> readers;
    for (int t = 0; t < 2; ++t) {
        readers.emplace_back([&, t] {
            std::vector<std::byte> out(16384);
            for (std::uint64_t i = 0; !done.load(); ++i) {
                const std::uint64_t off = ((i * 7919 + t * 104729) % 2000) * 16384;
                if (!c->read(off, out).ok()) ++read_errors;
            }
        });
    }
    std::vector<std::byte> model(32 << 20);
    Status failed;
    for (std::uint32_t i = 0; i < 3000 && failed.ok(); ++i) {
        const std::uint64_t off = ((i * 613ull) % 2000) * 16384;
        auto d = pattern(16384, i);
        failed = rt.write_blocking(off, d, {.fua = i % 7 == 6}).status;
        if (failed.ok()) std::copy(d.begin(), d.end(), model.begin() + off);
    }
    done = true;
    for (auto& r : readers) r.join();
    ASSERT_TRUE(failed.ok()) << "ORACLE VIOLATION: the cache wedged: " << failed.to_string()
                             << " | status " << c->status_line();
    ASSERT_TRUE(rt.flush_all().ok());
    rt.stop();
    EXPECT_EQ(read_errors.load(), 0) << "ORACLE VIOLATION: reads failed";
    EXPECT_TRUE(disk.bytes() == model) << "ORACLE VIOLATION: the backing device lost data";
    EXPECT_TRUE(c->check_invariants().ok());
}

TEST(KeyLogReserve, OpenRefusesTooManyKsetBuffersForTheCache) {
    MemPmem pmem(testutil::small_pmem_bytes(4));
    MemBlockDevice disk(8 << 20);
    CacheOptions o = testutil::small_options();
    o.n_ksets = 1024;
    auto r = MemCache::format(borrow(pmem), borrow(disk), o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Errc::invalid_argument);
    EXPECT_NE(r.status().message().find("kset buffers and data heads need at least"),
              std::string::npos)
        << r.status().to_string();
    EXPECT_TRUE(std::all_of(pmem.data(), pmem.data() + pmem.size(),
                            [](std::byte b) { return b == std::byte{0}; }));  // nothing written
}

}  // namespace
}  // namespace pcache
