// Drives the pcache binary: every subcommand, every documented exit code, bad input (wrong
// paths, foreign images, small devices, bad numbers) writes nothing, and the read-only commands
// (status, check, dump) leave the image byte-identical.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <unistd.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "pcache/blockdev/file_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"
#include "temp_dir.hpp"

namespace {

using pcache::testutil::Outcome;
using pcache::testutil::run_captured;
using pcache::testutil::slurp;
using pcache::testutil::TempDir;

class CliTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(dir.ok());
        pmem = dir.file("pmem");
        backing = dir.file("backing");
        ASSERT_EQ(std::system(("truncate -s 64M " + backing).c_str()), 0);
    }
    // Runs `pcache <args>` (args are shell words), capturing stdout and stderr.
    Outcome pcache(const std::string& args) {
        return run_captured(std::string(PCACHE_TOOL_PATH) + " " + args, dir);
    }
    std::string geo() const { return " --segment-size 256K"; }
    std::string dev() const { return " --pmem " + pmem + " --backing " + backing + geo(); }
    void format() {
        Outcome r = pcache("format" + dev() + " --create-size-pmem 8M");
        ASSERT_EQ(r.rc, 0) << r.err;
        ASSERT_EQ(r.out, "0 31 31 1 70 1182 0:0 0:0 0:0\n");
    }
    // Writes `n` 64 KiB extents through the library and closes cleanly: dirty, not written back.
    void write_dirty(unsigned n, std::uint64_t first_off = 0) {
        auto p = pcache::Pmem2Device::open(pmem);
        auto b = pcache::FileBlockDevice::open(backing);
        ASSERT_TRUE(p.ok() && b.ok());
        pcache::CacheOptions o;
        o.geometry = pcache::format::Geometry{256 * 1024};
        auto c = pcache::Cache<pcache::Pmem2Device, pcache::FileBlockDevice>::open(borrow(*p),
                                                                                   borrow(*b), o);
        ASSERT_TRUE(c.ok()) << c.status().to_string();
        std::vector<std::byte> data(64 * 1024, std::byte{0x5a});
        for (unsigned i = 0; i < n; ++i) {
            ASSERT_TRUE((*c)->write(first_off + i * data.size(), data).ok());
            ASSERT_TRUE((*c)->flush().ok());
        }
        ASSERT_TRUE((*c)->close().ok());
    }
    // The status line the engine reports after loading a copy of the image (the copy, because
    // loading writes cache_info).
    std::string engine_status_line() {
        const std::string copy = dir.file("copy");
        if (std::system(("cp " + pmem + " " + copy).c_str()) != 0) return "cp failed";
        auto p = pcache::Pmem2Device::open(copy);
        auto b = pcache::FileBlockDevice::open(backing);
        if (!p.ok() || !b.ok()) return "open failed";
        pcache::CacheOptions o;
        o.geometry = pcache::format::Geometry{256 * 1024};
        auto c = pcache::Cache<pcache::Pmem2Device, pcache::FileBlockDevice>::open(borrow(*p),
                                                                                   borrow(*b), o);
        if (!c.ok()) return c.status().to_string();
        std::string line = (*c)->status_line();
        ::unlink(copy.c_str());
        return line;
    }
    void poke(std::uint64_t off, char byte) {
        std::fstream f(pmem, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(off));
        f.put(byte);
    }

    TempDir dir;
    std::string pmem, backing;
};

TEST_F(CliTest, UsageAndHelp) {
    EXPECT_EQ(pcache("").rc, 2);
    Outcome help = pcache("--help");
    EXPECT_EQ(help.rc, 0);
    for (const char* cmd : {"format", "status", "check", "dump", "message", "flush", "demo"}) {
        EXPECT_NE(help.out.find(cmd), std::string::npos) << cmd;
        Outcome h = pcache(std::string(cmd) + " --help");
        EXPECT_EQ(h.rc, 0) << cmd;
        EXPECT_NE(h.out.find("usage: pcache"), std::string::npos) << cmd;
    }
    EXPECT_EQ(pcache("nosuchcommand").rc, 2);
    EXPECT_EQ(pcache("status --bogus").rc, 2);
    EXPECT_EQ(pcache("status").rc, 2);  // --pmem is required
}

