// Every fault model of the simulator against the engine, each tagged as in crash-model.md:
//   must-survive: the engine goes on and nothing acknowledged is lost (checked by the oracle);
//   must-detect:  the engine reports an error and never returns wrong bytes, or, for faults no
//                 cache can see (the backing device lying about a write), the oracle does.
// Lost and torn *unflushed* backing writes are crash images: the campaign suite explores them
// (tear_block_writes in CrashSuite.X86Stripes). Bit flips in cached data with data_crc are also
// flipped on crash images by every data_crc campaign, then followed by a cut, writeback and GC.
#include <gtest/gtest.h>

#include <vector>

#include "cache_fixture.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/sim/oracle.hpp"
#include "pcache/sim/sim_block_device.hpp"
#include "pcache/sim/sim_pmem.hpp"

namespace pcache::sim {
namespace {

using SimCache = Cache<SimPmem, SimBlockDevice>;
constexpr std::uint64_t kSegBytes = 64 << 10;
constexpr std::uint32_t kSegs = 8;
constexpr std::uint64_t kBacking = 1 << 20;

// A cache, its devices and the sector oracle; writes carry self-identifying sector patterns.
struct Rig {
    explicit Rig(bool data_crc = false) : oracle(kBacking) {
        opts.geometry.segment_bytes = kSegBytes;
        opts.data_crc = data_crc;
        opts.fill_on_read_miss = false;
        opts.close_on_destroy = false;  // a dropped cache is a power cut
        cache = testutil::format_or_fail(pmem, disk, opts);
    }
    Status write(std::uint64_t sector, std::uint64_t n, bool fua = false) {
        const std::uint64_t id = oracle.begin_write(sector * 512, n * 512);
        std::vector<std::byte> buf(n * 512);
        for (std::uint64_t i = 0; i < n; ++i)
            oracle_fill_sector(id, sector + i, buf.data() + i * 512);
        Status s = cache->write(sector * 512, buf, {.fua = fua}).status;
        if (s.ok()) oracle.end_write(sector * 512, n * 512, id, fua);
        return s;
    }
    // Which write a sector reads as through the cache; "" or why it is wrong.
    std::string read_ok(std::uint64_t sector) {
        std::byte b[512];
        Status s = cache->read(sector * 512, b);
        if (!s.ok()) return "read error: " + s.to_string();
        std::string why;
        return oracle.check_live(sector, b, why) ? "" : why;
    }
    // The backing device holds the newest write of every written sector (after writeback).
    std::string backing_matches() {
        for (const auto& [first, end] : oracle.touched_runs())
            for (std::uint64_t s = first; s < end; ++s) {
                std::byte b[512];
                if (Status st = disk.read(s * 512, b); !st.ok()) return st.to_string();
                std::string why;
                if (!oracle.check_live(s, b, why)) return "backing: " + why;
            }
        return {};
    }
    // Writeback until clean or `steps` steps; returns the last error ("" if none).
    std::string writeback_all(int steps = 256) {
        std::string last;
        for (int i = 0; i < steps && !cache->is_clean(); ++i) {
            auto r = cache->writeback_step();
            if (!r.status.ok()) last = r.status.to_string();
        }
        return last;
    }
    SimPmem pmem{format::kSegmentsOffsetBytes + kSegs * kSegBytes};
    SimBlockDevice disk{kBacking};
    CacheOptions opts;
    SectorOracle oracle;
    std::unique_ptr<SimCache> cache;
};

// must-detect: a media error under cached data. Reads of it fail, never return other bytes;
// writeback reports the extent lost and leaves the backing device's old bytes.
TEST(FaultModels, PmemMediaErrorOnDataIsReported) {
    Rig r;
    ASSERT_TRUE(r.write(0, 16).ok());
    ASSERT_TRUE(r.write(64, 8).ok());
    ASSERT_TRUE(r.cache->flush().ok());
    const std::uint32_t log_seg = r.cache->key_head().seg;
    for (std::uint32_t s = 0; s < kSegs; ++s)
        if (s != log_seg)
            r.pmem.add_bad_range(r.opts.geometry.data_offset(s), r.opts.geometry.seg_data_bytes());
    std::byte b[512];
    for (std::uint64_t s : {0, 15, 64, 71}) {
        const Status st = r.cache->read(s * 512, b);
        EXPECT_FALSE(st.ok()) << "DETECTED: sector " << s << " read through a media error";
    }
    EXPECT_EQ(r.read_ok(200), "") << "an uncached sector still reads from the backing device";
    r.writeback_all();
    for (std::uint64_t s : {0, 15, 64}) {
        ASSERT_TRUE(r.disk.read(s * 512, b).ok());
        std::uint64_t id = 1;
        EXPECT_TRUE(oracle_identify_sector(b, s, id) && id == 0)
            << "DETECTED: writeback put bytes it could not read on backing sector " << s;
    }
}

// must-detect: a media error on metadata (the key_tail records, the first kset): recovery
// refuses with an error; it never crashes and never serves what it could not read.
TEST(FaultModels, PmemMediaErrorOnMetadataRefusesRecovery) {
    for (const bool on_kset : {false, true}) {
        Rig r;
        ASSERT_TRUE(r.write(0, 8).ok());
        ASSERT_TRUE(r.cache->close().ok());
        r.cache.reset();
        if (on_kset)
            r.pmem.add_bad_range(r.opts.geometry.data_offset(0), 64);
        else
            r.pmem.add_bad_range(format::kKeyTailOffsetBytes, 32);
        auto c = SimCache::open(borrow(r.pmem), borrow(r.disk), r.opts);
        ASSERT_FALSE(c.ok()) << "DETECTED: recovery accepted an unreadable "
                             << (on_kset ? "kset" : "key_tail");
        EXPECT_EQ(c.code(), Errc::io) << c.status().to_string();
    }
}

// must-survive: backing EIO that clears. Writeback fails while it lasts, dirty data stays in
// the cache and readable, and once the device recovers writeback completes with every byte.
TEST(FaultModels, TransientBackingEioLosesNothing) {
    Rig r;
    for (std::uint64_t s = 0; s < 512; s += 32) ASSERT_TRUE(r.write(s, 24, s % 64 == 0).ok());
    ASSERT_TRUE(r.cache->flush().ok());
    r.disk.fail_writes(5);
    for (int i = 0; i < 64 && r.disk.failed_writes() < 5; ++i) (void)r.cache->writeback_step();
    EXPECT_EQ(r.disk.failed_writes(), 5u) << "writeback never met the failing device";
    // A writeback that passed over a failed write would leave the backing device's old bytes
    // behind once the cache is clean: backing_matches() below catches it.
    for (std::uint64_t s = 0; s < 512; s += 32) EXPECT_EQ(r.read_ok(s), "");
    r.writeback_all();
    EXPECT_TRUE(r.cache->is_clean()) << "writeback did not resume after the device recovered";
    ASSERT_TRUE(r.disk.flush().ok());
    EXPECT_EQ(r.backing_matches(), "");
}

// must-survive (reads) / must-detect (writes past full): a backing device whose writes keep
// failing. Reads keep returning the newest data, FLUSH completes, and writes are absorbed until
// the cache is full, then refused with a clear error (busy), never acknowledged and lost.
TEST(FaultModels, PermanentBackingEioKeepsServing) {
    Rig r;
    r.disk.fail_writes(~std::uint64_t{0});
    std::uint64_t acked = 0;
    Status last;
    for (std::uint64_t i = 0; i < 200; ++i) {
        last = r.write((i * 64) % 2048, 64);
        if (!last.ok()) break;
        ++acked;
        if (i % 8 == 0) {
            (void)r.cache->writeback_step();
            (void)r.cache->gc_step();
        }
    }
    EXPECT_GT(acked, 0u);
    EXPECT_FALSE(last.ok()) << "a full cache in front of a failed device accepted every write";
    EXPECT_EQ(last.code(), Errc::busy) << last.to_string();
    EXPECT_TRUE(r.cache->flush().ok());
    for (const auto& [first, end] : r.oracle.touched_runs())
        for (std::uint64_t s = first; s < end; s += 7) EXPECT_EQ(r.read_ok(s), "") << s;
}

// must-detect, by the oracle: faults of the backing device no cache can see (an acknowledged
// write never stored, stored at another sector, or torn for good). The harness's backing check
// after writeback must report each one; a harness that does not would pass a broken device.
TEST(FaultModels, LyingBackingDeviceIsDetectedByTheOracle) {
    for (const auto kind : {BlockFaultKind::lost_write, BlockFaultKind::misdirected_write,
                            BlockFaultKind::torn_write}) {
        Rig r;
        ASSERT_TRUE(r.write(0, 8).ok());
        ASSERT_TRUE(r.cache->flush().ok());
        r.disk.arm({.kind = kind,
                    .write_ordinal = r.disk.write_count() + 1,
                    .target_sector = 1000,
                    .sector_mask = 0x0F});
        r.writeback_all();
        ASSERT_TRUE(r.cache->is_clean());
        ASSERT_TRUE(r.disk.flush().ok());
        EXPECT_TRUE(r.disk.faults().front().triggered);
        EXPECT_NE(r.backing_matches(), "")
            << "the oracle missed a " << block_fault_name(kind) << " of the backing device";
    }
}

// must-detect: a bit flip in cached data with data_crc: reads fail with data_crc, writeback
// never copies the bytes to the backing device (which keeps its old content for the range).
TEST(FaultModels, CachedBitFlipWithDataCrcNeverReachesReadersOrBacking) {
    Rig r(true);
    ASSERT_TRUE(r.write(0, 8).ok());
    ASSERT_TRUE(r.cache->flush().ok());
    const std::uint32_t log_seg = r.cache->key_head().seg;
    std::uint64_t victim = 0;
    for (std::uint32_t s = 0; s < kSegs && victim == 0; ++s) {
        if (s == log_seg) continue;
        std::byte b[512];
        ASSERT_TRUE(r.pmem.read(r.opts.geometry.data_offset(s), b).ok());
        std::uint64_t id = 0;
        if (oracle_identify_sector(b, 0, id) && id != 0) victim = r.opts.geometry.data_offset(s);
    }
    ASSERT_NE(victim, 0u);
    const std::uint64_t flipped = 0xDEADBEEFull;
    ASSERT_TRUE(r.pmem.write(victim + 128, std::as_bytes(std::span(&flipped, 1)), 0).ok());
    std::byte b[512];
    const Status st = r.cache->read(0, b);
    EXPECT_EQ(st.code(), Errc::data_crc) << "DETECTED: " << st.to_string();
    r.writeback_all();
    ASSERT_TRUE(r.disk.read(0, b).ok());
    std::uint64_t id = 1;
    EXPECT_TRUE(oracle_identify_sector(b, 0, id) && id == 0)
        << "DETECTED: corrupt cached data reached the backing device";
    EXPECT_FALSE(r.cache->read(0, b).ok()) << "a lost extent read back as the old bytes";
}

}  // namespace
}  // namespace pcache::sim
