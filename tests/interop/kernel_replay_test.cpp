// pcache opens images written by the Linux dm-pcache driver and finds what the kernel left there.
//
// For each basic scenario (tests/data/kernel/README.md): the metadata copies pcache's format
// layer selects are the ones the kernel's inspect file marks newest; replay ends where the
// kernel's did, with as many keys; the status line equals the kernel's last one; every region
// reads back with the md5 the JSON expects for the writes that survived. writeback_crc also
// checks that the backing device already holds the data and nothing is left to write back.
#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>

#include "cache_fixture.hpp"
#include "kernel_images.hpp"
#include "md5.hpp"
#include "pcache/format/codec.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
namespace kernel = testutil::kernel;

std::string pos_text(LogPos p) { return std::to_string(p.seg) + ":" + std::to_string(p.off); }

// What a pcache reader must find in a kernel image; the JSON and inspect file say the rest.
struct Scenario {
    const char* name;
    const char* surviving_writes;  // key of expected_regions: the state replay must give
    LogPos key_head;               // where replay ends (README "The scenarios")
    std::uint64_t keys;            // keys replayed
};

// Test names and ctest show the image's name instead of the parameter's bytes.
void PrintTo(const Scenario& sc, std::ostream* os) { *os << sc.name; }

class KernelReplay : public ::testing::TestWithParam<Scenario> {
protected:
    void SetUp() override {
        const std::string name = GetParam().name;
        auto json = kernel::scenario_json(name);
        ASSERT_TRUE(json.ok()) << json.status().to_string();
        json_ = std::move(*json);
        auto inspect = kernel::parse_inspect(name);
        ASSERT_TRUE(inspect.ok()) << inspect.status().to_string();
        inspect_ = std::move(*inspect);
        ASSERT_NE(pmem_.size(), 0u) << "cannot map 1 GiB of MAP_NORESERVE memory";
        Status st = kernel::load_pmem_image(kernel::find_file(name + ".pmem.img.zst"), pmem_);
        ASSERT_TRUE(st.ok()) << st.to_string();
        st = kernel::load_block_image(kernel::find_file(name + ".backing.img.zst"), backing_);
        ASSERT_TRUE(st.ok()) << st.to_string();
    }

    std::unique_ptr<MemCache> open_cache() {
        CacheOptions o;
        o.close_on_destroy = false;  // the images are compared: no I/O when a cache is dropped
        o.data_crc = json_["data_crc"].boolean();
        o.n_ksets = static_cast<std::uint32_t>(json_["n_ksets"].u64());
        o.fill_on_read_miss = false;  // reading back must not change the image
        auto c = MemCache::open(borrow(pmem_), borrow(backing_), o);
        EXPECT_TRUE(c.ok()) << c.status().to_string();
        return c.ok() ? std::move(*c) : nullptr;
    }

    std::string md5_through(MemCache& c, const kernel::Region& r) {
        std::vector<std::byte> buf(r.len);
        Status st = c.read(r.off, buf);
        EXPECT_TRUE(st.ok()) << r.name << ": " << st.to_string();
        return testutil::md5_hex(buf);
    }

    // Checks select_latest on both slots of a record against the inspect file's verdicts.
    template <format::MetaRecord T>
    void expect_newest(const std::string& inspect_name, std::uint64_t slot0, std::uint64_t stride) {
        SCOPED_TRACE(inspect_name);
        ASSERT_TRUE(inspect_.copies.count(inspect_name)) << "not in the inspect file";
        const auto& copies = inspect_.copies.at(inspect_name);
        const auto img = std::span<const std::byte>(pmem_.data(), pmem_.size());
        const auto s0 = img.subspan(slot0, sizeof(T)), s1 = img.subspan(slot0 + stride, sizeof(T));
        for (unsigned slot = 0; slot < 2; ++slot) {
            auto r = format::decode_meta<T>(slot ? s1 : s0, slot0 + slot * stride);
            EXPECT_EQ(r.ok(), copies[slot].crc_ok)
                << "slot " << slot << ": " << r.status().to_string();
            if (r.ok()) {
                EXPECT_EQ(r->header.seq, copies[slot].seq) << "slot " << slot;
            }
        }
        bool ambiguous = false;
        const auto want = kernel::inspect_newest(copies, ambiguous);
        EXPECT_FALSE(ambiguous) << "the inspect file's two copies carry the same sequence";
        const auto got = format::select_latest<T>(s0, slot0, s1, slot0 + stride);
        ASSERT_EQ(got.has_value(), want.has_value());
        if (got) {
            EXPECT_EQ(got->slot, *want);
            EXPECT_EQ(got->record.header.seq, copies[*want].seq);
        }
    }

