// The public API's lifecycle (docs/api.md): format, open and open_read_only are separate calls
// and a refused call writes nothing; a read-only cache writes nothing; a cache owns its
// devices and closes on destruction; a write says how much it did; a Runtime starts once.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "cache_fixture.hpp"
#include "pcache/runtime.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
using testutil::pattern;
using testutil::read_or_fail;
using testutil::small_pmem_bytes;

// Default options (close_on_destroy on) with the small test geometry.
CacheOptions options() {
    CacheOptions o;
    o.geometry.segment_bytes = 256 * 1024;
    return o;
}

std::vector<std::byte> bytes_of(MemBlockDevice& d) {
    std::vector<std::byte> out(d.size());
    EXPECT_TRUE(d.read(0, out).ok());
    return out;
}

TEST(Api, OpenOfABlankDeviceFailsNamingFormatAndWritesNothing) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    const auto pmem_before = testutil::snapshot(pmem);
    const auto disk_before = bytes_of(disk);
    for (bool read_only : {false, true}) {
        auto c = read_only ? MemCache::open_read_only(borrow(pmem), borrow(disk), options())
                           : MemCache::open(borrow(pmem), borrow(disk), options());
        ASSERT_FALSE(c.ok());
        EXPECT_EQ(c.code(), Errc::not_found) << c.status().to_string();
        EXPECT_NE(c.status().message().find("format"), std::string::npos) << c.status().message();
    }
    EXPECT_EQ(testutil::snapshot(pmem), pmem_before);
    EXPECT_EQ(bytes_of(disk), disk_before);
}

TEST(Api, FormatRefusesAnExistingCacheUnlessForced) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    {
        auto c = MemCache::format(borrow(pmem), borrow(disk), options());
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        ASSERT_TRUE((*c)->write(0, pattern(4096, 1), {.fua = true}).ok());
    }
    const auto before = testutil::snapshot(pmem);
    auto refused = MemCache::format(borrow(pmem), borrow(disk), options());
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("force_format"), std::string::npos)
        << refused.status().message();
    EXPECT_EQ(testutil::snapshot(pmem), before);
    CacheOptions forced = options();
    forced.force_format = true;
    auto f = MemCache::format(borrow(pmem), borrow(disk), forced);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    EXPECT_EQ(read_or_fail(**f, 0, 4096), std::vector<std::byte>(4096));  // a new, empty cache
}

// Replays into memory, serves reads (misses are not filled), refuses every mutation with
// Errc::read_only, and never writes either device, not even when destroyed.
TEST(Api, ReadOnlyOpenWritesNothing) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    const auto a = pattern(8192, 7);
    {
        auto c = MemCache::format(borrow(pmem), borrow(disk), options());
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        ASSERT_TRUE((*c)->write(65536, a).ok());
        ASSERT_TRUE((*c)->write(1 << 20, pattern(4096, 8)).ok());  // buffered, then closed
    }
    const auto pmem_before = testutil::snapshot(pmem);
    const auto disk_before = bytes_of(disk);
    {
        auto c = MemCache::open_read_only(borrow(pmem), borrow(disk), options());
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        MemCache& r = **c;
        EXPECT_TRUE(r.read_only());
        EXPECT_EQ(read_or_fail(r, 65536, 8192), a);
        EXPECT_EQ(read_or_fail(r, 1 << 20, 4096), pattern(4096, 8));
        // A miss: no fill.
        EXPECT_EQ(read_or_fail(r, 4 << 20, 65536), std::vector<std::byte>(65536));
        const WriteResult w = r.write(0, pattern(4096, 9));
        EXPECT_EQ(w.code(), Errc::read_only);
        EXPECT_EQ(w.done_bytes, 0u);
        EXPECT_EQ(r.flush().code(), Errc::read_only);
        EXPECT_EQ(r.close().code(), Errc::read_only);
        EXPECT_EQ(r.writeback_step().status.code(), Errc::read_only);
        EXPECT_EQ(r.gc_step().status.code(), Errc::read_only);
        EXPECT_EQ(r.message("gc_percent 50").code(), Errc::read_only);
        Runtime<MemCache> rt(r);
        EXPECT_EQ(rt.start().code(), Errc::read_only);
    }
    EXPECT_EQ(testutil::snapshot(pmem), pmem_before);
    EXPECT_EQ(bytes_of(disk), disk_before);
}

// Destroying a cache closes it: an acknowledged write that was neither FUA nor flushed is in
// the log afterwards. Without the close (close_on_destroy off: a power cut) it is not.
TEST(Api, DestructionCloses) {
    for (bool close_on_destroy : {true, false}) {
        MemPmem pmem(small_pmem_bytes(16));
        MemBlockDevice disk(8 << 20);
        CacheOptions o = options();
        o.close_on_destroy = close_on_destroy;
        {
            auto c = MemCache::format(borrow(pmem), borrow(disk), o);
            ASSERT_TRUE(c.ok()) << c.status().to_string();
            ASSERT_TRUE((*c)->write(8192, pattern(4096, 3)).ok());
        }
        auto c = MemCache::open(borrow(pmem), borrow(disk), o);
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        EXPECT_EQ(read_or_fail(**c, 8192, 4096),
                  close_on_destroy ? pattern(4096, 3) : std::vector<std::byte>(4096))
            << "close_on_destroy " << close_on_destroy;
    }
}

