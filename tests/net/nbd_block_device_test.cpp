// NbdBlockDevice and open_backing against real nbdkit servers on a Unix socket (issue 16).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "cache_fixture.hpp"
#include "nbdkit_server.hpp"
#include "pcache/blockdev/backing.hpp"
#include "pcache/blockdev/nbd_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "temp_dir.hpp"

namespace pcache {
namespace {

using testutil::NbdkitServer;
using testutil::pattern;
using testutil::TempDir;

class NbdTest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(dir.ok()); }
    // Starts nbdkit with `args`; fails the test (never skips) if nbdkit is missing.
    NbdkitServer& serve(std::vector<std::string> args) {
        server = std::make_unique<NbdkitServer>(dir.file("sock"), std::move(args));
        EXPECT_TRUE(server->start()) << "nbdkit did not start (bash scripts/setup.sh installs it)";
        return *server;
    }
    TempDir dir;
    std::unique_ptr<NbdkitServer> server;
};

TEST_F(NbdTest, SizeReadWriteFlushFua) {
    auto& s = serve({"memory", "8M"});
    auto d = NbdBlockDevice::open(s.uri());
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    EXPECT_EQ(d->size(), 8u << 20);
    EXPECT_TRUE(d->can_fua());
    const auto a = pattern(64 << 10, 1), b = pattern(4096, 2);
    ASSERT_TRUE(d->write(4096, a, false).ok());
    ASSERT_TRUE(d->write(1 << 20, b, true).ok());
    ASSERT_TRUE(d->flush().ok());
    std::vector<std::byte> got(a.size());
    ASSERT_TRUE(d->read(4096, got).ok());
    EXPECT_EQ(got, a);
    got.resize(b.size());
    ASSERT_TRUE(d->read(1 << 20, got).ok());
    EXPECT_EQ(got, b);
    // Out of range and misaligned requests are refused before anything is sent.
    EXPECT_EQ(d->write((8u << 20) - 512, b, false).code(), Errc::invalid_argument);
    EXPECT_EQ(d->write(100, std::span(b).first(512), false).code(), Errc::invalid_argument);
}

TEST_F(NbdTest, BatchWithMoreRequestsThanTheQueueDepth) {
    auto& s = serve({"memory", "8M"});
    auto d = NbdBlockDevice::open(s.uri(), NbdOptions{.queue_depth = 4});
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    std::vector<std::vector<std::byte>> data;
    std::vector<WriteRequest> reqs;
    for (std::uint32_t i = 0; i < 50; ++i) data.push_back(pattern(4096 * (1 + i % 5), 100 + i));
    for (std::uint32_t i = 0; i < 50; ++i)
        reqs.push_back({std::uint64_t(i) * 65536, data[i], false});
    ASSERT_TRUE(d->write_batch(reqs).ok());
    for (std::uint32_t i = 0; i < 50; ++i) {
        std::vector<std::byte> got(data[i].size());
        ASSERT_TRUE(d->read(reqs[i].offset_bytes, got).ok());
        EXPECT_EQ(got, data[i]) << "request " << i;
    }
    // One bad request refuses the whole batch: nothing is written.
    const auto junk = pattern(4096, 9);
    const WriteRequest bad[] = {{0, junk, false}, {8u << 20, junk, false}};
    EXPECT_EQ(d->write_batch(bad).code(), Errc::invalid_argument);
    std::vector<std::byte> got(4096);
    ASSERT_TRUE(d->read(0, got).ok());
    EXPECT_EQ(got, data[0]);
}

TEST_F(NbdTest, ServerWithoutFlushIsRefusedForWriteback) {
    auto& s = serve({"eval", "get_size=echo 1048576",
                     "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
                     "pwrite=cat >/dev/null", "can_write=exit 0", "can_flush=exit 3"});
    auto d = NbdBlockDevice::open(s.uri());
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), Errc::unsupported);
    EXPECT_NE(d.status().message().find("does not support FLUSH"), std::string::npos)
        << d.status().message();
    // Read-only use (pcache status/check) accepts it.
    auto r = NbdBlockDevice::open(s.uri(), NbdOptions{.read_only = true});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->size(), 1u << 20);
    EXPECT_EQ(r->flush().code(), Errc::invalid_argument);
}

TEST_F(NbdTest, ReadOnlyExportIsRefused) {
    auto& s = serve({"--readonly", "memory", "1M"});
    auto d = NbdBlockDevice::open(s.uri());
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.status().code(), Errc::unsupported);
    EXPECT_NE(d.status().message().find("read-only"), std::string::npos);
}

TEST_F(NbdTest, ServerErrnoIsReported) {
    auto& s =
        serve({"--filter=error", "memory", "1M", "error-pwrite=ENOSPC", "error-pwrite-rate=100%"});
    auto d = NbdBlockDevice::open(s.uri());
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    const auto a = pattern(4096, 3);
    Status w = d->write(0, a, false);
    EXPECT_EQ(w.code(), Errc::no_space) << w.to_string();
    EXPECT_NE(w.message().find("No space left on device (server errno 28)"), std::string::npos)
        << w.message();
    std::vector<std::byte> got(4096);
    EXPECT_TRUE(d->read(0, got).ok()) << "an error reply must not end the connection";
}

