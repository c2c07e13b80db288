// pcache writes the same bytes as the Linux dm-pcache driver.
//
// The basic write sequence (tests/data/kernel/README.md) runs through pcache on a blank 1 GiB
// cache with the kernel's settings (data_crc, one kset buffer), with the same FUA and flush
// points, and the resulting cache image is compared with the kernel's byte for byte. The
// kernel loaded the table once on a blank device (format, cache_info slot 1 seq 1), then the
// scenario's writes ran; Cache::open on a blank device does the same. A difference is printed
// with its device offset, both byte strings and what the format places there.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "cache_fixture.hpp"
#include "image_diff.hpp"
#include "kernel_images.hpp"
#include "md5.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
namespace kernel = testutil::kernel;

// How a scenario ended after W1..W7.
enum class Ending {
    crash,      // no flush: the cache object is dropped with W6/W7 still buffered
    clean,      // fsync, read-back check, "gc_percent 50", clean removal
    writeback,  // fsync, writeback until dirty_tail == key_head, clean removal
};

struct Scenario {
    const char* name;
    Ending ending;
};

// Test names and ctest show the image's name instead of the parameter's bytes.
void PrintTo(const Scenario& sc, std::ostream* os) { *os << sc.name; }

class KernelWrite : public ::testing::TestWithParam<Scenario> {
protected:
    void SetUp() override {
        ASSERT_NE(ours_.size(), 0u);
        ASSERT_NE(theirs_.size(), 0u);
        auto json = kernel::scenario_json(GetParam().name);
        ASSERT_TRUE(json.ok()) << json.status().to_string();
        json_ = std::move(*json);
        const std::string name = GetParam().name;
        Status st = kernel::load_pmem_image(kernel::find_file(name + ".pmem.img.zst"), theirs_);
        ASSERT_TRUE(st.ok()) << st.to_string();
        st = kernel::load_block_image(kernel::find_file(name + ".backing.img.zst"), their_backing_);
        ASSERT_TRUE(st.ok()) << st.to_string();
    }

    // Runs the scenario through pcache on the blank devices ours_ / our_backing_.
    void run_scenario() {
        auto writes = kernel::basic_writes();
        ASSERT_TRUE(writes.ok()) << writes.status().to_string();
        CacheOptions o;
        o.close_on_destroy = false;   // the images are compared: no I/O when a cache is dropped
        o.writeback_batch_ksets = 1;  // the kernel flushes the backing device after every kset
        o.data_crc = true;
        o.n_ksets = 1;
        auto opened = MemCache::format(borrow(ours_), borrow(our_backing_), o);
        ASSERT_TRUE(opened.ok()) << opened.status().to_string();
        std::unique_ptr<MemCache> c = std::move(*opened);
        for (const auto& w : *writes) {
            Status st = c->write(w.off, w.data, {.fua = w.fua}).status;
            ASSERT_TRUE(st.ok()) << w.id << ": " << st.to_string();
        }
        const Ending ending = GetParam().ending;
        if (ending == Ending::crash) return;  // c is destroyed without close: a power cut
        Status st = c->flush();               // fsync: REQ_PREFLUSH closes the open kset
        ASSERT_TRUE(st.ok()) << st.to_string();
        if (ending == Ending::clean) {
            // The guest's read-back check: all four regions are cache hits.
            for (const auto& r : kernel::regions_of(json_["expected_regions"]["after_W7"])) {
                std::vector<std::byte> buf(r.len);
                ASSERT_TRUE(c->read(r.off, buf).ok());
                EXPECT_EQ(testutil::md5_hex(buf), r.md5) << r.name;
            }
            st = c->message("gc_percent 50");
            ASSERT_TRUE(st.ok()) << st.to_string();
        } else {
            for (int steps = 0; !c->is_clean(); ++steps) {
                ASSERT_LT(steps, 16) << "writeback does not converge";
                auto step = c->writeback_step();
                ASSERT_TRUE(step.status.ok()) << step.status.to_string();
            }
        }
        EXPECT_EQ(c->status_line(), kernel::last_kernel_status(json_));
        st = c->close();
        ASSERT_TRUE(st.ok()) << st.to_string();
    }

