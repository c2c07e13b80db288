// Issue 15: no command loses data by an operating mistake, every argument is checked, every
// message says what is wrong. One test per numbered item of the issue (serve's own behaviour
// under signals, FUSE and a full tmpfs is in tests/e2e/serve_safety.sh). Each drives the built
// `pcache` binary; PCACHE_CLI_TOOL=path runs them against another build (an older binary).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "cli_run.hpp"
#include "temp_dir.hpp"

namespace {

using pcache::testutil::Outcome;
using pcache::testutil::run_captured;
using pcache::testutil::slurp;
using pcache::testutil::TempDir;

bool has(const std::string& text, const std::string& what) {
    return text.find(what) != std::string::npos;
}

class SafetyTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(dir.ok());
        pmem = dir.file("pmem");
        backing = dir.file("backing");
        sh("truncate -s 64M " + backing);
    }
    static std::string tool() {
        const char* env = std::getenv("PCACHE_CLI_TOOL");
        return env && *env ? env : PCACHE_TOOL_PATH;
    }
    void sh(const std::string& cmd) { ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd; }
    // Runs `pcache <args>` (shell words) under a 60 s timeout, capturing stdout and stderr.
    Outcome pcache(const std::string& args) {
        return run_captured("timeout 60 " + tool() + " " + args + " </dev/null", dir);
    }
    std::string geo() const { return " --segment-size 256K"; }
    std::string dev() const { return " --pmem " + pmem + " --backing " + backing + geo(); }
    void format() {
        Outcome r = pcache("format" + dev() + " --create-size-pmem 8M");
        ASSERT_EQ(r.rc, 0) << r.err;
    }
    // An OFD write lock on `path`, as a running pcache holds it (this process is the holder).
    int hold_lock(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
        EXPECT_GE(fd, 0);
        struct flock l {};
        l.l_type = F_WRLCK;
        l.l_whence = SEEK_SET;
        EXPECT_EQ(::fcntl(fd, F_OFD_SETLK, &l), 0);
        return fd;
    }

    TempDir dir;
    std::string pmem, backing;
};

// Item 1: a second opener of a cache is refused, naming the holder; the read-only commands
// still work and say the cache is live.
TEST_F(SafetyTest, SecondOpenerIsRefusedNamingTheHolder) {
    format();
    const std::string before = slurp(pmem);
    const std::string me = "in use by pid " + std::to_string(::getpid());
    int fd = hold_lock(pmem);
    for (const std::string& cmd :
         {std::string("flush"), std::string("message"), std::string("import"),
          std::string("export"), std::string("format")}) {
        std::string args = cmd + dev();
        if (cmd == "message") args += " gc_percent 10";
        if (cmd == "import") args += " --input " + backing;
        if (cmd == "export") args += " --output " + dir.file("out");
        if (cmd == "format") args += " --force";
        Outcome r = pcache(args);
        EXPECT_EQ(r.rc, 1) << cmd << ": " << r.err;
        EXPECT_TRUE(has(r.err, me)) << cmd << ": " << r.err;
    }
    EXPECT_EQ(slurp(pmem), before) << "a refused command wrote to the cache";
    for (const std::string cmd : {"status", "check", "dump"}) {
        Outcome r = pcache(cmd + " --pmem " + pmem + geo());
        EXPECT_EQ(r.rc, 0) << cmd << ": " << r.err;
        EXPECT_TRUE(has(r.err, "is live (" + me)) << cmd << ": " << r.err;
    }
    ::close(fd);
    fd = hold_lock(backing);  // the backing is locked too
    Outcome r = pcache("flush" + dev());
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_TRUE(has(r.err, "backing '" + backing + "' is " + me)) << r.err;
    ::close(fd);
    r = pcache("flush" + dev());
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_FALSE(has(r.err, "live")) << r.err;  // its own lock is not someone else's
}

// Item 2: the same file (or a hard link to it) as pmem and backing is refused.
TEST_F(SafetyTest, SameFileAsPmemAndBackingIsRefused) {
    format();
    const std::string before = slurp(pmem);
    sh("ln " + pmem + " " + dir.file("link"));
    for (const std::string& other : {pmem, dir.file("link")}) {
        for (const std::string& cmd : {std::string("flush"), std::string("format --force")}) {
            Outcome r = pcache(cmd + " --pmem " + pmem + " --backing " + other + geo());
            EXPECT_EQ(r.rc, 1) << cmd << " " << other << ": " << r.err;
            EXPECT_TRUE(has(r.err, "are the same file or device")) << r.err;
        }
    }
    EXPECT_EQ(slurp(pmem), before);
}

