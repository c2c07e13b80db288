// Runtime::flush_all over a backing device with transient I/O errors (a network device's EIO or
// dropped connection, issue 16): the failed step is retried with backoff and the flush ends
// clean; an error that persists without progress for RuntimeOptions::flush_retry_for is returned.
#include <gtest/gtest.h>

#include "cache_fixture.hpp"
#include "pcache/runtime.hpp"

namespace pcache {
namespace {

using testutil::pattern;

// MemBlockDevice whose next `fail_writes` writes fail with Errc::io (-1: all of them).
class FlakyDevice {
public:
    explicit FlakyDevice(std::uint64_t bytes) : mem_(bytes) {}
    std::uint64_t size() const { return mem_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) { return mem_.read(off, dst); }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        if (fail_writes != 0) {
            if (fail_writes > 0) --fail_writes;
            ++failures;
            return {Errc::io, "injected transient EIO"};
        }
        return mem_.write(off, src, fua);
    }
    Status flush() { return mem_.flush(); }
    const std::vector<std::byte>& bytes() const { return mem_.bytes(); }
    int fail_writes = 0;
    int failures = 0;

private:
    MemBlockDevice mem_;
};
using FlakyCache = Cache<MemPmem, FlakyDevice>;

RuntimeOptions fast(std::chrono::milliseconds give_up) {
    RuntimeOptions iv;
    iv.retry_max = std::chrono::milliseconds(2);
    iv.flush_retry_for = give_up;
    return iv;
}

TEST(FlushRetry, TransientBackingErrorsAreRetriedUntilClean) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    FlakyDevice disk(16 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    ASSERT_TRUE(c);
    const auto a = pattern(64 << 10, 1);
    ASSERT_TRUE(c->write(1 << 20, a).ok());
    disk.fail_writes = 5;
    Runtime<FlakyCache> rt(*c, fast(std::chrono::seconds(60)));
    Status s = rt.flush_all();
    ASSERT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(disk.failures, 5);
    EXPECT_TRUE(c->is_clean());
    EXPECT_TRUE(std::equal(a.begin(), a.end(), disk.bytes().begin() + (1 << 20)));
}

TEST(FlushRetry, PersistentErrorIsReturnedAfterTheRetryWindow) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    FlakyDevice disk(16 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->write(0, pattern(4096, 2)).ok());
    disk.fail_writes = -1;
    Runtime<FlakyCache> rt(*c, fast(std::chrono::milliseconds(50)));
    Status s = rt.flush_all();
    EXPECT_EQ(s.code(), Errc::io) << s.to_string();
    EXPECT_GT(disk.failures, 1) << "the error was not retried before it was returned";
    EXPECT_FALSE(c->is_clean());
}

}  // namespace
}  // namespace pcache