TEST_F(NbdTest, TransientErrorsFailOnlyTheRequestsHit) {
    const std::string trigger = dir.file("errors-on");
    auto& s = serve({"--filter=error", "memory", "1M", "error=EIO", "error-rate=100%",
                     "error-file=" + trigger});
    auto d = NbdBlockDevice::open(s.uri());
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    const auto a = pattern(4096, 4);
    std::ofstream(trigger).put('x');
    Status w = d->write(0, a, false);
    EXPECT_EQ(w.code(), Errc::io);
    EXPECT_NE(w.message().find("Input/output error (server errno 5)"), std::string::npos);
    std::remove(trigger.c_str());
    EXPECT_TRUE(d->write(0, a, false).ok());
    std::vector<std::byte> got(4096);
    ASSERT_TRUE(d->read(0, got).ok());
    EXPECT_EQ(got, a);
}

TEST_F(NbdTest, DroppedConnectionIsAnIoErrorAndTheNextRequestReconnects) {
    const std::string file = dir.file("disk");
    { std::ofstream(file).seekp((1 << 20) - 1).put('\0'); }
    auto& s = serve({"file", file});
    auto d = NbdBlockDevice::open(s.uri());
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    const auto a = pattern(4096, 5);
    ASSERT_TRUE(d->write(0, a, true).ok());
    s.kill(SIGKILL);
    std::vector<std::byte> got(4096);
    Status r = d->read(0, got);
    EXPECT_EQ(r.code(), Errc::io);
    EXPECT_NE(r.message().find("connection lost"), std::string::npos) << r.message();
    // While the server is down every request fails (reconnecting fails), none hangs.
    EXPECT_EQ(d->read(0, got).code(), Errc::io);
    ASSERT_TRUE(s.start());
    ASSERT_TRUE(d->read(0, got).ok());
    EXPECT_EQ(got, a);
}

TEST_F(NbdTest, SilentServerTimesOut) {
    auto& s = serve({"memory", "1M"});
    auto d = NbdBlockDevice::open(s.uri(), NbdOptions{.timeout_ms = 300});
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    ASSERT_TRUE(s.pause());  // the connection stays open, nothing answers
    std::vector<std::byte> got(4096);
    Status r = d->read(0, got);
    ASSERT_TRUE(s.resume());
    EXPECT_EQ(r.code(), Errc::io);
    EXPECT_NE(r.message().find("no reply within 300 ms"), std::string::npos) << r.message();
    EXPECT_TRUE(d->read(0, got).ok()) << "the next request reconnects";
}

TEST_F(NbdTest, CacheWritesBackThroughNbd) {
    auto& s = serve({"memory", "16M"});
    auto backing = open_backing(s.uri());
    ASSERT_TRUE(backing.ok()) << backing.status().to_string();
    MemPmem pmem(testutil::small_pmem_bytes(32));
    CacheOptions o = testutil::small_options();
    o.writeback_queue_depth = 8;
    auto c = Cache<MemPmem, BackingDevice>::format(borrow(pmem), borrow(**backing), o);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    std::vector<std::vector<std::byte>> data;
    for (std::uint32_t i = 0; i < 64; ++i) {
        data.push_back(pattern(4096 * (1 + i % 3), 200 + i));
        ASSERT_TRUE((*c)->write(std::uint64_t(i) * 131072, data.back()).ok());
    }
    ASSERT_TRUE((*c)->flush().ok());
    for (int i = 0; i < 100 && (*c)->dirty_bytes() > 0; ++i) {
        auto r = (*c)->writeback_step();
        ASSERT_TRUE(r.status.ok()) << r.status.to_string();
    }
    ASSERT_EQ((*c)->dirty_bytes(), 0u);
    auto direct = NbdBlockDevice::open(s.uri(), NbdOptions{.read_only = true});
    ASSERT_TRUE(direct.ok());
    for (std::uint32_t i = 0; i < 64; ++i) {
        std::vector<std::byte> got(data[i].size());
        ASSERT_TRUE(direct->read(std::uint64_t(i) * 131072, got).ok());
        EXPECT_EQ(got, data[i]) << "key " << i;
    }
}

TEST(BackingSpec, Parsing) {
    auto f = parse_backing_spec("/dev/sdb");
    ASSERT_TRUE(f.ok());
    EXPECT_EQ(f->kind, BackingSpec::Kind::file);
    auto n = parse_backing_spec("nbd://127.0.0.1:10809/disk");
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n->kind, BackingSpec::Kind::nbd);
    auto u = parse_backing_spec("nbd+unix:///disk?socket=/run/s");
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u->kind, BackingSpec::Kind::nbd);
    auto r = parse_backing_spec("rbd:pool/img:conf=/etc/ceph/x.conf:id=pcache");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->kind, BackingSpec::Kind::rbd);
    EXPECT_EQ(r->pool, "pool");
    EXPECT_EQ(r->image, "img");
    EXPECT_EQ(r->rbd_conf, "/etc/ceph/x.conf");
    EXPECT_EQ(r->rbd_id, "pcache");
    for (const char* bad : {"", "rbd:pool", "rbd:/img", "rbd:pool/", "rbd:a/b/c", "rbd:p/i@snap",
                            "rbd:p/i:user=x", "http://host/x", "nbdx://h"}) {
        auto b = parse_backing_spec(bad);
        EXPECT_FALSE(b.ok()) << bad;
        if (!b.ok()) {
            EXPECT_EQ(b.status().code(), Errc::invalid_argument) << bad;
        }
    }
    auto snap = parse_backing_spec("rbd:p/i@s");
    EXPECT_NE(snap.status().message().find("read-only"), std::string::npos);
}

}  // namespace
}  // namespace pcache
