// Writeback under faults (issue 14 item 2): a backing error is retried and loses nothing; dirty
// data that cannot be read from pmem or fails its CRC is reported as lost, never written, and
// reads of it fail until it is overwritten; a backing device that stays failed makes writes
// fail with an error naming the cause, and shutdown still finishes.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <utility>

#include "cache_fixture.hpp"
#include "pcache/runtime.hpp"
#include "pcache/sim/crash_run.hpp"
#include "pcache/sim/pmem_explorer.hpp"

namespace pcache {
namespace {

using testutil::pattern;

// A MemBlockDevice whose writes and flushes fail on demand: while `fail` is set, or for the next
// `fail_next` calls.
class FaultyBlock {
public:
    explicit FaultyBlock(std::uint64_t size) : mem_(size) {}
    std::uint64_t size() const { return mem_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) {
        std::lock_guard g(m_);
        return mem_.read(off, dst);
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        std::lock_guard g(m_);
        if (failing()) return {Errc::io, "backing write: injected EIO"};
        return mem_.write(off, src, fua);
    }
    Status flush() {
        std::lock_guard g(m_);
        if (failing()) return {Errc::io, "backing flush: injected EIO"};
        return mem_.flush();
    }
    void set_fail(bool f) {
        std::lock_guard g(m_);
        fail_ = f;
    }
    void fail_next(std::uint64_t n) {
        std::lock_guard g(m_);
        fail_next_ = n;
    }
    // Only the n-th write or flush from now fails (n >= 1).
    void fail_call(std::uint64_t n) {
        std::lock_guard g(m_);
        fail_in_ = n;
    }
    std::vector<std::byte> bytes() {
        std::lock_guard g(m_);
        return mem_.bytes();
    }

private:
    bool failing() {
        if (fail_in_ > 0 && --fail_in_ == 0) return true;
        if (fail_next_ > 0) {
            --fail_next_;
            return true;
        }
        return fail_;
    }
    std::mutex m_;
    MemBlockDevice mem_;
    bool fail_ = false;
    std::uint64_t fail_next_ = 0, fail_in_ = 0;
};
static_assert(BlockDevice<FaultyBlock>);

// A pmem device with injected faults: reads of one range fail (a media error), and fences fail
// on demand (their stores stay pending). `Inner` is the device it forwards to: an owned
// MemPmem, or a reference to a simulator's SimPmem (whose crash images are then explored).
template <class Inner>
class FaultyPmemOver {
public:
    template <class... Args>
    explicit FaultyPmemOver(Args&&... args) : mem_(std::forward<Args>(args)...) {}
    std::uint64_t size() const { return mem_.size(); }
    const std::byte* data() const { return mem_.data(); }
    Status write(std::uint64_t off, std::span<const std::byte> src, unsigned flags) {
        return mem_.write(off, src, flags);
    }
    Status flush(std::uint64_t off, std::uint64_t len) { return mem_.flush(off, len); }
    Status drain() {
        if (pass_drains_ > 0 && --pass_drains_ == 0)
            return {Errc::io, "pmem drain: injected msync failure"};
        if (fail_drains_ > 0) {
            --fail_drains_;
            return {Errc::io, "pmem drain: injected msync failure"};
        }
        return mem_.drain();
    }
    void fail_next_drains(std::uint64_t n) { fail_drains_ = n; }
    // The next `ok` drains succeed, the one after fails (then all succeed again).
    void fail_drain_after(std::uint64_t ok) { pass_drains_ = ok + 1; }
    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        if (off < bad_end_ && off + dst.size() > bad_off_)
            return {Errc::io, "pmem read: injected media error"};
        return mem_.read(off, dst);
    }
    void set_bad(std::uint64_t off, std::uint64_t len) {
        bad_off_ = off;
        bad_end_ = off + len;
    }
    std::byte* raw() { return mem_.raw_for_tests(); }  // MemPmem only

private:
    Inner mem_;
    std::uint64_t bad_off_ = 0, bad_end_ = 0;
    std::uint64_t fail_drains_ = 0;
    std::uint64_t pass_drains_ = 0;
};
using FaultyPmem = FaultyPmemOver<MemPmem>;
static_assert(PmemDevice<FaultyPmem>);

using FCache = Cache<FaultyPmem, FaultyBlock>;

// Where `needle` (a write's bytes) sits in pmem.
std::uint64_t find_in(FaultyPmem& p, const std::vector<std::byte>& needle) {
    const std::byte* hit = std::search(p.data(), p.data() + p.size(), needle.begin(), needle.end());
    EXPECT_NE(hit, p.data() + p.size());
    return static_cast<std::uint64_t>(hit - p.data());
}

void writeback_until_clean(FCache& c) {
    for (int i = 0; i < 10000 && !c.is_clean(); ++i) {
        auto r = c.writeback_step();
        ASSERT_TRUE(r.status.ok()) << r.status.to_string();
        if (!r.progressed) {
            ASSERT_TRUE(c.flush().ok());
        }
    }
    ASSERT_TRUE(c.is_clean());
}

TEST(WritebackFaults, TransientBackingErrorKeepsDirtyTailAndIsRetried) {
    FaultyPmem pmem(testutil::small_pmem_bytes(16));
    FaultyBlock disk(8 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    std::vector<std::byte> model(8 << 20);
    for (std::uint32_t i = 0; i < 40; ++i) {
        auto d = pattern(16384, i);
        const std::uint64_t off = (i * 5 % 37) * 65536;
        ASSERT_TRUE(c->write(off, d).ok());
        std::copy(d.begin(), d.end(), model.begin() + off);
    }
    ASSERT_TRUE(c->flush().ok());
    const LogPos before = c->dirty_tail();
    for (std::uint64_t fail_at = 1; fail_at <= 3; ++fail_at) {  // first write, second, flush...
        disk.fail_call(fail_at);
        auto r = c->writeback_step();
        EXPECT_FALSE(r.status.ok()) << "ORACLE VIOLATION: a failed backing write was not reported";
        EXPECT_TRUE(c->dirty_tail() == before)
            << "ORACLE VIOLATION: dirty_tail passed an unwritten extent";
        const WritebackHealth h = c->writeback_health();
        EXPECT_TRUE(h.failing);
        EXPECT_NE(h.last_error.find("injected EIO"), std::string::npos) << h.last_error;
    }
    writeback_until_clean(*c);
    EXPECT_FALSE(c->writeback_health().failing);
    EXPECT_EQ(c->counters().writeback_lost_extents, 0u);
    EXPECT_TRUE(disk.bytes() == model) << "ORACLE VIOLATION: the backing device lost data";
}

// Runtime: the backing device fails for a while under a writer; writeback resumes by itself.
TEST(WritebackFaults, RuntimeRecoversFromABackingOutage) {
    FaultyPmem pmem(testutil::small_pmem_bytes(8));
    FaultyBlock disk(16 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    RuntimeOptions ro{std::chrono::milliseconds(1), std::chrono::milliseconds(1),
                      std::chrono::milliseconds(8)};
    ro.write_timeout = std::chrono::seconds(60);
    Runtime<FCache> rt(*c, ro);
    ASSERT_TRUE(rt.start().ok());
    std::vector<std::byte> model(16 << 20);
    for (std::uint32_t i = 0; i < 600; ++i) {
        if (i % 100 == 50) disk.fail_next(40);  // an outage of 40 backing calls
        const std::uint64_t off = (i * 613ull % 1000) * 16384;
        auto d = pattern(16384, i);
        Status s = rt.write_blocking(off, d).status;
        ASSERT_TRUE(s.ok()) << s.to_string();
        std::copy(d.begin(), d.end(), model.begin() + off);
    }
    ASSERT_TRUE(rt.flush_blocking().ok());
    Status fs;
    for (int i = 0; i < 100; ++i) {  // flush_all stops at a failure; the outages are over
        fs = rt.flush_all();
        if (fs.ok()) break;
    }
    ASSERT_TRUE(fs.ok()) << fs.to_string();
    rt.stop();
    EXPECT_GT(c->counters().writeback_errors, 0u);
    EXPECT_EQ(c->counters().writeback_lost_extents, 0u);
    EXPECT_TRUE(disk.bytes() == model);
}

// A dirty extent that fails its CRC (data_crc) or cannot be read from pmem is reported once,
// never written back, and reads of it fail (also once GC reclaimed its segment) until it is
// overwritten. Writeback goes on with the rest.
void lost_extent_case(bool media_error) {
    FaultyPmem pmem(testutil::small_pmem_bytes(16));
    FaultyBlock disk(8 << 20);
    CacheOptions o = testutil::small_options(true);
    std::vector<std::string> log;
    o.log = [&](const std::string& line) { log.push_back(line); };
    auto c = testutil::format_or_fail(pmem, disk, o);
    const auto a = pattern(8192, 1), b = pattern(8192, 2);
    ASSERT_TRUE(c->write(1 << 20, a).ok());
    ASSERT_TRUE(c->write(2 << 20, b).ok());
    ASSERT_TRUE(c->flush().ok());
    const std::uint64_t at = find_in(pmem, a);
    if (media_error)
        pmem.set_bad(at + 4096, 512);
    else
        pmem.raw()[at + 100] ^= std::byte{1};
    writeback_until_clean(*c);
    const CacheCounters k = c->counters();
    EXPECT_EQ(k.writeback_lost_extents, 1u);
    EXPECT_EQ(k.writeback_lost_bytes, 8192u);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_NE(log[0].find("[1048576, +8192)"), std::string::npos) << log[0];
    const auto d = disk.bytes();
    EXPECT_TRUE(std::all_of(d.begin() + (1 << 20), d.begin() + (1 << 20) + 8192, [](std::byte x) {
        return x == std::byte{0};
    })) << "the lost extent reached the backing device";
    EXPECT_TRUE(std::equal(b.begin(), b.end(), d.begin() + (2 << 20)));
    std::vector<std::byte> out(4096);
    EXPECT_FALSE(c->read((1 << 20) + 4096, out).ok());
    // GC retires the kset and reclaims the segment: still an error, never the old bytes.
    ASSERT_TRUE(c->set_gc_percent(0).ok());
    for (int i = 0; i < 100 && c->gc_step().progressed; ++i) {
    }
    Status r = c->read(1 << 20, out);
    EXPECT_FALSE(r.ok());
    EXPECT_NE(r.message().find("data lost"), std::string::npos) << r.to_string();
    ASSERT_TRUE(c->read(2 << 20, out).ok());
    // Overwriting half the range makes that half readable; the other half stays an error.
    ASSERT_TRUE(c->write(1 << 20, pattern(4096, 3)).ok());
    EXPECT_TRUE(c->read(1 << 20, out).ok());
    EXPECT_TRUE(out == pattern(4096, 3));
    EXPECT_FALSE(c->read((1 << 20) + 4096, out).ok());
    EXPECT_EQ(log.size(), 1u);
}

TEST(WritebackFaults, CorruptDirtyExtentIsReportedSkippedAndPoisoned) { lost_extent_case(false); }
TEST(WritebackFaults, UnreadableDirtyExtentIsReportedSkippedAndPoisoned) { lost_extent_case(true); }

// A backing device that stays failed: reads keep working, writes are absorbed until the cache is
// full, then fail with an error naming the cause; close and Runtime stop finish.
TEST(WritebackFaults, PermanentBackingFailureFailsWritesWithTheCause) {
    FaultyPmem pmem(testutil::small_pmem_bytes(8));
    FaultyBlock disk(16 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    RuntimeOptions ro{std::chrono::milliseconds(1), std::chrono::milliseconds(1),
                      std::chrono::milliseconds(4)};
    ro.write_timeout = std::chrono::milliseconds(300);
    Runtime<FCache> rt(*c, ro);
    ASSERT_TRUE(rt.start().ok());
    disk.set_fail(true);
    Status s;
    std::uint32_t i = 0;
    for (; i < 10000; ++i) {
        s = rt.write_blocking(i * 16384ull, pattern(16384, i)).status;
        if (!s.ok()) break;
    }
    ASSERT_FALSE(s.ok()) << "a 2 MiB cache absorbed " << i << " writes of 16 KiB";
    EXPECT_GT(i, 10u);
    EXPECT_EQ(s.code(), Errc::busy);
    EXPECT_NE(s.message().find("writeback failing"), std::string::npos) << s.to_string();
    EXPECT_NE(s.message().find("injected EIO"), std::string::npos) << s.to_string();
    EXPECT_TRUE(c->writeback_health().failing);
    std::vector<std::byte> out(16384);
    ASSERT_TRUE(c->read(16384, out).ok());
    EXPECT_TRUE(out == pattern(16384, 1));
    rt.stop();
    EXPECT_FALSE(c->close().ok());  // the backing flush fails: reported, not hidden
}

// Durability errors are never swallowed (issue 14 item 3): a FLUSH whose kset cannot be made
// durable fails, and is not reported done until a later FLUSH succeeds; a write whose data
// drain fails is refused and gives its space back.
TEST(DurabilityErrors, FlushReportsAFailedDrain) {
    FaultyPmem pmem(testutil::small_pmem_bytes(16));
    FaultyBlock disk(8 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    const auto a = pattern(8192, 1);
    ASSERT_TRUE(c->write(0, a).ok());
    for (std::uint64_t n = 1; n <= 2; ++n) {  // the end marker's drain, then the kset's
        pmem.fail_next_drains(0);
        pmem.fail_next_drains(n);
        Status f = c->flush();
        EXPECT_FALSE(f.ok()) << "ORACLE VIOLATION: flush acknowledged although drain " << n
                             << " failed";
        EXPECT_FALSE(c->is_clean());
        pmem.fail_next_drains(0);
    }
    EXPECT_EQ(c->counters().ksets_written, 0u);
    ASSERT_TRUE(c->flush().ok());
    EXPECT_EQ(c->counters().ksets_written, 1u);
    pmem.fail_next_drains(1);
    const std::uint32_t used = c->segs_used();
    EXPECT_FALSE(c->write(1 << 20, a).ok());
    EXPECT_EQ(c->segs_used(), used);
    std::vector<std::byte> out(8192);
    ASSERT_TRUE(c->read(0, out).ok());
    EXPECT_TRUE(out == a);
    ASSERT_TRUE(c->check_invariants().ok());
}

// A kset close that has to move the log to a new segment takes that segment before it writes
// anything; when a write or fence after that fails, the close fails and the FLUSH is retried.
// The retry must use the segment it already took: before, every failed attempt took one more
// and lost it (check_invariants: "in use but holds no live key ... (leaked)"), so a pmem whose
// fences keep failing (Pmem2Device keeps an msync error) drained the pool one FLUSH at a time.
TEST(DurabilityErrors, AKsetCloseFailingAtALogSegmentSwitchKeepsItsSegment) {
    FaultyPmem pmem(testutil::small_pmem_bytes(48));
    FaultyBlock disk(64 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    const auto a = pattern(512, 3);
    int switches = 0;
    for (std::uint64_t i = 0; switches < 2 && i < 20000; ++i) {
        ASSERT_TRUE(c->write((i % 4096) * 512, a).ok()) << "write " << i;
        const std::uint32_t seg = c->key_head().seg, used = c->segs_used();
        // This close's first fence fails: the new segment's, or the end marker's.
        pmem.fail_next_drains(1);
        Status f = c->flush();
        ASSERT_EQ(f.code(), Errc::io) << "flush " << i << ": " << f.to_string();
        const bool switching = c->segs_used() != used;
        if (switching) {  // this close took a segment for the log: fail it again
            ASSERT_EQ(c->segs_used(), used + 1);
            for (int retry = 0; retry < 3; ++retry) {
                pmem.fail_next_drains(1);
                f = c->flush();
                ASSERT_EQ(f.code(), Errc::io) << f.to_string();
                EXPECT_EQ(c->segs_used(), used + 1)
                    << "ORACLE VIOLATION: failed retry " << retry << " took another segment";
            }
            ASSERT_TRUE(c->check_invariants().ok()) << c->check_invariants().to_string();
            ++switches;
        }
        pmem.fail_next_drains(0);
        ASSERT_TRUE(c->flush().ok()) << "flush " << i;
        if (!switching) continue;
        ASSERT_NE(c->key_head().seg, seg);
        const Status inv = c->check_invariants();
        ASSERT_TRUE(inv.ok()) << "ORACLE VIOLATION after flush " << i << ": " << inv.to_string();
    }
    EXPECT_EQ(switches, 2) << "the log never moved to a new segment: the test checked nothing";
    std::vector<std::byte> out(512);
    ASSERT_TRUE(c->read(0, out).ok());
    EXPECT_TRUE(out == a);
}

// The same switch when the link to the new segment is written and only its fence fails: the
// link may be durable (here it is: MemPmem keeps every store), so the power goes right then.
// Replay follows the link into the zeroed segment and ends the log there; every write
// acknowledged by a FLUSH reads back, the one whose FLUSH failed reads old or new, and the
// reopened cache's log goes on from that segment through further switches.
TEST(DurabilityErrors, APowerCutAfterAFailedLinkFenceReplays) {
    FaultyPmem pmem(testutil::small_pmem_bytes(48));
    FaultyBlock disk(64 << 20);
    constexpr std::uint64_t kSectors = 4096;
    std::vector<std::uint32_t> acked(kSectors, 0);  // pattern seed per sector, 0 = never written
    auto c = testutil::format_or_fail(pmem, disk);
    std::uint64_t i = 0, cut_sector = 0;
    std::uint32_t cut_seed = 0;
    for (; i < 20000; ++i) {
        const std::uint64_t sector = i % kSectors;
        const auto seed = static_cast<std::uint32_t>(i + 1);
        ASSERT_TRUE(c->write(sector * 512, pattern(512, seed)).ok()) << "write " << i;
        const std::uint32_t used = c->segs_used();
        pmem.fail_drain_after(
            1);  // at a switch: the zeroed segment's fence passes, the link's fails
        const Status f = c->flush();
        if (f.ok()) {  // no switch: two fences were enough (end marker, kset)
            acked[sector] = seed;
            continue;
        }
        ASSERT_EQ(f.code(), Errc::io) << f.to_string();
        if (c->segs_used() == used) {  // the kset's fence failed, no switch: retry it
            ASSERT_TRUE(c->flush().ok()) << "flush " << i;
            acked[sector] = seed;
            continue;
        }
        cut_sector = sector;
        cut_seed = seed;
        break;
    }
    ASSERT_NE(cut_seed, 0u) << "the log never moved to a new segment: the test checked nothing";
    c.reset();  // the power goes (close_on_destroy is off): nothing more is written
    auto again = FCache::open(borrow(pmem), borrow(disk), testutil::small_options());
    ASSERT_TRUE(again.ok()) << "ORACLE VIOLATION: no replay after the cut: "
                            << again.status().to_string();
    c = std::move(again.value());
    Status inv = c->check_invariants();
    ASSERT_TRUE(inv.ok()) << "ORACLE VIOLATION after replay: " << inv.to_string();
    std::vector<std::byte> out(512);
    for (std::uint64_t s = 0; s < kSectors; ++s) {
        ASSERT_TRUE(c->read(s * 512, out).ok()) << "sector " << s;
        const bool old_ok =
            acked[s] == 0 ? out == std::vector<std::byte>(512) : out == pattern(512, acked[s]);
        const bool cut_ok = s == cut_sector && out == pattern(512, cut_seed);
        EXPECT_TRUE(old_ok || cut_ok) << "ORACLE VIOLATION: sector " << s << " after replay";
    }
    // The log goes on from the segment the cut left it in, through two more switches.
    int switches = 0;
    for (std::uint64_t n = 0; switches < 2 && n < 20000; ++n, ++i) {
        const std::uint32_t seg = c->key_head().seg;
        ASSERT_TRUE(c->write((i % kSectors) * 512, pattern(512, 7)).ok()) << "write " << i;
        ASSERT_TRUE(c->flush().ok()) << "flush " << i;
        if (c->key_head().seg != seg) ++switches;
    }
    EXPECT_EQ(switches, 2);
    inv = c->check_invariants();
    EXPECT_TRUE(inv.ok()) << "ORACLE VIOLATION: " << inv.to_string();
}

// The same through the simulator's pmem (SimPmem::fail_next_drains): a failed fence fails the
// FLUSH and no kset is taken for written; the next FLUSH makes it durable.
TEST(DurabilityErrors, SimPmemDrainFailureFailsFlush) {
    sim::Machine m({format::kSegmentsOffsetBytes + 8 * (64 << 10), 1 << 20, false},
                   sim::PmemMode::x86);
    CacheOptions o;
    o.geometry.segment_bytes = 64 << 10;
    o.close_on_destroy = false;
    auto c = testutil::format_or_fail(m.pmem, m.block, o);
    const auto a = pattern(4096, 9);
    ASSERT_TRUE(c->write(8192, a).ok());
    m.pmem.fail_next_drains(2);
    EXPECT_FALSE(c->flush().ok()) << "ORACLE VIOLATION: flush acknowledged, drain failed";
    EXPECT_FALSE(c->flush().ok()) << "ORACLE VIOLATION: flush acknowledged, drain failed";
    EXPECT_EQ(c->counters().ksets_written, 0u);  // nothing taken for durable
    ASSERT_TRUE(c->flush().ok());
    EXPECT_EQ(c->counters().ksets_written, 1u);
    EXPECT_EQ(m.pmem.pending_words(), 0u);
    ASSERT_TRUE(c->close().ok());
    c.reset();
    auto again = std::move(
        Cache<sim::SimPmem, sim::SimBlockDevice>::open(borrow(m.pmem), borrow(m.block), o).value());
    std::vector<std::byte> out(4096);
    ASSERT_TRUE(again->read(8192, out).ok());
    EXPECT_TRUE(out == a);
}

// The simulator's pmem behind the same fault injection (its own fail_next_drains can only fail
// the next fences, not the one after them).
using FenceGate = FaultyPmemOver<sim::SimPmem&>;
static_assert(PmemDevice<FenceGate>);

// The failed log switch on simulated x86 pmem, cut by a power failure right after the failed
// fence: every crash image of what is still pending (the new segment's zeroed header when its
// fence failed, the link to it when the link's fence failed) must recover, with every
// FLUSH-acknowledged sector intact and the write of the failed FLUSH old or new.
TEST(DurabilityErrors, EveryCrashImageOfAFailedLogSwitchRecovers) {
    using GCache = Cache<FenceGate, sim::SimBlockDevice>;
    constexpr std::uint64_t kSegBytes = 64 << 10, kSectors = 1024;
    for (const std::uint64_t fences_ok : {0u, 1u}) {  // 0: the zeroing's fence fails; 1: the link's
        SCOPED_TRACE("fences passing before the failed one: " + std::to_string(fences_ok));
        sim::Machine m({format::kSegmentsOffsetBytes + 16 * kSegBytes, 8 << 20, false},
                       sim::PmemMode::x86);
        FenceGate gate(m.pmem);
        CacheOptions o;
        o.geometry.segment_bytes = kSegBytes;
        o.close_on_destroy = false;
        auto c = testutil::format_or_fail(gate, m.block, o);
        std::vector<std::uint32_t> acked(kSectors, 0);  // pattern seed per sector, 0 = none
        std::uint64_t cut_sector = 0;
        std::uint32_t cut_seed = 0;
        for (std::uint64_t i = 0; i < 4000 && cut_seed == 0; ++i) {
            const std::uint64_t sector = i % kSectors;
            const auto seed = static_cast<std::uint32_t>(i + 1);
            ASSERT_TRUE(c->write(sector * 512, pattern(512, seed)).ok()) << "write " << i;
            const std::uint32_t used = c->segs_used();
            gate.fail_drain_after(fences_ok);
            const Status f = c->flush();
            if (!f.ok() && c->segs_used() != used) {  // the close took a segment: cut here
                cut_sector = sector;
                cut_seed = seed;
                break;
            }
            if (!f.ok()) {  // the end marker's or the kset's fence: the retry makes it durable
                ASSERT_TRUE(c->flush().ok()) << "flush " << i;
            }
            acked[sector] = seed;
        }
        ASSERT_NE(cut_seed, 0u) << "the log never moved to a new segment: nothing was checked";
        c.reset();  // the power goes: nothing more is written
        // The zeroing stores nothing on a never-used segment (its header is zero already), so
        // only the link case is sure to leave stores pending.
        if (fences_ok == 1) {
            ASSERT_GT(m.pmem.pending_words(), 0u) << "the link is not pending: nothing to explore";
        }
        sim::PmemExplorer ex(m.pmem, m.pmem.capture(), {.seed = fences_ok + 1});
        std::vector<std::byte> out(512);
        for (std::uint64_t state = 0; state < ex.state_count(); ++state) {
            SCOPED_TRACE("crash image " + std::to_string(state) + " of " +
                         std::to_string(ex.state_count()));
            ex.apply(state);
            {
                auto r = GCache::open(borrow(gate), borrow(m.block), o);
                ASSERT_TRUE(r.ok())
                    << "ORACLE VIOLATION: recovery refused: " << r.status().to_string();
                auto& rc = *r.value();
                const Status inv = rc.check_invariants();
                EXPECT_TRUE(inv.ok()) << "ORACLE VIOLATION: " << inv.to_string();
                for (std::uint64_t s = 0; s < kSectors; ++s) {
                    ASSERT_TRUE(rc.read(s * 512, out).ok()) << "sector " << s;
                    const bool old_ok = acked[s] == 0 ? out == std::vector<std::byte>(512)
                                                      : out == pattern(512, acked[s]);
                    const bool cut_ok = s == cut_sector && out == pattern(512, cut_seed);
                    EXPECT_TRUE(old_ok || cut_ok)
                        << "ORACLE VIOLATION: sector " << s << " after recovery";
                }
            }
            ex.rollback();
        }
        if (fences_ok == 1) {
            EXPECT_GT(ex.state_count(), 1u);
        }
    }
}

}  // namespace
}  // namespace pcache