    testutil::Json json_;
    MemPmem ours_{kernel::kCacheDevBytes};
    MemPmem theirs_{kernel::kCacheDevBytes};
    MemBlockDevice our_backing_{kernel::kBackingBytes};
    MemBlockDevice their_backing_{kernel::kBackingBytes};
};

TEST_P(KernelWrite, ImagesAreByteIdentical) {
    run_scenario();
    if (HasFatalFailure()) return;
    const auto ours = std::span<const std::byte>(ours_.data(), ours_.size());
    const auto theirs = std::span<const std::byte>(theirs_.data(), theirs_.size());
    const auto runs = testutil::diff_images(ours, theirs);
    EXPECT_TRUE(runs.empty()) << "pcache's cache image differs from the kernel's "
                              << GetParam().name << " (first " << runs.size()
                              << " runs of differing bytes):\n"
                              << testutil::diff_report(ours, theirs, runs);
    const auto backing_runs = testutil::diff_images(our_backing_.bytes(), their_backing_.bytes());
    std::string where;
    for (const auto& d : backing_runs)
        where += " [" + std::to_string(d.off) + ", +" + std::to_string(d.len) + ")";
    EXPECT_TRUE(backing_runs.empty()) << "backing device differs at" << where;
}

INSTANTIATE_TEST_SUITE_P(Images, KernelWrite,
                         ::testing::Values(Scenario{"basic_clean_crc", Ending::clean},
                                           Scenario{"basic_crash_crc", Ending::crash},
                                           Scenario{"writeback_crc", Ending::writeback}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// The report itself: a planted difference is found and explained in format terms.
TEST(ImageDiff, ExplainsADifferenceInFormatTerms) {
    MemPmem a(kernel::kCacheDevBytes), b(kernel::kCacheDevBytes);
    ASSERT_TRUE(kernel::load_pmem_image(kernel::find_file("basic_clean_crc.pmem.img.zst"), a).ok());
    ASSERT_TRUE(kernel::load_pmem_image(kernel::find_file("basic_clean_crc.pmem.img.zst"), b).ok());
    const std::byte seven{7};  // differs from both bytes below
    ASSERT_TRUE(b.write(12288 + 4, std::span(&seven, 1), kPmemDefault).ok());  // cache_info[1].seq
    ASSERT_TRUE(b.write(20480 + 12288 + 24 + 40 + 32, std::span(&seven, 1), kPmemDefault)
                    .ok());  // key #1 data_crc
    const auto sa = std::span<const std::byte>(a.data(), a.size());
    const auto sb = std::span<const std::byte>(b.data(), b.size());
    const auto runs = testutil::diff_images(sa, sb);
    ASSERT_EQ(runs.size(), 2u);
    EXPECT_EQ(runs[0].off, 12292u);
    const std::string report = testutil::diff_report(sb, sa, runs);  // a is the reference
    EXPECT_NE(report.find("cache_info slot 1 (device offset 12288), field header.seq"),
              std::string::npos)
        << report;
    EXPECT_NE(report.find("kset at 0:0, key #1 field data_crc"), std::string::npos) << report;
}

// The test-support MD5 against RFC 1321's test suite (every fixture check relies on it).
TEST(Md5, Rfc1321TestSuite) {
    const std::pair<const char*, const char*> cases[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"}};
    for (const auto& [text, md5] : cases)
        EXPECT_EQ(testutil::md5_hex(std::as_bytes(std::span(text, std::strlen(text)))), md5)
            << '"' << text << '"';
    // Fed in pieces that straddle 64-byte blocks: same digest.
    const std::vector<std::byte> zeros(8192);
    testutil::Md5 m;
    m.update(std::span(zeros).first(100));
    m.update(std::span(zeros).subspan(100));
    EXPECT_EQ(m.hex(), "0829f71740aab1ab98b33eae21dee122");
}

}  // namespace
}  // namespace pcache
