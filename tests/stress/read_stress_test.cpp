// Reads never fail because of GC or writeback (issue 14 item 1), checked against a model.
//
// Two writers, two readers and the Runtime (writeback, GC and kset flush every 1 ms) on a
// 2 MiB cache in front of an 8 MiB disk: GC reclaims segments all the time, under the readers.
// Every sector written carries a stamp (sector number, version, and the version again at the
// end); each 64 KiB region belongs to one writer, so versions of a sector only grow. Before a
// write the writer publishes the versions it starts; after it, the versions committed. A reader
// loads the committed versions before its read and the started ones after it: each sector it
// returns must be one of those versions, intact (the value was current at some point during the
// read). Any read error fails the test. No timing is asserted.
//
// PCACHE_STRESS_READS sets the total number of reads (default 1,000,000; the TSan run uses
// fewer: it is ~20x slower).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "cache_fixture.hpp"
#include "pcache/runtime.hpp"
#include "pcache/sim/sim_common.hpp"

namespace pcache {
namespace {

using testutil::MemCache;

constexpr std::uint64_t kDiskBytes = 8 << 20;
constexpr std::uint64_t kSectors = kDiskBytes / 512;
constexpr std::uint64_t kRegionBytes = 64 << 10;
constexpr int kWriters = 2, kReaders = 2;

std::uint64_t reads_wanted() {
    if (const char* e = std::getenv("PCACHE_STRESS_READS")) return std::strtoull(e, nullptr, 10);
    return 1'000'000;
}

// Sector image of (sector, version): header {sector, version}, trailer {~version}, middle bytes
// from both. Version 0 is the disk's initial zeros.
void stamp(std::byte* p, std::uint64_t sector, std::uint64_t version) {
    std::memcpy(p, &sector, 8);
    std::memcpy(p + 8, &version, 8);
    const std::uint64_t inv = ~version;
    std::memcpy(p + 504, &inv, 8);
    std::memset(p + 16, static_cast<int>((sector * 31 + version) & 0xff), 488);
}

// The version a sector image holds, or -1 when it is not an intact stamp.
std::int64_t version_of(const std::byte* p, std::uint64_t sector) {
    std::uint64_t s, v, inv;
    std::memcpy(&s, p, 8);
    std::memcpy(&v, p + 8, 8);
    std::memcpy(&inv, p + 504, 8);
    if (s == 0 && v == 0 && inv == 0) {
        for (int i = 0; i < 512; ++i)
            if (p[i] != std::byte{0}) return -1;
        return 0;
    }
    if (s != sector || inv != ~v) return -1;
    const auto fill = std::byte((sector * 31 + v) & 0xff);
    for (int i = 16; i < 504; ++i)
        if (p[i] != fill) return -1;
    return static_cast<std::int64_t>(v);
}

struct Model {
    std::vector<std::atomic<std::uint64_t>> started =
        std::vector<std::atomic<std::uint64_t>>(kSectors);
    std::vector<std::atomic<std::uint64_t>> committed =
        std::vector<std::atomic<std::uint64_t>>(kSectors);
};

void run_stress(bool data_crc, std::uint64_t reads_total) {
    MemPmem pmem(testutil::small_pmem_bytes(8));
    MemBlockDevice disk(kDiskBytes);
    CacheOptions o = testutil::small_options(data_crc);
    o.n_ksets = 2;
    auto c = testutil::format_or_fail(pmem, disk, o);
    Runtime<MemCache> rt(*c, {std::chrono::milliseconds(1), std::chrono::milliseconds(1)});
    ASSERT_TRUE(rt.start().ok());
    Model m;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads_done{0}, writes_done{0};
    std::atomic<int> errors{0};
    std::mutex report_mutex;
    std::string first_error;
    auto report = [&](const std::string& what) {
        std::lock_guard g(report_mutex);
        if (errors++ == 0)
            first_error = "ORACLE VIOLATION: " + what +
                          " (thread interleaving is not reproducible; rerun: " +
                          "tests/stress/read_stress_test --gtest_repeat=20)";
        stop = true;
    };

    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
        threads.emplace_back([&, w] {
            sim::Rng rng(1000 + w);
            std::vector<std::byte> buf;
            const std::uint64_t regions = kDiskBytes / kRegionBytes;
            for (std::uint64_t i = 0; !stop.load(); ++i) {
                const std::uint64_t region = (rng.below(regions / kWriters)) * kWriters + w;
                const std::uint64_t n = 1 + rng.below(32);  // sectors
                const std::uint64_t first =
                    region * (kRegionBytes / 512) + rng.below(kRegionBytes / 512 - n + 1);
                buf.resize(n * 512);
                for (std::uint64_t s = 0; s < n; ++s) {
                    const std::uint64_t v = m.started[first + s].load() + 1;
                    m.started[first + s].store(v);
                    stamp(buf.data() + s * 512, first + s, v);
                }
                Status st = rt.write_blocking(first * 512, buf, {.fua = i % 7 == 6}).status;
                if (!st.ok()) return report("write: " + st.to_string());
                for (std::uint64_t s = 0; s < n; ++s)
                    m.committed[first + s].store(m.started[first + s].load());
                if (i % 97 == 0) {
                    if (Status f = c->flush(); !f.ok()) return report("flush: " + f.to_string());
                }
                ++writes_done;
            }
        });
    }
    for (int r = 0; r < kReaders; ++r) {
        threads.emplace_back([&, r] {
            sim::Rng rng(2000 + r);
            std::vector<std::byte> buf;
            std::vector<std::uint64_t> lo;
            while (!stop.load() && reads_done.load() < reads_total) {
                const std::uint64_t n = 1 + rng.below(rng.below(4) == 0 ? 128 : 16);
                const std::uint64_t first = rng.below(kSectors - n + 1);
                buf.resize(n * 512);
                lo.resize(n);
                for (std::uint64_t s = 0; s < n; ++s) lo[s] = m.committed[first + s].load();
                Status st = c->read(first * 512, buf);
                if (!st.ok()) return report("read: " + st.to_string());
                for (std::uint64_t s = 0; s < n; ++s) {
                    const std::int64_t v = version_of(buf.data() + s * 512, first + s);
                    const std::uint64_t hi = m.started[first + s].load();
                    if (v < 0 || std::uint64_t(v) < lo[s] || std::uint64_t(v) > hi)
                        return report("read of sector " + std::to_string(first + s) + " returned " +
                                      (v < 0 ? std::string("a torn or foreign sector")
                                             : "version " + std::to_string(v)) +
                                      ", expected a version in [" + std::to_string(lo[s]) + ", " +
                                      std::to_string(hi) + "]");
                }
                ++reads_done;
            }
        });
    }
    // The writers run as long as the readers do.
    while (!stop.load() && reads_done.load() < reads_total)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    stop = true;
    for (auto& t : threads) t.join();
    ASSERT_EQ(errors.load(), 0) << first_error << " | counters: read_retries "
                                << c->counters().read_retries;
    ASSERT_TRUE(rt.flush_all().ok());
    rt.stop();
    EXPECT_TRUE(rt.last_error().ok()) << rt.last_error().to_string();
    const CacheCounters k = c->counters();
    // The final image: every sector holds its last committed version, in cache and on disk.
    std::vector<std::byte> all(kDiskBytes);
    ASSERT_TRUE(c->read(0, all).ok());
    for (std::uint64_t s = 0; s < kSectors; ++s) {
        ASSERT_EQ(version_of(all.data() + s * 512, s), std::int64_t(m.committed[s].load()))
            << "sector " << s;
        ASSERT_EQ(version_of(disk.bytes().data() + s * 512, s), std::int64_t(m.committed[s].load()))
            << "disk sector " << s;
    }
    EXPECT_TRUE(c->check_invariants().ok());
    std::printf("stress: %llu reads, %llu writes, %llu GC runs, %llu read retries, %llu busy\n",
                static_cast<unsigned long long>(reads_done.load()),
                static_cast<unsigned long long>(writes_done.load()),
                static_cast<unsigned long long>(k.gc_runs),
                static_cast<unsigned long long>(k.read_retries),
                static_cast<unsigned long long>(k.busy_returns));
    EXPECT_GE(reads_done.load(), reads_total);
    EXPECT_GT(k.gc_runs, 100u);  // the point of the test: GC ran under the readers
}

TEST(ReadStress, ReadsUnderGcAndWritebackNeverFail) { run_stress(false, reads_wanted() / 2); }
TEST(ReadStress, ReadsUnderGcAndWritebackNeverFailDataCrc) {
    run_stress(true, reads_wanted() - reads_wanted() / 2);
}

}  // namespace
}  // namespace pcache
