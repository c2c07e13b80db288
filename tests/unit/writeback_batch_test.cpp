// Writeback on a backing device that takes batches (issue 16 item 3): runs go out as batches of
// up to writeback_queue_depth concurrent writes, then one flush, then dirty_tail; writes in one
// batch have no order, so overlapping runs never share a batch.
#include <gtest/gtest.h>

#include <algorithm>

#include "cache_fixture.hpp"

namespace pcache {
namespace {

using testutil::pattern;

// A MemBlockDevice that takes batches and applies each batch in REVERSE order, as a disk queue
// may: if two overlapping writes shared a batch, the older bytes would win.
class ReversingBatchDevice {
public:
    explicit ReversingBatchDevice(std::uint64_t bytes) : mem_(bytes) {}
    std::uint64_t size() const { return mem_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) { return mem_.read(off, dst); }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        ++single_writes;
        return mem_.write(off, src, fua);
    }
    Status flush() {
        flushes_after_batch.push_back(batches.size());
        return mem_.flush();
    }
    Status write_batch(std::span<const WriteRequest> reqs) {
        batches.push_back(reqs.size());
        for (std::size_t i = 0; i < reqs.size(); ++i)
            for (std::size_t j = i + 1; j < reqs.size(); ++j) {
                const auto &a = reqs[i], &b = reqs[j];
                if (a.offset_bytes < b.offset_bytes + b.bytes.size() &&
                    b.offset_bytes < a.offset_bytes + a.bytes.size())
                    overlapping_in_batch = true;
            }
        for (std::size_t i = reqs.size(); i-- > 0;)
            PCACHE_TRY(mem_.write(reqs[i].offset_bytes, reqs[i].bytes, reqs[i].fua));
        return {};
    }
    const std::vector<std::byte>& bytes() const { return mem_.bytes(); }

    std::vector<std::size_t> batches;  // size of each write_batch call
    std::vector<std::size_t> flushes_after_batch;
    std::size_t single_writes = 0;
    bool overlapping_in_batch = false;

private:
    MemBlockDevice mem_;
};
static_assert(BatchBlockDevice<ReversingBatchDevice>);

using BatchCache = Cache<MemPmem, ReversingBatchDevice>;

void write_back_all(BatchCache& c) {
    ASSERT_TRUE(c.flush().ok());
    for (int i = 0; i < 1000 && c.dirty_bytes() > 0; ++i) {
        auto r = c.writeback_step();
        ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    }
    ASSERT_EQ(c.dirty_bytes(), 0u);
}

TEST(WritebackBatch, RunsGoOutAsBatchesOfAtMostTheQueueDepth) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    ReversingBatchDevice disk(16 << 20);
    CacheOptions o = testutil::small_options();
    o.writeback_queue_depth = 8;
    auto c = testutil::format_or_fail(pmem, disk, o);
    ASSERT_TRUE(c);
    std::vector<std::vector<std::byte>> data;
    for (std::uint32_t i = 0; i < 50; ++i) {  // 50 runs: not contiguous on the backing device
        data.push_back(pattern(4096, i));
        ASSERT_TRUE(c->write(std::uint64_t(i) * 65536, data.back()).ok());
    }
    write_back_all(*c);
    ASSERT_FALSE(disk.batches.empty()) << "writeback never used write_batch";
    EXPECT_EQ(*std::max_element(disk.batches.begin(), disk.batches.end()), 8u);
    std::size_t in_batches = 0;
    for (auto n : disk.batches) in_batches += n;
    EXPECT_EQ(in_batches + disk.single_writes, 50u);
    EXPECT_FALSE(disk.flushes_after_batch.empty());
    for (std::uint32_t i = 0; i < 50; ++i)
        EXPECT_TRUE(std::equal(data[i].begin(), data[i].end(),
                               disk.bytes().begin() + std::ptrdiff_t(i) * 65536))
            << "run " << i;
}

TEST(WritebackBatch, OverlappingRunsOfNewerKsetsNeverShareABatch) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    ReversingBatchDevice disk(16 << 20);
    CacheOptions o = testutil::small_options();
    o.writeback_queue_depth = 32;
    auto c = testutil::format_or_fail(pmem, disk, o);
    ASSERT_TRUE(c);
    // Five generations of the same blocks, each in its own kset (flush closes the kset), with
    // unrelated blocks between them so that every kset has several runs.
    std::vector<std::byte> last;
    for (std::uint32_t gen = 0; gen < 5; ++gen) {
        for (std::uint32_t k = 0; k < 4; ++k) {
            const auto other = pattern(4096, 1000 + gen * 10 + k);
            ASSERT_TRUE(c->write((gen * 4 + k + 16) * 65536ull, other).ok());
        }
        last = pattern(8192, 2000 + gen);
        ASSERT_TRUE(c->write(4096 + gen * 512, last).ok());  // overlaps the previous
        ASSERT_TRUE(c->flush().ok());
    }
    write_back_all(*c);
    EXPECT_FALSE(disk.overlapping_in_batch);
    EXPECT_TRUE(std::equal(last.begin(), last.end(), disk.bytes().begin() + 4096 + 4 * 512))
        << "an older generation landed after the newest";
}

}  // namespace
}  // namespace pcache