    testutil::Json json_;
    kernel::Inspect inspect_;
    MemPmem pmem_{kernel::kCacheDevBytes};
    MemBlockDevice backing_{kernel::kBackingBytes};
};

TEST_P(KernelReplay, SelectsTheNewestMetadataCopies) {
    using namespace format;
    const Geometry geo = Geometry::kernel();
    expect_newest<CacheInfo>("cache_info", kCacheInfoOffsetBytes, kCacheInfoSlotStrideBytes);
    expect_newest<CachePos>("key_tail_pos", kKeyTailOffsetBytes, kPosSlotStrideBytes);
    expect_newest<CachePos>("dirty_tail_pos", kDirtyTailOffsetBytes, kPosSlotStrideBytes);
    expect_newest<SegmentInfo>("seg0 seg_info", geo.segment_offset(0), kSegInfoSlotStrideBytes);
    expect_newest<SegGen>("seg0 gen", geo.segment_offset(0) + kSegCtrlOffsetBytes,
                          kSegGenSlotStrideBytes);
}

// One test per image for everything that needs the cache open: each image is decompressed per
// test process, so fewer, fuller tests keep the suite fast.
TEST_P(KernelReplay, ReplaysToTheStateTheKernelLeft) {
    const Scenario& sc = GetParam();
    const std::string name = sc.name;
    // The backing device as the kernel left it: zeros unless writeback ran (after_W0 / after_W7).
    const bool written_back = name == "writeback_crc";
    for (const auto& r :
         kernel::regions_of(json_["expected_regions"][written_back ? "after_W7" : "after_W0"])) {
        const auto bytes = std::span<const std::byte>(backing_.bytes()).subspan(r.off, r.len);
        EXPECT_EQ(testutil::md5_hex(bytes), r.md5) << "backing image, " << r.name;
    }
    const auto backing_before = backing_.bytes();

    auto c = open_cache();
    ASSERT_TRUE(c);
    {
        SCOPED_TRACE("replay ends where the kernel's did");
        EXPECT_EQ(pos_text(c->key_head()), inspect_.replay_end);
        EXPECT_EQ(c->key_head(), sc.key_head);
        EXPECT_EQ(c->counters().replay_keys, inspect_.total_keys);
        EXPECT_EQ(c->counters().replay_keys, sc.keys);
        EXPECT_EQ(c->counters().replay_stale_keys, 0u);
        EXPECT_EQ(c->counters().data_crc_errors, 0u);
        Status inv = c->check_invariants();
        EXPECT_TRUE(inv.ok()) << inv.to_string();
    }
    const std::string kernel_status = kernel::last_kernel_status(json_);
    EXPECT_EQ(c->status_line(), kernel_status);
    {
        SCOPED_TRACE("regions read back as the kernel wrote them");
        const auto regions = kernel::regions_of(json_["expected_regions"][sc.surviving_writes]);
        ASSERT_EQ(regions.size(), 4u);
        for (const auto& r : regions) EXPECT_EQ(md5_through(*c, r), r.md5) << r.name;
        EXPECT_EQ(c->counters().read_misses, 0u) << "every region is fully held by the cache";
    }
    if (written_back) {
        SCOPED_TRACE("writeback finds nothing the kernel had not written back");
        EXPECT_EQ(c->dirty_tail(), c->key_head());
        EXPECT_TRUE(c->is_clean());
        auto step = c->writeback_step();
        EXPECT_TRUE(step.status.ok()) << step.status.to_string();
        EXPECT_FALSE(step.progressed);
        EXPECT_EQ(c->counters().backing_written_bytes, 0u);
    } else {
        EXPECT_EQ(c->dirty_tail(), (LogPos{0, 0}));
    }
    if (name == "basic_clean_crc") {
        // The kernel's last line was printed after "gc_percent 50": pcache read 50 back from the
        // cache_info the kernel wrote, and sending the same message changes nothing visible.
        Status st = c->message("gc_percent 50");
        ASSERT_TRUE(st.ok()) << st.to_string();
        EXPECT_EQ(c->status_line(), kernel_status);
    }
    Status st = c->close();
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_TRUE(backing_before == backing_.bytes())
        << "opening, reading and closing wrote to the backing device";
}

INSTANTIATE_TEST_SUITE_P(Images, KernelReplay,
                         // basic_crash: W6 and W7 were acknowledged, but their keys were still
                         // in the kset buffer at the power cut: 5 keys survive, W5's FUA kset.
                         ::testing::Values(Scenario{"basic_clean_crc", "after_W7", {0, 328}, 7},
                                           Scenario{"basic_crash_crc", "after_W5", {0, 224}, 5},
                                           Scenario{"writeback_crc", "after_W7", {0, 328}, 7}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace pcache