TEST_F(CliTest, FormatThenReadOnlyCommandsWriteNothing) {
    format();
    write_dirty(5);
    const std::string before = slurp(pmem);
    Outcome s = pcache("status --pmem " + pmem + geo());
    EXPECT_EQ(s.rc, 0) << s.err;
    EXPECT_EQ(s.out, engine_status_line() + "\n");
    Outcome j = pcache("status --format json --pmem " + pmem + geo());
    EXPECT_EQ(j.rc, 0);
    EXPECT_NE(j.out.find("\"schema\": 1"), std::string::npos);
    EXPECT_NE(j.out.find("\"dirty_bytes\": 327680"), std::string::npos) << j.out;
    Outcome t = pcache("status --format table --pmem " + pmem + geo());
    EXPECT_EQ(t.rc, 0);
    EXPECT_NE(t.out.find("dirty_bytes"), std::string::npos);
    EXPECT_EQ(pcache("status --format xml --pmem " + pmem + geo()).rc, 2);
    Outcome c = pcache("check" + dev());
    EXPECT_EQ(c.rc, 0) << c.out;
    EXPECT_NE(c.out.find("no problems"), std::string::npos);
    EXPECT_EQ(pcache("check --format json" + dev()).rc, 0);
    Outcome d = pcache("dump --pmem " + pmem + geo());
    EXPECT_EQ(d.rc, 0);
    for (const char* key : {"\"superblock\"", "\"cache_info\"", "\"newest\"", "\"segments\"",
                            "\"ksets\"", "\"keys_total\": ", "\"key_head\""})
        EXPECT_NE(d.out.find(key), std::string::npos) << key;
    Outcome d1 = pcache("dump --keys 1 --pmem " + pmem + geo());
    EXPECT_NE(d1.out.find("\"keys_printed\": 1"), std::string::npos);
    EXPECT_EQ(pcache("dump --keys many --pmem " + pmem + geo()).rc, 2);
    EXPECT_EQ(slurp(pmem), before) << "a read-only command modified the image";
}

TEST_F(CliTest, FormatRefusesExistingCacheAndReportsDirtyBytes) {
    format();
    write_dirty(3);
    const std::string before = slurp(pmem);
    Outcome r = pcache("format" + dev());
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("196608 B"), std::string::npos) << r.err;
    EXPECT_EQ(slurp(pmem), before);
    Outcome f = pcache("format --force" + dev());
    EXPECT_EQ(f.rc, 0) << f.err;
    EXPECT_NE(f.err.find("196608 B"), std::string::npos) << f.err;
    EXPECT_EQ(f.out, "0 31 31 1 70 1182 0:0 0:0 0:0\n");
}

TEST_F(CliTest, MessageAndFlush) {
    format();
    write_dirty(4);
    Outcome m = pcache("message" + dev() + " gc_percent 50");
    EXPECT_EQ(m.rc, 0) << m.err;
    EXPECT_NE(m.out.find(" 50 "), std::string::npos) << m.out;
    const std::string before = slurp(pmem);
    EXPECT_EQ(pcache("message" + dev() + " gc_percent 91").rc, 2);
    EXPECT_EQ(pcache("message" + dev() + " gc_percent x").rc, 2);
    EXPECT_EQ(pcache("message" + dev() + " frobnicate 1").rc, 2);
    EXPECT_EQ(pcache("message" + dev()).rc, 2);
    EXPECT_EQ(slurp(pmem), before) << "a refused message modified the image";
    Outcome f = pcache("flush" + dev());
    EXPECT_EQ(f.rc, 0) << f.err;
    Outcome j = pcache("status --format json --pmem " + pmem + geo());
    EXPECT_NE(j.out.find("\"dirty_bytes\": 0"), std::string::npos) << j.out;
    EXPECT_NE(j.out.find("\"clean\": true"), std::string::npos) << j.out;
    EXPECT_NE(j.out.find("\"gc_percent\": 50"), std::string::npos) << j.out;
    std::string data = slurp(backing);
    EXPECT_EQ(data[0], 0x5a);
    EXPECT_EQ(data[4 * 65536 - 1], 0x5a);
}

TEST_F(CliTest, CheckFindsCorruption) {
    format();
    write_dirty(4);
    ASSERT_EQ(pcache("flush" + dev()).rc, 0);  // dirty_tail moves past every kset
    ASSERT_EQ(pcache("check" + dev()).rc, 0);
    // The first kset (cache segment 0's data area, physical 0) is now before dirty_tail.
    poke(20480 + 12288 + 30, 0x11);
    Outcome c = pcache("check" + dev());
    EXPECT_EQ(c.rc, 1);
    EXPECT_NE(c.out.find("before reaching dirty_tail"), std::string::npos) << c.out;
    EXPECT_EQ(pcache("status --pmem " + pmem + geo()).rc, 1);
    poke(4096 + 17, 0x7f);  // superblock seg_num: CRC fails
    Outcome s = pcache("check" + dev());
    EXPECT_EQ(s.rc, 1);
    EXPECT_NE(s.out.find("superblock"), std::string::npos) << s.out;
}