// A backing device whose flush fails: the close on destruction logs the error.
class NoFlushDevice {
public:
    explicit NoFlushDevice(std::uint64_t bytes) : mem_(bytes) {}
    std::uint64_t size() const { return mem_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> out) { return mem_.read(off, out); }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        return mem_.write(off, src, fua);
    }
    Status flush() { return {Errc::io, "injected flush error"}; }

private:
    MemBlockDevice mem_;
};

TEST(Api, ACloseErrorOnDestructionIsLogged) {
    using C = Cache<MemPmem, NoFlushDevice>;
    std::vector<std::string> lines;
    CacheOptions o = options();
    o.log = [&](const std::string& line) { lines.push_back(line); };
    {
        auto c = C::format(std::make_shared<MemPmem>(small_pmem_bytes(16)),
                           std::make_shared<NoFlushDevice>(8 << 20), o);
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        ASSERT_TRUE((*c)->write(0, pattern(4096, 1)).ok());
    }
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_NE(lines[0].find("injected flush error"), std::string::npos) << lines[0];
}

// The cache shares ownership of devices passed as shared_ptr: they live as long as it does.
TEST(Api, TheCacheKeepsItsDevicesAlive) {
    auto pmem = std::make_shared<MemPmem>(small_pmem_bytes(16));
    auto disk = std::make_shared<MemBlockDevice>(8 << 20);
    std::weak_ptr<MemPmem> wp = pmem;
    std::weak_ptr<MemBlockDevice> wd = disk;
    auto c = MemCache::format(std::move(pmem), std::move(disk), options());
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_FALSE(wp.expired());
    ASSERT_TRUE((*c)->write(0, pattern(4096, 5), {.fua = true}).ok());
    EXPECT_EQ(read_or_fail(**c, 0, 4096), pattern(4096, 5));
    c = Status(Errc::io, "dropped");
    EXPECT_TRUE(wp.expired());
    EXPECT_TRUE(wd.expired());
}

TEST(Api, NullDevicesAreRefused) {
    auto c = MemCache::open(nullptr, std::make_shared<MemBlockDevice>(8 << 20), options());
    EXPECT_EQ(c.code(), Errc::invalid_argument);
}

// A write larger than the free space stops with busy and says how much it did; the rest goes
// on from there once writeback and GC made room.
TEST(Api, ABusyWriteReportsWhatItDid) {
    MemPmem pmem(small_pmem_bytes(8));
    MemBlockDevice disk(32 << 20);
    auto c = testutil::format_or_fail(pmem, disk, options());
    const auto data = pattern(8 << 20, 11);  // 4x the cache
    std::uint64_t done = 0;
    bool was_busy = false;
    for (int round = 0; round < 10000 && done < data.size(); ++round) {
        const WriteResult w = c->write(done, std::span(data).subspan(done));
        EXPECT_LE(w.done_bytes, data.size() - done);
        done += w.done_bytes;
        if (w.ok()) {
            EXPECT_EQ(done, data.size());
            break;
        }
        ASSERT_EQ(w.code(), Errc::busy) << w.status.to_string();
        was_busy = true;
        (void)c->flush();
        while (c->writeback_step().progressed || c->gc_step().progressed) {
        }
    }
    EXPECT_TRUE(was_busy);
    ASSERT_EQ(done, data.size());
    EXPECT_EQ(read_or_fail(*c, 0, data.size()), data);
}

TEST(Api, ARuntimeStartsOnce) {
    MemPmem pmem(small_pmem_bytes(16));
    MemBlockDevice disk(8 << 20);
    auto c = testutil::format_or_fail(pmem, disk, options());
    {
        Runtime<MemCache> rt(*c);
        ASSERT_TRUE(rt.start().ok());
        EXPECT_TRUE(rt.running());
        EXPECT_EQ(rt.start().code(), Errc::invalid_argument);
        rt.stop();
        EXPECT_FALSE(rt.running());
        EXPECT_EQ(rt.start().code(), Errc::invalid_argument);
    }
    Runtime<MemCache> rt(*c);  // not started: a blocking write on a full cache gives up
    RuntimeOptions ro;
    EXPECT_EQ(ro.write_timeout, std::chrono::minutes(5));
    EXPECT_EQ(ro.flush_timeout, std::chrono::seconds(10));
    std::uint64_t done = 0;
    WriteResult w;
    const auto data = pattern(4 << 20, 2);
    w = rt.write_blocking(0, data);
    done = w.done_bytes;
    EXPECT_EQ(w.code(), Errc::busy);
    EXPECT_NE(w.status.message().find("not running"), std::string::npos) << w.status.message();
    EXPECT_GT(done, 0u);
    EXPECT_LT(done, data.size());
}

// A Cache destroyed under a Runtime would leave threads on a dead object: it aborts, loudly.
TEST(ApiDeathTest, DestroyingACacheUnderItsRuntimeAborts) {
    EXPECT_DEATH(
        {
            MemPmem pmem(small_pmem_bytes(16));
            MemBlockDevice disk(8 << 20);
            auto c = testutil::format_or_fail(pmem, disk, options());
            auto rt = std::make_unique<Runtime<MemCache>>(*c);
            c.reset();
        },
        "destroyed before the Runtime");
}

}  // namespace
}  // namespace pcache
