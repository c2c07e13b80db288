// The key-log walker (format/log_walk.hpp) over a small in-memory log, and the always-on check
// macros (verify.hpp): every bound of the walk ends it with Errc::corrupt, never a hang or an
// out-of-range read; the visitor's answers and errors come back unchanged.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "pcache/format/log_walk.hpp"
#include "pcache/verify.hpp"

namespace pcache {
namespace {

using format::KsetKind;

// n_segs data areas of data_bytes each, back to back; reads outside the image fail.
struct MemLog {
    std::uint32_t segs = 3;
    std::uint64_t data_bytes = 4096;
    std::vector<std::byte> image = std::vector<std::byte>(segs * data_bytes);
    std::uint64_t reads = 0;
    bool fail_reads = false;

    std::uint32_t n_segs() const { return segs; }
    std::uint64_t seg_data_bytes() const { return data_bytes; }
    std::uint64_t log_addr(LogPos p) const { return p.seg * data_bytes + p.off; }
    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        ++const_cast<MemLog*>(this)->reads;
        if (fail_reads) return {Errc::io, "media error"};
        if (off > image.size() || dst.size() > image.size() - off)
            return {Errc::invalid_argument, "read outside the image"};
        std::memcpy(dst.data(), image.data() + off, dst.size());
        return {};
    }

    // A normal kset of `keys` keys at `p`; returns the position after it.
    LogPos put_kset(LogPos p, std::uint32_t keys) {
        std::vector<std::byte> k(format::kset_bytes(keys));
        const format::KsetHeader h{0, keys, 0, 0};
        std::memcpy(k.data(), &h, sizeof h);
        for (std::uint32_t i = 0; i < keys; ++i) {
            const format::KeyOnMedia key{4096ull * i, 4096, 0, 2, 4096 * 0, 0, 0, 0};
            std::memcpy(k.data() + format::kset_bytes(i), &key, sizeof key);
        }
        format::seal_kset(k);
        std::memcpy(image.data() + log_addr(p), k.data(), k.size());
        return {p.seg, p.off + static_cast<std::uint32_t>(k.size())};
    }
    void put_last(LogPos p, std::uint32_t next) {
        const auto b = format::to_bytes(format::make_last_kset(next));
        std::memcpy(image.data() + log_addr(p), b.data(), b.size());
    }
};

struct Seen {
    LogPos pos, next;
    KsetKind kind;
    std::uint32_t keys;
    bool past_mark;
};

Result<WalkEnd> walk(const MemLog& log, const WalkSpec& spec, std::vector<Seen>& seen,
                     std::size_t stop_after = SIZE_MAX) {
    return walk_log(log, spec, [&](const KsetAt& at) -> Result<WalkStep> {
        seen.push_back({at.pos, at.next, at.view.kind, at.view.key_num(), at.past_mark});
        return seen.size() >= stop_after ? WalkStep::stop : WalkStep::next;
    });
}

TEST(LogWalk, EmptyLogEndsAtItsStart) {
    MemLog log;
    std::vector<Seen> seen;
    auto r = walk(log, {.from = {1, 0}}, seen);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_TRUE(r->end_marker);
    EXPECT_EQ(r->pos, (LogPos{1, 0}));
    EXPECT_FALSE(r->end_reason.empty());
    EXPECT_TRUE(seen.empty());
}

TEST(LogWalk, VisitsEveryKsetInOrderAcrossALastHop) {
    MemLog log;
    LogPos p = log.put_kset({0, 0}, 2);
    const LogPos second = p;
    p = log.put_kset(p, 1);
    log.put_last(p, 1);
    const LogPos last = p;
    const LogPos end = log.put_kset({1, 0}, 3);
    std::vector<Seen> seen;
    auto r = walk(log, {.from = {0, 0}, .mark = second}, seen);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_EQ(seen.size(), 4u);
    EXPECT_EQ(seen[0].pos, (LogPos{0, 0}));
    EXPECT_EQ(seen[0].next, second);
    EXPECT_EQ(seen[0].keys, 2u);
    EXPECT_FALSE(seen[0].past_mark);
    EXPECT_TRUE(seen[1].past_mark);
    EXPECT_EQ(seen[2].pos, last);
    EXPECT_EQ(seen[2].kind, KsetKind::last);
    EXPECT_EQ(seen[2].next, (LogPos{1, 0}));
    EXPECT_EQ(seen[3].pos, (LogPos{1, 0}));
    EXPECT_EQ(seen[3].keys, 3u);
    EXPECT_TRUE(r->end_marker);
    EXPECT_TRUE(r->mark_reached);
    EXPECT_EQ(r->pos, end);
    EXPECT_EQ(r->ksets, 4u);
}

TEST(LogWalk, StopEndsTheWalkAfterTheKset) {
    MemLog log;
    const LogPos second = log.put_kset({0, 0}, 1);
    log.put_kset(second, 1);
    std::vector<Seen> seen;
    auto r = walk(log, {.from = {0, 0}}, seen, 1);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(seen.size(), 1u);
    EXPECT_FALSE(r->end_marker);
    EXPECT_EQ(r->pos, second);
}

TEST(LogWalk, UntilIsNotReadAndMustBeReached) {
    MemLog log;
    const LogPos second = log.put_kset({0, 0}, 1);
    const LogPos head = log.put_kset(second, 1);
    std::vector<Seen> seen;
    auto r = walk(log, {.from = {0, 0}, .until = second}, seen);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(seen.size(), 1u);
    EXPECT_EQ(r->pos, second);
    // An end marker before `until`: everything before it was durable, so the log is corrupt.
    seen.clear();
    auto bad = walk(log, {.from = {0, 0}, .until = LogPos{head.seg, head.off + 24}}, seen);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.code(), Errc::corrupt);
    EXPECT_NE(bad.status().message().find("key_head"), std::string::npos) << bad.status().message();
}