TEST_F(CliTest, BadInputIsRefusedAndWritesNothing) {
    // Missing files: exit 3.
    EXPECT_EQ(pcache("status --pmem " + dir.file("nope") + geo()).rc, 3);
    EXPECT_EQ(pcache("check --pmem " + dir.file("nope") + geo()).rc, 3);
    EXPECT_EQ(pcache("format --pmem " + pmem + " --backing " + dir.file("nope") +
                     " --create-size-pmem 8M" + geo())
                  .rc,
              3);
    EXPECT_EQ(pcache("format" + dev()).rc, 3);  // pmem missing and no --create-size-pmem
    // Bad numbers: exit 2, nothing created.
    EXPECT_EQ(pcache("format" + dev() + " --create-size-pmem 12Q").rc, 2);
    EXPECT_EQ(pcache("format" + dev() + " --create-size-pmem 1000").rc, 2);
    EXPECT_EQ(pcache("format --pmem " + pmem + " --backing " + backing +
                     " --segment-size abc --create-size-pmem 8M")
                  .rc,
              2);
    EXPECT_EQ(pcache("format --pmem " + pmem + " --backing " + backing +
                     " --segment-size 1000 --create-size-pmem 8M")
                  .rc,
              2);
    EXPECT_NE(::access(pmem.c_str(), F_OK), 0) << "a refused format created the pmem file";
    // An empty backing file: refused, nothing created.
    const std::string empty = dir.file("empty");
    ASSERT_EQ(std::system(("touch " + empty).c_str()), 0);
    EXPECT_EQ(
        pcache("format --pmem " + pmem + " --backing " + empty + " --create-size-pmem 8M" + geo())
            .rc,
        1);
    EXPECT_NE(::access(pmem.c_str(), F_OK), 0);
    // A foreign image (random bytes): every command refuses, nothing is written.
    {
        std::mt19937 rng(7);
        std::string junk(8 << 20, '\0');
        for (auto& ch : junk) ch = static_cast<char>(rng());
        std::ofstream(pmem, std::ios::binary) << junk;
    }
    const std::string before = slurp(pmem);
    Outcome s = pcache("status --pmem " + pmem + geo());
    EXPECT_EQ(s.rc, 1);
    EXPECT_NE(s.err.find("foreign"), std::string::npos) << s.err;
    EXPECT_EQ(pcache("check" + dev()).rc, 1);
    Outcome d = pcache("dump --pmem " + pmem + geo());  // described in JSON, then refused
    EXPECT_EQ(d.rc, 1);
    EXPECT_NE(d.out.find("\"state\": \"foreign\""), std::string::npos);
    EXPECT_EQ(pcache("format" + dev()).rc, 1);
    EXPECT_EQ(pcache("message" + dev() + " gc_percent 10").rc, 1);
    EXPECT_EQ(pcache("flush" + dev()).rc, 1);
    EXPECT_EQ(slurp(pmem), before) << "a refused command modified a foreign image";
}

TEST_F(CliTest, BlankDeviceAndSmallBackingAreRefused) {
    ASSERT_EQ(std::system(("truncate -s 8M " + pmem).c_str()), 0);
    const std::string blank = slurp(pmem);
    EXPECT_EQ(pcache("status --pmem " + pmem + geo()).rc, 1);
    EXPECT_EQ(pcache("message" + dev() + " gc_percent 10").rc, 1);  // must not format it
    EXPECT_EQ(pcache("flush" + dev()).rc, 1);
    EXPECT_EQ(slurp(pmem), blank);
    // Keys near the end of a 64 MiB backing file, then a 1 MiB backing file: refused.
    format();
    write_dirty(2, (64ull << 20) - 2 * 65536);
    const std::string small = dir.file("small");
    ASSERT_EQ(std::system(("truncate -s 1M " + small).c_str()), 0);
    const std::string before = slurp(pmem);
    const std::string with_small = " --pmem " + pmem + " --backing " + small + geo();
    Outcome c = pcache("check" + with_small);
    EXPECT_EQ(c.rc, 1);
    EXPECT_NE(c.out.find("beyond the backing device"), std::string::npos) << c.out;
    EXPECT_EQ(pcache("flush" + with_small).rc, 1);
    EXPECT_EQ(pcache("message" + with_small + " gc_percent 10").rc, 1);
    EXPECT_EQ(slurp(pmem), before);
    // The wrong segment size is a clear refusal.
    Outcome w = pcache("status --pmem " + pmem);
    EXPECT_EQ(w.rc, 1);
    EXPECT_NE(w.err.find("segment size"), std::string::npos) << w.err;
}

TEST_F(CliTest, Demo) {
    Outcome r = pcache("demo --dir " + dir.path());
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, 8), "0 63 63 ");
    EXPECT_NE(r.out.find("backing_written_bytes"), std::string::npos);
    EXPECT_NE(r.err.find("the backing file matches"), std::string::npos);
    EXPECT_EQ(pcache("demo --dir " + dir.file("missing")).rc, 3);
}

}  // namespace