// Item 3: pmem and backing swapped, or a new cache over a device holding a file system.
TEST_F(SafetyTest, SwappedOrForeignDevicesAreRefused) {
    format();
    const std::string cache_bytes = slurp(pmem);
    // swapped: the cache as backing of a new cache on the old backing
    Outcome r = pcache("format --pmem " + backing + " --backing " + pmem + geo() + " --force");
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_TRUE(has(r.err, "holds a pcache cache superblock: are --pmem and --backing swapped?"))
        << r.err;
    r = pcache("flush --pmem " + dir.file("new") + " --backing " + pmem + geo());
    EXPECT_NE(r.rc, 0);
    EXPECT_EQ(slurp(pmem), cache_bytes);
    // a backing with a file system, for a new cache: refused unless --force-backing
    const std::string fs = dir.file("ext4");
    sh("truncate -s 64M " + fs + " && mkfs.ext4 -q -F " + fs + " >/dev/null 2>&1");
    const std::string newp = dir.file("newpmem");
    r = pcache("format --pmem " + newp + " --create-size-pmem 8M --backing " + fs + geo());
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_TRUE(has(r.err, "holds a ext4 signature (libblkid)")) << r.err;
    EXPECT_NE(::access(newp.c_str(), F_OK), 0) << "the refused format left a pmem file";
    // a pmem that holds a file system is not formatted over
    const std::string fs_bytes = slurp(fs);
    r = pcache("format --pmem " + fs + " --backing " + backing + geo());
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_TRUE(has(r.err, "pmem '" + fs + "' holds a ext4 signature")) << r.err;
    EXPECT_EQ(slurp(fs), fs_bytes);
    r = pcache("format --pmem " + newp + " --create-size-pmem 8M --backing " + fs + geo() +
               " --force-backing");
    EXPECT_EQ(r.rc, 0) << r.err;
}

// Item 4: a sparse pmem file is allocated before it is mapped (SIGBUS on a full tmpfs
// otherwise: tests/e2e/serve_safety.sh runs that case).
TEST_F(SafetyTest, SparsePmemFileIsAllocatedBeforeUse) {
    sh("truncate -s 8M " + pmem);
    Outcome r = pcache("format" + dev());
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "was a sparse file: allocated it in full")) << r.err;
    struct stat st {};
    ASSERT_EQ(::stat(pmem.c_str(), &st), 0);
    EXPECT_GE(static_cast<long long>(st.st_blocks) * 512, 8ll << 20);
}

// Item 7: every number is validated (usage error, exit 2, naming the option).
TEST_F(SafetyTest, EveryNumberIsValidated) {
    sh("mkdir " + dir.file("mnt"));
    const std::string mnt = " --fuse " + dir.file("mnt");
    const std::pair<std::string, std::string> cases[] = {
        {"sim --seconds -1", "--seconds \"-1\""},
        {"sim --segs 4000000000", "--segs \"4000000000\""},
        {"sim --n-ksets 0", "--n-ksets \"0\""},
        {"sim --ops 20 --crash-at 1000000", "--crash-at 1000000: no such crash image"},
        {"serve --memory 1M --threads -1" + mnt, "--threads \"-1\""},
        {"serve --memory 100T" + mnt, "--memory 100T: more than half of this machine's memory"},
        {"serve" + dev() + " --ksets -1" + mnt, "--ksets \"-1\""},
        {"serve" + dev() + " --nbd-port 70000 --dry-run", "--nbd-port \"70000\""},
        {"serve" + dev() + " --nbd-port 0 --dry-run", "--nbd-port \"0\""},
        {"bench --filter '['", "--filter \"[\": not a regular expression"},
        {"dump --pmem " + pmem + " --keys -1", "--keys \"-1\""},
    };
    for (const auto& [args, says] : cases) {
        Outcome r = pcache(args);
        EXPECT_EQ(r.rc, 2) << args << ": " << r.err;
        EXPECT_TRUE(has(r.err, says)) << args << ": " << r.err;
    }
    // serve refuses a backing that is not a multiple of 512 bytes, as format does
    format();
    sh("truncate -s 1000 " + dir.file("odd"));
    Outcome r = pcache("serve --pmem " + pmem + " --backing " + dir.file("odd") + geo() + mnt);
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_TRUE(has(r.err, "is 1000 B: expected a non-zero multiple of 512 B")) << r.err;
}

