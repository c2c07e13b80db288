// Writeback straight from the pmem mapping (issue 17 item 4, PmemWritebackFromMapping): on a
// device without batches each run goes out from data() without a bounce copy; a direct write
// that fails is sent again through read() (the copy), so a page under the mapping that cannot
// be read is reported lost instead of stalling writeback, a backing error fails the step with
// dirty_tail in place, and an older run waiting in the copy path still lands before a newer
// overlapping run sent directly.
#include <gtest/gtest.h>

#include <algorithm>

#include "cache_fixture.hpp"

namespace pcache {
namespace {

using testutil::pattern;

// MemPmem that allows writeback from its mapping; reads of one range fail (a media error).
class MappedPmem {
public:
    explicit MappedPmem(std::uint64_t size) : mem_(size) {}
    std::uint64_t size() const { return mem_.size(); }
    const std::byte* data() const { return mem_.data(); }
    bool writeback_from_mapping() const { return mapping; }
    Status write(std::uint64_t off, std::span<const std::byte> src, unsigned flags) {
        return mem_.write(off, src, flags);
    }
    Status flush(std::uint64_t off, std::uint64_t len) { return mem_.flush(off, len); }
    Status drain() { return mem_.drain(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        if (off < bad_end && off + dst.size() > bad_off)
            return {Errc::io, "pmem read: injected media error"};
        return mem_.read(off, dst);
    }
    bool mapping = true;
    std::uint64_t bad_off = 0, bad_end = 0;

private:
    MemPmem mem_;
};
static_assert(PmemWritebackFromMapping<MappedPmem>);

// A MemBlockDevice (no batches) that records where each write's bytes came from. A write whose
// source overlaps the pmem's bad range fails as the kernel's copy would (EFAULT); `fail_src`
// makes the next write from inside [fail_lo, fail_hi) of the mapping fail once (transient);
// `fail_next` fails the next n calls (writes and flushes).
class RecordingBlock {
public:
    RecordingBlock(std::uint64_t size, const MappedPmem& pmem) : mem_(size), pmem_(pmem) {}
    std::uint64_t size() const { return mem_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) { return mem_.read(off, dst); }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        const std::byte* base = pmem_.data();
        const bool mapped = src.data() >= base && src.data() < base + pmem_.size();
        const std::uint64_t at = mapped ? static_cast<std::uint64_t>(src.data() - base) : 0;
        if (fail_next > 0) {
            --fail_next;
            return {Errc::io, "backing write: injected EIO"};
        }
        if (mapped && at < pmem_.bad_end && at + src.size() > pmem_.bad_off)
            return {Errc::io, "backing write: Bad address (EFAULT: poisoned source)"};
        if (mapped && fail_src && at < fail_hi && at + src.size() > fail_lo) {
            fail_src = false;
            return {Errc::io, "backing write: injected transient EIO"};
        }
        (mapped ? from_mapping : copied) += 1;
        if (mapped) direct.emplace_back(off, src.size());
        return mem_.write(off, src, fua);
    }
    Status flush() {
        if (fail_next > 0) {
            --fail_next;
            return {Errc::io, "backing flush: injected EIO"};
        }
        return mem_.flush();
    }
    const std::vector<std::byte>& bytes() const { return mem_.bytes(); }

