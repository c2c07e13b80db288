// pcache replays the kernel's keychain_clean_crc image: 900,000 small writes whose key log runs
// through three kset segments (0 -> 17 -> 33) joined by two LAST ksets.
//
// The 16 MB cache image is not in the repository: it is read from the shared fixture folder
// (PCACHE_KERNEL_IMAGES_DIR, or the PCACHE_KERNEL_IMAGES environment variable) and the tests
// skip when it is absent. Kset boundaries depend on the kernel's 1 s flush timer, so only replay
// results and content are compared, never image bytes. The expected content is regenerated
// from the generator rule in the JSON (splitmix64, seed 20261125).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cache_fixture.hpp"
#include "kernel_images.hpp"
#include "md5.hpp"
#include "pcache/format/codec.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
namespace kernel = testutil::kernel;

constexpr const char* kName = "keychain_clean_crc";

// oracle-io's "gen" command (the JSON's generator.rule), one splitmix64 output per write.
struct KeychainGenerator {
    std::uint64_t state;
    std::uint64_t dev_sectors;
    std::uint64_t next() {
        state += 0x9E3779B97F4A7C15ull;
        std::uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    struct Write {
        std::uint64_t off_sector, sectors;
    };
    Write write() {
        const std::uint64_t r = next();
        const std::uint64_t sel = r >> 60;
        const std::uint64_t nsec = sel <= 13 ? 1 : sel == 14 ? 2 : 3;
        return {(r & 0xffffffffull) % (dev_sectors - nsec + 1), nsec};
    }
};

// Sector k of write i: le32(i) | le32(off_sector + k) | 504 bytes of ((i & 0xff) ^ 0x5a).
void apply_write(std::vector<std::byte>& dev, std::uint32_t i, KeychainGenerator::Write w) {
    for (std::uint64_t k = 0; k < w.sectors; ++k) {
        std::byte* s = dev.data() + (w.off_sector + k) * 512;
        const auto sector = static_cast<std::uint32_t>(w.off_sector + k);
        std::memcpy(s, &i, 4);
        std::memcpy(s + 4, &sector, 4);
        std::memset(s + 8, static_cast<int>((i & 0xff) ^ 0x5a), 504);
    }
}

class KernelKeychain : public ::testing::Test {
protected:
    void SetUp() override {
        auto json = kernel::scenario_json(kName);
        ASSERT_TRUE(json.ok()) << json.status().to_string();
        json_ = std::move(*json);
        const std::string pmem_path = kernel::find_file(std::string(kName) + ".pmem.img.zst");
        const std::string backing_path = kernel::find_file(std::string(kName) + ".backing.img.zst");
        if (pmem_path.empty() || backing_path.empty())
            GTEST_SKIP() << kName << " images (16 MB, not in the repository) are not in "
                         << kernel::fixtures_dir()
                         << ": set PCACHE_KERNEL_IMAGES to the kernel-images fixture folder to run "
                            "this test";
        ASSERT_NE(pmem_.size(), 0u);
        Status st = kernel::load_pmem_image(pmem_path, pmem_);
        ASSERT_TRUE(st.ok()) << st.to_string();
        st = kernel::load_block_image(backing_path, backing_);
        ASSERT_TRUE(st.ok()) << st.to_string();
        CacheOptions o;
        o.close_on_destroy = false;  // the images are compared: no I/O when a cache is dropped
        o.data_crc = true;
        o.n_ksets = 1;
        o.fill_on_read_miss = false;
        auto c = MemCache::open(borrow(pmem_), borrow(backing_), o);
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        cache_ = std::move(*c);
    }