// Item 8: messages that say what is wrong, and one exit code per mistake.
TEST_F(SafetyTest, MessagesSayWhatIsWrong) {
    format();
    Outcome r = pcache("status --pmem " + pmem);  // formatted with 256K, opened with 16M
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.err, "reads as a cache with --segment-size 256K, not 16M")) << r.err;
    r = pcache("check --pmem " + pmem + " --segment-size 128K");
    EXPECT_TRUE(has(r.err, "--segment-size 256K, not 128K")) << r.err;
    // an empty backing is not a backing, for check as for every other command
    sh("truncate -s 0 " + dir.file("empty"));
    r = pcache("check --pmem " + pmem + " --backing " + dir.file("empty") + geo());
    EXPECT_EQ(r.rc, 1) << r.out;
    EXPECT_TRUE(has(r.err, "is 0 B: expected a non-zero multiple of 512 B")) << r.err;
    // check's summary says "no problems", not "clean" (which means no dirty data)
    r = pcache("check --pmem " + pmem + geo());
    EXPECT_EQ(r.rc, 0);
    EXPECT_TRUE(has(r.out, ": no problems;")) << r.out;
    EXPECT_FALSE(has(r.out, "clean")) << r.out;
    // dump of a damaged superblock still prints the JSON, and says what is wrong
    sh("cp " + pmem + " " + dir.file("bad") + " && printf XXXX | dd of=" + dir.file("bad") +
       " bs=1 seek=4100 conv=notrunc status=none");
    r = pcache("dump --pmem " + dir.file("bad") + geo());
    EXPECT_EQ(r.rc, 1);
    EXPECT_TRUE(has(r.out, "\"state\": \"bad_superblock\"")) << r.out;
    EXPECT_TRUE(has(r.err, "superblock.crc")) << r.err;
    // a directory as backing: exit 1 and the same words from every command
    sh("mkdir " + dir.file("d") + " " + dir.file("mnt"));
    const std::string d = " --backing " + dir.file("d") + geo();
    for (const std::string& args :
         {"status --pmem " + pmem + d, "check --pmem " + pmem + d, "dump --pmem " + pmem + d,
          "flush --pmem " + pmem + d, "message --pmem " + pmem + d + " gc_percent 5",
          "format --force --pmem " + pmem + d, "export -o " + dir.file("o") + " --pmem " + pmem + d,
          "serve --fuse " + dir.file("mnt") + " --pmem " + pmem + d}) {
        r = pcache(args);
        EXPECT_EQ(r.rc, 1) << args << ": " << r.err;
        EXPECT_TRUE(has(r.err, "backing '" + dir.file("d") + "' is a directory")) << r.err;
    }
    // "block device" only for block devices
    r = pcache("serve --fuse " + dir.file("mnt") + " --pmem " + pmem + " --backing " +
               dir.file("missing") + geo());
    EXPECT_EQ(r.rc, 3) << r.err;
    EXPECT_FALSE(has(r.err, "block device")) << r.err;
}

// Item 9: a pmem file on a disk file system without DAX gets one warning line.
TEST_F(SafetyTest, WarnsWhenPmemIsOnADiskFileSystem) {
    TempDir disk("/var/tmp");
    ASSERT_TRUE(disk.ok());
    struct statfs fs {};
    ASSERT_EQ(::statfs(disk.path().c_str(), &fs), 0);
    if (fs.f_type != 0xEF53 && fs.f_type != 0x58465342 && fs.f_type != 0x9123683E)
        GTEST_SKIP() << "/var/tmp is not ext4/xfs/btrfs (f_type " << std::hex << fs.f_type << ")";
    const std::string p = disk.file("pmem");
    Outcome r =
        pcache("format --pmem " + p + " --create-size-pmem 8M --backing " + backing + geo());
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "without DAX: every flush is a disk fsync")) << r.err;
    r = pcache("flush --pmem " + p + " --backing " + backing + geo());
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "without DAX")) << r.err;
    format();
    r = pcache("flush" + dev());  // none on tmpfs
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_FALSE(has(r.err, "DAX")) << r.err;
    // item 8: format --force on a pmem it cannot write fails before it says it discards anything
    if (std::system(("chattr +i " + p + " 2>/dev/null").c_str()) != 0)
        FAIL() << "chattr +i " << p << " failed (e2fsprogs; root)";
    r = pcache("format --force --pmem " + p + " --backing " + backing + geo());
    sh("chattr -i " + p);
    EXPECT_EQ(r.rc, 3) << r.err;
    EXPECT_TRUE(has(r.err, "Operation not permitted")) << r.err;
    EXPECT_FALSE(has(r.err, "discarding")) << r.err;
}