    std::uint64_t from_mapping = 0, copied = 0, fail_next = 0, fail_lo = 0, fail_hi = 0;
    bool fail_src = false;
    std::vector<std::pair<std::uint64_t, std::uint64_t>>
        direct;  // (offset, bytes) from the mapping

private:
    MemBlockDevice mem_;
    const MappedPmem& pmem_;
};
static_assert(BlockDevice<RecordingBlock> && !BatchBlockDevice<RecordingBlock>);

using MCache = Cache<MappedPmem, RecordingBlock>;

struct Rig {
    MappedPmem pmem{testutil::small_pmem_bytes(16)};
    RecordingBlock disk{8 << 20, pmem};
    std::vector<std::string> log;
    std::unique_ptr<MCache> cache;
    Rig() {
        CacheOptions o = testutil::small_options();
        o.log = [this](const std::string& line) { log.push_back(line); };
        cache = testutil::format_or_fail(pmem, disk, o);
    }
    std::uint64_t find(const std::vector<std::byte>& needle) const {
        const std::byte* hit =
            std::search(pmem.data(), pmem.data() + pmem.size(), needle.begin(), needle.end());
        EXPECT_NE(hit, pmem.data() + pmem.size());
        return static_cast<std::uint64_t>(hit - pmem.data());
    }
    void writeback_until_clean() {
        for (int i = 0; i < 1000 && !cache->is_clean(); ++i) {
            auto r = cache->writeback_step();
            ASSERT_TRUE(r.status.ok()) << r.status.to_string();
            if (!r.progressed) {
                ASSERT_TRUE(cache->flush().ok());
            }
        }
        ASSERT_TRUE(cache->is_clean());
    }
};

// Sequential and scattered extents; the model is what the backing device must hold.
std::vector<std::byte> write_mix(MCache& c) {
    std::vector<std::byte> model(8 << 20);
    for (std::uint32_t i = 0; i < 60; ++i) {
        const auto d = pattern(i % 3 == 0 ? 16384 : 4096, i);
        const std::uint64_t off = i < 30 ? i * 16384ull : (i * 7919ull % 400) * 16384;
        EXPECT_TRUE(c.write(off, d).ok());
        std::copy(d.begin(), d.end(), model.begin() + static_cast<std::ptrdiff_t>(off));
    }
    EXPECT_TRUE(c.flush().ok());
    return model;
}

TEST(WritebackFromMapping, RunsGoOutFromTheMappingWithoutACopy) {
    for (bool mapping : {true, false}) {
        Rig s;
        s.pmem.mapping = mapping;
        const auto model = write_mix(*s.cache);
        s.writeback_until_clean();
        EXPECT_TRUE(s.disk.bytes() == model) << "mapping " << mapping;
        if (mapping) {
            EXPECT_GT(s.disk.from_mapping, 0u);
            EXPECT_EQ(s.disk.copied, 0u) << "a run went through the bounce copy";
        } else {
            EXPECT_EQ(s.disk.from_mapping, 0u) << "writeback_from_mapping() false was ignored";
        }
    }
}

// A page under the mapping that cannot be read: the direct write fails (EFAULT), the copy finds
// the media error, the extent is reported lost, and writeback goes on (never stuck).
TEST(WritebackFromMapping, AnUnreadableSourceIsReportedLostNotRetriedForever) {
    Rig s;
    const auto a = pattern(8192, 1), b = pattern(8192, 2);
    ASSERT_TRUE(s.cache->write(1 << 20, a).ok());
    ASSERT_TRUE(s.cache->write(2 << 20, b).ok());
    ASSERT_TRUE(s.cache->flush().ok());
    const std::uint64_t at = s.find(a);
    s.pmem.bad_off = at + 4096;
    s.pmem.bad_end = at + 4096 + 512;
    s.writeback_until_clean();
    EXPECT_EQ(s.cache->counters().writeback_lost_extents, 1u);
    ASSERT_EQ(s.log.size(), 1u);
    EXPECT_NE(s.log[0].find("[1048576, +8192)"), std::string::npos) << s.log[0];
    const auto& d = s.disk.bytes();
    EXPECT_TRUE(std::all_of(d.begin() + (1 << 20), d.begin() + (1 << 20) + 8192, [](std::byte x) {
        return x == std::byte{0};
    })) << "the lost extent reached the backing device";
    EXPECT_TRUE(std::equal(b.begin(), b.end(), d.begin() + (2 << 20)));
    std::vector<std::byte> out(4096);
    EXPECT_FALSE(s.cache->read((1 << 20) + 4096, out).ok());
}

// A direct write fails and so does its copy (or the flush): the step fails, dirty_tail stays,
// and a later step writes everything.
TEST(WritebackFromMapping, BackingErrorsKeepDirtyTailAndAreRetried) {
    for (std::uint64_t fails : {2, 3}) {  // direct + copy; direct + copy + the write after
        Rig s;
        const auto model = write_mix(*s.cache);
        const LogPos before = s.cache->dirty_tail();
        s.disk.fail_next = fails;
        auto r = s.cache->writeback_step();
        EXPECT_FALSE(r.status.ok()) << "a failed backing write was not reported";
        EXPECT_TRUE(s.cache->dirty_tail() == before) << "dirty_tail passed an unwritten run";
        s.writeback_until_clean();
        EXPECT_TRUE(s.disk.bytes() == model);
        EXPECT_EQ(s.cache->counters().writeback_lost_extents, 0u);
    }
}

// An older run waiting in the copy path (its direct write failed once) must reach the backing
// device before a newer overlapping run that goes out directly: the newest bytes land last.
TEST(WritebackFromMapping, AnOlderRunInTheCopyPathLandsBeforeANewerDirectOne) {
    Rig s;
    const auto older = pattern(16384, 10), newer = pattern(8192, 11);
    ASSERT_TRUE(s.cache->write(65536, older).ok());
    ASSERT_TRUE(s.cache->flush().ok());  // closes the kset: the newer write is in a later one
    ASSERT_TRUE(s.cache->write(65536 + 4096, newer).ok());
    ASSERT_TRUE(s.cache->flush().ok());
    const std::uint64_t at = s.find(older);
    s.disk.fail_src = true;  // the older run's direct write fails once
    s.disk.fail_lo = at;
    s.disk.fail_hi = at + older.size();
    s.writeback_until_clean();
    EXPECT_FALSE(s.disk.fail_src) << "the injected failure never happened";
    EXPECT_GT(s.disk.copied, 0u);
    std::vector<std::byte> want = older;
    std::copy(newer.begin(), newer.end(), want.begin() + 4096);
    const auto& d = s.disk.bytes();
    EXPECT_TRUE(std::equal(want.begin(), want.end(), d.begin() + 65536))
        << "an older run landed after a newer overlapping one";
}

// One lane (one data head), a flush between writes: keys in separate ksets whose bytes continue
// each other on the backing device and in pmem.
void write_keys(Rig& s, const std::vector<std::pair<std::uint64_t, std::vector<std::byte>>>& ws,
                std::initializer_list<std::size_t> flush_after) {
    for (std::size_t i = 0; i < ws.size(); ++i) {
        ASSERT_TRUE(s.cache->write(ws[i].first, ws[i].second, WriteOptions{.lane = 0}).ok());
        if (std::find(flush_after.begin(), flush_after.end(), i) != flush_after.end()) {
            ASSERT_TRUE(s.cache->flush().ok());
        }
    }
    ASSERT_TRUE(s.cache->flush().ok());
}

// A sequential write fills ksets one after the other (128 keys each): the next kset's keys that
// continue the run join it, so the backing device gets one request, not one per kset.
TEST(WritebackFromMapping, ARunContinuesAcrossKsets) {
    Rig s;
    const auto a = pattern(4096, 20), b = pattern(4096, 21), c = pattern(4096, 22);
    write_keys(s, {{0, a}, {4096, b}, {8192, c}}, {1});  // ksets {a, b} and {c}
    ASSERT_EQ(s.find(c), s.find(a) + 8192) << "the keys' bytes are not contiguous in pmem";
    s.writeback_until_clean();
    using W = std::pair<std::uint64_t, std::uint64_t>;
    EXPECT_EQ(s.disk.direct, (std::vector<W>{{0, 12288}})) << "one request per kset";
    const auto& d = s.disk.bytes();
    EXPECT_TRUE(std::equal(a.begin(), a.end(), d.begin()));
    EXPECT_TRUE(std::equal(c.begin(), c.end(), d.begin() + 8192));
}

// The run kept open across ksets still goes out before a newer key overwriting part of it: the
// later kset's keys, by offset, first [0, 4 KiB) (newer than the open run's bytes there), then
// [8, 12 KiB) (continues the open run on the backing device but not in pmem).
TEST(WritebackFromMapping, AnOpenRunLandsBeforeANewerKsetOverwritesIt) {
    Rig s;
    const auto a0 = pattern(4096, 30), a1 = pattern(4096, 31), b = pattern(4096, 32),
               c = pattern(4096, 33);
    write_keys(s, {{0, a0}, {4096, a1}, {8192, b}, {0, c}}, {1});  // ksets {a0, a1}, {b, c}
    s.writeback_until_clean();
    using W = std::pair<std::uint64_t, std::uint64_t>;
    EXPECT_EQ(s.disk.direct, (std::vector<W>{{0, 8192}, {0, 4096}, {8192, 4096}}));
    const auto& d = s.disk.bytes();
    EXPECT_TRUE(std::equal(c.begin(), c.end(), d.begin())) << "older bytes landed last";
    EXPECT_TRUE(std::equal(a1.begin(), a1.end(), d.begin() + 4096));
    EXPECT_TRUE(std::equal(b.begin(), b.end(), d.begin() + 8192));
}

// A run spanning two ksets whose later key cannot be read: the direct write fails, the copy
// sends the readable key of the first kset and reports only the unreadable one lost.
TEST(WritebackFromMapping, AnUnreadableKeyInARunAcrossKsetsIsTheOnlyOneLost) {
    Rig s;
    const auto a = pattern(4096, 40), b = pattern(4096, 41);
    write_keys(s, {{1 << 20, a}, {(1 << 20) + 4096, b}}, {0});  // ksets {a} and {b}
    const std::uint64_t at = s.find(b);
    ASSERT_EQ(at, s.find(a) + 4096) << "the keys' bytes are not contiguous in pmem";
    s.pmem.bad_off = at + 512;
    s.pmem.bad_end = at + 1024;
    s.writeback_until_clean();
    EXPECT_EQ(s.cache->counters().writeback_lost_extents, 1u);
    ASSERT_EQ(s.log.size(), 1u);
    EXPECT_NE(s.log[0].find("[1052672, +4096)"), std::string::npos) << s.log[0];
    const auto& d = s.disk.bytes();
    EXPECT_TRUE(std::equal(a.begin(), a.end(), d.begin() + (1 << 20)));
    EXPECT_TRUE(std::all_of(d.begin() + (1 << 20) + 4096, d.begin() + (1 << 20) + 8192,
                            [](std::byte x) { return x == std::byte{0}; }));
    std::vector<std::byte> out(4096);
    EXPECT_FALSE(s.cache->read((1 << 20) + 4096, out).ok());
    EXPECT_TRUE(s.cache->read(1 << 20, out).ok());
}

}  // namespace
}  // namespace pcache