TEST(LogWalk, LastKsetCycleIsCorruptNotAHang) {
    MemLog log;
    log.put_last({0, 0}, 1);
    log.put_last({1, 0}, 2);
    log.put_last({2, 0}, 1);  // back to a kset segment of this walk
    std::vector<Seen> seen;
    auto r = walk(log, {.from = {0, 0}}, seen);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), Errc::corrupt);
    EXPECT_NE(r.status().message().find("cycle"), std::string::npos) << r.status().message();
    EXPECT_EQ(seen.size(), 3u);
    // Even back to the segment the walk started in.
    log.put_last({2, 0}, 0);
    seen.clear();
    EXPECT_EQ(walk(log, {.from = {0, 0}}, seen).code(), Errc::corrupt);
}

TEST(LogWalk, PositionOutsideTheDataAreasIsCorrupt) {
    MemLog log;
    std::vector<Seen> seen;
    EXPECT_EQ(walk(log, {.from = {3, 0}}, seen).code(), Errc::corrupt);
    EXPECT_EQ(walk(log, {.from = {0, 4097}}, seen).code(), Errc::corrupt);
    EXPECT_EQ(log.reads, 0u);  // checked before anything is read
    // The very end of a data area is a position (an end: no room for a header), not an error.
    auto r = walk(log, {.from = {0, 4096}}, seen);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->end_marker);
}

TEST(LogWalk, KsetLeavingNoRoomForALastKsetIsCorrupt) {
    MemLog log;
    // A 31-key kset that ends 8 B before the end of the 4096 B data area.
    const LogPos at{0, static_cast<std::uint32_t>(4096 - 8 - format::kset_bytes(31))};
    log.put_kset(at, 31);
    std::vector<Seen> seen;
    auto r = walk(log, {.from = at}, seen);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), Errc::corrupt);
    EXPECT_NE(r.status().message().find("no room for a LAST kset"), std::string::npos);
    EXPECT_TRUE(seen.empty());
}

TEST(LogWalk, VisitorAndReadErrorsComeBackUnchanged) {
    MemLog log;
    log.put_kset({0, 0}, 1);
    auto r = walk_log(log, {.from = {0, 0}}, [](const KsetAt&) -> Result<WalkStep> {
        return Status{Errc::busy, "visitor says no"};
    });
    EXPECT_EQ(r.code(), Errc::busy);
    EXPECT_EQ(r.status().message(), "visitor says no");
    log.fail_reads = true;
    std::vector<Seen> seen;
    EXPECT_EQ(walk(log, {.from = {0, 0}}, seen).code(), Errc::io);
}

TEST(LogWalk, BoundIsWhatTheCacheCanHold) {
    EXPECT_EQ(log_ksets_max(3, 4096), 3u * (4096 / format::kset_bytes(1) + 1));
}

// ---- verify.hpp ------------------------------------------------------------------------
Status checked_half(int x, int& out) {
    PCACHE_VERIFY(x % 2 == 0, "x = " + std::to_string(x) + " is odd");
    out = x / 2;
    return {};
}

TEST(Verify, FailedCheckIsACorruptStatusNamingTheCondition) {
    int out = 0;
    EXPECT_TRUE(checked_half(4, out).ok());
    EXPECT_EQ(out, 2);
    const Status s = checked_half(3, out);
#ifdef PCACHE_VERIFY_OFF
    EXPECT_TRUE(s.ok());
#else
    EXPECT_EQ(s.code(), Errc::corrupt);
    EXPECT_NE(s.message().find("invariant violated: x = 3 is odd (x % 2 == 0) at "),
              std::string::npos)
        << s.message();
    EXPECT_EQ(out, 2);  // nothing after the check ran
#endif
}

#ifndef PCACHE_VERIFY_OFF
TEST(VerifyDeathTest, FatalCheckAbortsWithTheMessage) {
    const int refs = 0;
    EXPECT_DEATH(PCACHE_VERIFY_FATAL(refs > 0, std::string("refs would go negative")),
                 "invariant violated: refs would go negative \\(refs > 0\\)");
}
#endif

}  // namespace
}  // namespace pcache