// Item 10: --version, help CMD, defaults shown, internal options hidden.
TEST_F(SafetyTest, VersionAndHelp) {
    Outcome r = pcache("--version");
    EXPECT_EQ(r.rc, 0);
    EXPECT_EQ(r.out.rfind("pcache ", 0), 0u) << r.out;
    r = pcache("help flush");
    EXPECT_EQ(r.rc, 0);
    EXPECT_TRUE(has(r.out, "usage: pcache flush")) << r.out;
    EXPECT_EQ(pcache("help nosuch").rc, 2);
    r = pcache("message --help");
    EXPECT_FALSE(has(r.out, "--words")) << r.out;
    EXPECT_TRUE(has(pcache("serve --help").out, "--segment-size arg (=16M)"));
    EXPECT_TRUE(has(pcache("sim --help").out, "--ops arg (=10000)"));
}

// NBD has no authentication: --nbd-port listens on loopback unless --nbd-address says otherwise
// (before, nbdkit listened on every interface: the whole device, writable, to the network).
TEST_F(SafetyTest, NbdOverTcpListensOnLoopbackUnlessAskedOtherwise) {
    Outcome r = pcache("serve" + dev() + " --nbd-port 10809 --dry-run");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.out, "--ipaddr 127.0.0.1 --port 10809")) << r.out;
    EXPECT_TRUE(has(r.out, "announce=nbd://127.0.0.1:10809")) << r.out;
    r = pcache("serve" + dev() + " --nbd-port 10809 --nbd-address :: --dry-run");
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.out, "--ipaddr :: --port 10809")) << r.out;
    EXPECT_TRUE(has(r.out, "announce=nbd://[::]:10809")) << r.out;
    r = pcache("serve" + dev() + " --nbd " + dir.file("sock") + " --nbd-address 0.0.0.0 --dry-run");
    EXPECT_EQ(r.rc, 2) << r.out;
    EXPECT_TRUE(has(r.err, "--nbd-address goes with --nbd-port")) << r.err;
}

// Item 10: the demo's counters describe the run the user saw (the workload, then the reopen).
TEST_F(SafetyTest, DemoCountersDescribeTheWholeRun) {
    Outcome r = pcache("demo --dir " + dir.path());
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.out, "workload") && has(r.out, "reopen+writeback")) << r.out;
    const auto row = r.out.find("\npmem_written_bytes");
    ASSERT_NE(row, std::string::npos) << r.out;
    unsigned long long workload = 0, reopen = 0;
    ASSERT_EQ(
        std::sscanf(r.out.c_str() + row, "\npmem_written_bytes %llu %llu", &workload, &reopen), 2)
        << r.out;
    EXPECT_GE(workload, 1500ull * 4096) << "the workload's writes are not in its column";
}

// Item 11: export and import through the cache.
TEST_F(SafetyTest, ExportAndImportThroughTheCache) {
    format();
    const std::string in = dir.file("in"), out = dir.file("out");
    sh("head -c 3000001 /dev/urandom > " + in);  // not a whole number of sectors
    Outcome r = pcache("import" + dev() + " --input " + in);
    ASSERT_EQ(r.rc, 0) << r.err;
    EXPECT_TRUE(has(r.err, "imported 3000001 B")) << r.err;
    r = pcache("export" + dev() + " --output " + out);
    ASSERT_EQ(r.rc, 0) << r.err;
    const std::string got = slurp(out);
    ASSERT_EQ(got.size(), 64u << 20);
    EXPECT_EQ(got.substr(0, 3000001), slurp(in));
    EXPECT_EQ(got.substr(3000001, 4096), std::string(4096, '\0'));
    r = pcache("export" + dev() + " --output " + out);
    EXPECT_EQ(r.rc, 1) << "an existing output file was overwritten";
    ASSERT_EQ(pcache("flush" + dev()).rc, 0);  // and written back, the backing file holds it
    EXPECT_EQ(slurp(backing).substr(0, 3000001), slurp(in));
    // too large an input is refused before anything is written
    sh("truncate -s 65M " + dir.file("big"));
    const std::string before = slurp(pmem);
    r = pcache("import" + dev() + " --input " + dir.file("big"));
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_TRUE(has(r.err, "larger than the device")) << r.err;
    EXPECT_EQ(slurp(pmem), before);
}

}  // namespace
