// RbdBlockDevice and open_backing("rbd:...") against a real single-node Ceph cluster on
// 127.0.0.1, started once for this binary by tests/e2e/ceph_cluster.sh (issue 16).
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>

#include "cache_fixture.hpp"
#include "pcache/blockdev/backing.hpp"
#include "pcache/blockdev/rbd_block_device.hpp"
#include "temp_dir.hpp"

#ifndef PCACHE_CEPH_CLUSTER_SCRIPT
#error "PCACHE_CEPH_CLUSTER_SCRIPT must name tests/e2e/ceph_cluster.sh"
#endif

namespace pcache {
namespace {

using testutil::pattern;

RbdOptions options(const std::string& conf, unsigned queue_depth = 32, bool read_only = false,
                   unsigned timeout_ms = 30000) {
    RbdOptions o;
    o.conf = conf;
    o.queue_depth = queue_depth;
    o.read_only = read_only;
    o.timeout_ms = timeout_ms;
    return o;
}

class Cluster : public ::testing::Environment {
public:
    void SetUp() override {
        ASSERT_TRUE(dir_.ok());
        root_ = dir_.file("ceph");
        const std::string cmd =
            std::string("bash ") + PCACHE_CEPH_CLUSTER_SCRIPT + " start " + root_ + " 2>/dev/null";
        ASSERT_EQ(std::system(cmd.c_str()), 0)
            << "the Ceph cluster did not start (bash scripts/setup.sh installs ceph-mon, "
               "ceph-osd, ceph-common): "
            << cmd;
        conf_ = root_ + "/ceph.conf";
        ::setenv("CEPH_CONF", conf_.c_str(), 1);
        for (const char* img : {"a", "b", "c"})
            ASSERT_EQ(std::system(("rbd create rbd/" + std::string(img) + " --size 16M").c_str()),
                      0);
    }
    void TearDown() override {
        std::system((std::string("bash ") + PCACHE_CEPH_CLUSTER_SCRIPT + " stop " + root_).c_str());
    }
    static const std::string& conf() { return conf_; }
    static pid_t osd_pid() {
        std::ifstream f(root_ + "/run/osd.0.pid");
        pid_t p = 0;
        f >> p;
        return p;
    }

private:
    testutil::TempDir dir_{"/dev/shm"};
    static inline std::string root_, conf_;
};

TEST(Rbd, ReadWriteBatchFlush) {
    auto d = RbdBlockDevice::open("rbd", "a", options(Cluster::conf(), 4));
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    EXPECT_EQ(d->size(), 16u << 20);
    std::vector<std::vector<std::byte>> data;
    std::vector<WriteRequest> reqs;
    for (std::uint32_t i = 0; i < 20; ++i) data.push_back(pattern(4096 * (1 + i % 3), i));
    for (std::uint32_t i = 0; i < 20; ++i)
        reqs.push_back({std::uint64_t(i) << 19, data[i], i == 7});
    ASSERT_TRUE(d->write_batch(reqs).ok());
    ASSERT_TRUE(d->flush().ok());
    // Another client (a fresh connection) sees the data.
    auto r = RbdBlockDevice::open("rbd", "a", options(Cluster::conf(), 32, true));
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    for (std::uint32_t i = 0; i < 20; ++i) {
        std::vector<std::byte> got(data[i].size());
        ASSERT_TRUE(r->read(std::uint64_t(i) << 19, got).ok());
        EXPECT_EQ(got, data[i]) << i;
    }
    EXPECT_EQ(r->write(0, data[0], false).code(), Errc::invalid_argument);
    EXPECT_EQ(d->write(16u << 20, data[0], false).code(), Errc::invalid_argument);
}

TEST(Rbd, MissingImageAndPoolKeepTheirErrno) {
    auto d = RbdBlockDevice::open("rbd", "nope", options(Cluster::conf()));
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), Errc::not_found);
    EXPECT_NE(d.status().message().find("errno 2"), std::string::npos) << d.status().message();
    auto p = open_backing("rbd:nopool/a:conf=" + Cluster::conf());
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), Errc::not_found);
    EXPECT_EQ(open_backing("rbd:rbd/a@snap").status().code(), Errc::invalid_argument);
}

TEST(Rbd, CacheWritesBackThroughOpenBacking) {
    auto backing = open_backing("rbd:rbd/b:conf=" + Cluster::conf());
    ASSERT_TRUE(backing.ok()) << backing.status().to_string();
    MemPmem pmem(testutil::small_pmem_bytes(32));
    auto c = Cache<MemPmem, BackingDevice>::format(borrow(pmem), borrow(**backing),
                                                   testutil::small_options());
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    std::vector<std::vector<std::byte>> data;
    for (std::uint32_t i = 0; i < 32; ++i) {
        data.push_back(pattern(8192, 300 + i));
        ASSERT_TRUE((*c)->write(std::uint64_t(i) * 262144, data.back()).ok());
    }
    ASSERT_TRUE((*c)->flush().ok());
    for (int i = 0; i < 100 && (*c)->dirty_bytes() > 0; ++i)
        ASSERT_TRUE((*c)->writeback_step().status.ok());
    ASSERT_EQ((*c)->dirty_bytes(), 0u);
    auto direct = RbdBlockDevice::open("rbd", "b", options(Cluster::conf()));
    ASSERT_TRUE(direct.ok());
    for (std::uint32_t i = 0; i < 32; ++i) {
        std::vector<std::byte> got(8192);
        ASSERT_TRUE(direct->read(std::uint64_t(i) * 262144, got).ok());
        EXPECT_EQ(got, data[i]) << i;
    }
}

// Last: it stops the OSD. A cluster that does not answer is an error after the timeout.
TEST(Rbd, UnresponsiveClusterTimesOut) {
    auto d = RbdBlockDevice::open("rbd", "c", options(Cluster::conf(), 32, false, 2000));
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    const auto a = pattern(4096, 1);
    ASSERT_TRUE(d->write(0, a, false).ok());
    const pid_t osd = Cluster::osd_pid();
    ASSERT_GT(osd, 0);
    ASSERT_EQ(::kill(osd, SIGSTOP), 0);
    Status w = d->write(4096, a, false);
    ::kill(osd, SIGCONT);
    EXPECT_EQ(w.code(), Errc::io) << w.to_string();
    EXPECT_NE(w.message().find("timed out"), std::string::npos) << w.message();
}

}  // namespace
}  // namespace pcache

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new pcache::Cluster);
    return RUN_ALL_TESTS();
}