    testutil::Json json_;
    MemPmem pmem_{kernel::kCacheDevBytes};
    MemBlockDevice backing_{kernel::kBackingBytes};
    std::unique_ptr<MemCache> cache_;
};

TEST_F(KernelKeychain, ReplayAndStatusMatchTheKernels) {
    const testutil::Json& log = json_["key_log"];
    EXPECT_EQ(std::to_string(cache_->key_head().seg) + ":" + std::to_string(cache_->key_head().off),
              log["replay_end"]["pos"].str());
    EXPECT_EQ(cache_->key_head(), (LogPos{33, 2646208}));
    EXPECT_EQ(cache_->counters().replay_keys, log["n_keys"].u64());
    EXPECT_EQ(cache_->counters().replay_keys, 900026u);
    EXPECT_EQ(cache_->counters().replay_ksets, log["n_ksets"].u64());
    EXPECT_EQ(cache_->counters().replay_stale_keys, 0u);
    EXPECT_EQ(cache_->counters().data_crc_errors, 0u);
    // The two LAST ksets the kernel wrote, where the inspect file found them.
    const format::Geometry geo = format::Geometry::kernel();
    for (const testutil::Json& last : log["last_ksets"].items()) {
        const std::uint64_t at = last["file_off"].u64();
        auto v = format::decode_kset(std::span<const std::byte>(pmem_.data() + at, 24), 63, at);
        ASSERT_TRUE(v.ok()) << v.status().to_string();
        EXPECT_EQ(v->kind, format::KsetKind::last) << last["pos"].str();
        EXPECT_EQ(v->next_cache_seg_id(), last["next_cache_seg_id"].u64());
        EXPECT_EQ(at, geo.data_offset(static_cast<std::uint32_t>(last["phys_seg"].u64())) +
                          last["seg_off"].u64());
    }
    Status inv = cache_->check_invariants();
    EXPECT_TRUE(inv.ok()) << inv.to_string();

    // The kernel printed its last status before removal; writeback went on until removal, so
    // the persisted dirty_tail (key_log.dirty_tail_on_media) is further on. The rest matches.
    std::istringstream in(kernel::last_kernel_status(json_));
    std::vector<std::string> fields;
    for (std::string f; in >> f;) fields.push_back(f);
    ASSERT_EQ(fields.size(), 9u);
    fields[7] = json_["key_log"]["dirty_tail_on_media"].str();
    std::string want;
    for (const auto& f : fields) want += (want.empty() ? "" : " ") + f;
    EXPECT_EQ(cache_->status_line(), want);
    EXPECT_EQ(cache_->status_line(), "0 63 63 36 70 1183 33:2646208 0:12775112 0:0");
}

TEST_F(KernelKeychain, ContentEqualsTheGeneratorsAndTheKernelsMd5s) {
    const testutil::Json& gen = json_["generator"];
    KeychainGenerator g{gen["seed"].u64(), gen["devsect"].u64()};
    ASSERT_EQ(g.dev_sectors * 512, kernel::kBackingBytes);
    std::vector<std::byte> want(kernel::kBackingBytes);
    const auto n = static_cast<std::uint32_t>(gen["n_writes_synced"].u64());
    const testutil::Json& first = gen["first_writes"];
    for (std::uint32_t i = 0; i < n; ++i) {
        const auto w = g.write();
        if (i < first.size()) {
            EXPECT_EQ(w.off_sector * 512, first[i]["off"].u64()) << "write " << i;
            EXPECT_EQ(w.sectors * 512, first[i]["len"].u64()) << "write " << i;
        }
        apply_write(want, i, w);
    }
    std::vector<std::byte> got(kernel::kBackingBytes);
    constexpr std::uint64_t kChunk = 4u << 20;
    for (std::uint64_t off = 0; off < got.size(); off += kChunk) {
        Status st = cache_->read(off, std::span(got).subspan(off, kChunk));
        ASSERT_TRUE(st.ok()) << st.to_string();
    }
    const auto mismatch = std::mismatch(got.begin(), got.end(), want.begin());
    if (mismatch.first != got.end()) {
        const std::uint64_t at = static_cast<std::uint64_t>(mismatch.first - got.begin());
        ADD_FAILURE() << "content read through pcache differs from the generator's first at byte "
                      << at << " (sector " << at / 512 << "): pcache "
                      << std::to_integer<int>(*mismatch.first) << ", generator "
                      << std::to_integer<int>(*mismatch.second);
    }
    for (const auto& r : kernel::regions_of(json_["regions"]["expected_after_synced_writes"])) {
        EXPECT_EQ(testutil::md5_hex(std::span(want).subspan(r.off, r.len)), r.md5)
            << "generator, " << r.name;
        EXPECT_EQ(testutil::md5_hex(std::span(got).subspan(r.off, r.len)), r.md5)
            << "pcache, " << r.name;
    }
}

}  // namespace
}  // namespace pcache
