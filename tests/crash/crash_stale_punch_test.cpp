// The replay state of mutant M22, built directly (no seed search): a kset holds an older
// read-miss fill F of range R in a segment that stays live and, after it, a newer write W of R in
// a segment GC reclaimed; the crash came after GC persisted that segment's new generation and
// before key_tail passed the kset. Replay must skip W *and* punch R, so reads of R come from the
// backing device (which holds W: GC only reclaims written-back data) instead of F.
//
// The crash campaigns reached this state through kset buffers chosen by stripe sharing one data
// head. With lanes (docs/design.md "Lanes") a sequential workload cannot reach it any more:
// older keys of a range are logged no later than newer ones, and a lane's keys take its own data
// head's segments in log order, so W's segment is reclaimed only after F's. The kernel (no
// cross-lane rule) and concurrent writers still can, so the punch stays, and this test keeps M22
// caught (CrashRegression.* is M22's filter in scripts/mutants.table).
#include <gtest/gtest.h>

#include "cache_fixture.hpp"
#include "pcache/format/codec.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
using testutil::pattern;

TEST(CrashRegression, StaleKeyPunchesItsRangeOverAnOlderFill) {
    MemPmem pmem(testutil::small_pmem_bytes(16));
    MemBlockDevice disk(16 << 20);
    CacheOptions o = testutil::small_options();
    o.n_lanes = 1;
    const format::Geometry& geo = o.geometry;
    constexpr std::uint64_t kR = 1 << 20;
    const auto older = pattern(4096, 1), newer = pattern(4096, 2);
    ASSERT_TRUE(disk.write(kR, older, false).ok());
    auto c = testutil::format_or_fail(pmem, disk, o);

    std::vector<std::byte> buf(4096);
    ASSERT_TRUE(c->read(kR, buf).ok());  // miss: F, a CLEAN key at the start of segment S1
    // Fill the rest of S1 (one key of another range), so that W lands in the next segment.
    const auto rest = pattern(geo.seg_data_bytes() - 4096, 3);
    ASSERT_TRUE(c->write(2 << 20, rest).ok());
    ASSERT_TRUE(c->write(kR, newer).ok());  // W in segment S2
    ASSERT_TRUE(c->flush().ok());           // one kset: F, rest, W
    ASSERT_TRUE(c->close().ok());
    for (int i = 0; i < 100 && !c->is_clean(); ++i) ASSERT_TRUE(c->writeback_step().status.ok());
    ASSERT_TRUE(c->is_clean());
    const LogPos kt = c->key_tail();
    c.reset();

    // The kset at key_tail (a fresh chain: cache segment i is physical segment i).
    std::vector<std::byte> window(format::kKsetBytesMax);
    const std::uint64_t at = geo.data_offset(kt.seg) + kt.off;
    ASSERT_TRUE(pmem.read(at, window).ok());
    auto v = format::decode_kset(window, 16, at);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    ASSERT_EQ(v->key_num(), 3u);
    const auto f = v->key(0), w = v->key(2);
    ASSERT_TRUE(f.off == kR && (f.flags & format::kKeyFlagClean));
    ASSERT_TRUE(w.off == kR && !(w.flags & format::kKeyFlagClean));
    ASSERT_NE(f.cache_seg_id, w.cache_seg_id);

    // What GC persists first when it reclaims S2: its generation + 1, in the other slot.
    const std::uint64_t gen_at = geo.segment_offset(w.cache_seg_id) + format::kSegCtrlOffsetBytes;
    std::vector<std::byte> slots(2 * format::kSegGenSlotStrideBytes);
    ASSERT_TRUE(pmem.read(gen_at, slots).ok());
    const auto latest = format::select_latest<format::SegGen>(
        std::span(slots).first(sizeof(format::SegGen)), gen_at,
        std::span(slots).subspan(format::kSegGenSlotStrideBytes, sizeof(format::SegGen)),
        gen_at + format::kSegGenSlotStrideBytes);
    ASSERT_TRUE(latest.has_value());
    ASSERT_EQ(latest->record.gen, w.seg_gen);
    format::SegGen bumped = latest->record;
    bumped.gen += 1;
    format::seal(bumped, static_cast<std::uint8_t>(latest->record.header.seq + 1));
    ASSERT_TRUE(pmem.write(gen_at + (1 - latest->slot) * format::kSegGenSlotStrideBytes,
                           format::to_bytes(bumped), kPmemFlushCache)
                    .ok());

    auto reopened = MemCache::open(borrow(pmem), borrow(disk), o);
    ASSERT_TRUE(reopened.ok()) << reopened.status().to_string();
    c = std::move(reopened.value());
    EXPECT_EQ(c->counters().replay_stale_keys, 1u);
    ASSERT_TRUE(c->read(kR, buf).ok());
    EXPECT_TRUE(buf == newer) << "ORACLE VIOLATION: replay skipped the stale newer key and kept "
                                 "the older read-miss fill of its range (older data resurrected)";
    EXPECT_TRUE(c->check_invariants().ok());
}

}  // namespace
}  // namespace pcache
