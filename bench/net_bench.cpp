// pcache_net_bench: the cache over an NBD backing device whose writes take DELAY us (issue 16
// item 6), each figure against its bound measured in the same run:
//
//  1. writeback throughput: N dirty 4 KiB keys (not contiguous, so one request each) written
//     back by Cache::writeback_step at queue depth QD, versus the raw bound: the same N writes
//     sent straight to the server with libnbd aio at the same QD and size (NbdBlockDevice::
//     write_batch) plus one flush. Target ratio >= 0.80.
//  2. write-hit latency at QD1: a 4 KiB Cache::write (data and key persisted in pmem), versus a
//     4 KiB write straight to the NBD server. Target: >= 50x lower.
//
// The server is nbdkit with nbdkit-pcache-delay-plugin.so (a RAM disk, DELAY us per write) on a
// Unix socket; pmem is a file on /dev/shm. Each figure is repeated RUNS times: min/median/max,
// with the load average before and after (the machine is shared). No pass/fail: a benchmark.
//
//   pcache_net_bench [--delay-us 200] [--qd 32] [--mib 64] [--runs 5] [--plugin PATH]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nbdkit_server.hpp"
#include "pcache/blockdev/backing.hpp"
#include "pcache/blockdev/nbd_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"

namespace {

using namespace pcache;
using Clock = std::chrono::steady_clock;
constexpr std::size_t kReq = 4096;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string loadavg() {
    std::ifstream f("/proc/loadavg");
    std::string a, b, c;
    f >> a >> b >> c;
    return a + " " + b + " " + c;
}

struct Stats {
    std::vector<double> v;
    void add(double x) { v.push_back(x); }
    double min() const { return *std::min_element(v.begin(), v.end()); }
    double max() const { return *std::max_element(v.begin(), v.end()); }
    double median() const {
        auto s = v;
        std::sort(s.begin(), s.end());
        return s.size() % 2 ? s[s.size() / 2] : (s[s.size() / 2 - 1] + s[s.size() / 2]) / 2;
    }
};

[[noreturn]] void die(const std::string& what, const Status& s = {}) {
    std::fprintf(stderr, "pcache_net_bench: %s%s%s\n", what.c_str(), s.ok() ? "" : ": ",
                 s.ok() ? "" : s.to_string().c_str());
    std::exit(1);
}

std::string default_plugin() {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return "nbdkit-pcache-delay-plugin.so";
    std::string dir(self, static_cast<std::size_t>(n));
    return dir.substr(0, dir.rfind('/') + 1) + "nbdkit-pcache-delay-plugin.so";
}

std::vector<std::byte> fill(std::size_t n, unsigned seed) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 131 + seed * 7) & 0xff);
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    unsigned delay_us = 200, qd = 32, mib = 64, runs = 5, batch = 0, raw_waves = 0;
    std::string plugin = default_plugin();
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--delay-us")
            delay_us = unsigned(std::stoul(v));
        else if (k == "--qd")
            qd = unsigned(std::stoul(v));
        else if (k == "--mib")
            mib = unsigned(std::stoul(v));
        else if (k == "--runs")
            runs = unsigned(std::stoul(v));
        else if (k == "--batch")
            batch = unsigned(std::stoul(v));
        else if (k == "--raw-waves")  // the raw bound sent as waves of N (diagnosis)
            raw_waves = unsigned(std::stoul(v));
        else if (k == "--plugin")
            plugin = v;
        else
            die("unknown option " + k);
    }
    const std::size_t n = std::size_t(mib) << 20 >> 12;  // 4 KiB requests
    char tmpl[] = "/dev/shm/pcache-net-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp");
    const std::string dir = tmpl;
    testutil::NbdkitServer server(dir + "/sock",
                                  {"--threads", std::to_string(std::max(16u, qd * 2)), plugin,
                                   "size=" + std::to_string(std::uint64_t(mib) * 2 + 64) + "M",
                                   "delay_us=" + std::to_string(delay_us)});
    if (!server.start()) die("nbdkit with " + plugin + " did not start");
    const std::string load_before = loadavg();
    std::printf("# NBD backing, %u us per write, QD %u, %zu x 4 KiB = %u MiB per run, %u runs\n",
                delay_us, qd, n, mib, runs);

    Stats raw_mbs, cache_mbs, ratio, direct_us, hit_us, lat_ratio;
    const auto data = fill(kReq, 1);
    for (unsigned run = 0; run < runs; ++run) {
        // 1a. raw bound: n writes at stride 8 KiB (never contiguous), QD qd, then a flush.
        NbdOptions no;
        no.queue_depth = qd;
        auto dev = NbdBlockDevice::open(server.uri(), no);
        if (!dev.ok()) die("open", dev.status());
        std::vector<WriteRequest> reqs(n);
        for (std::size_t i = 0; i < n; ++i) reqs[i] = {std::uint64_t(i) * 2 * kReq, data, false};
        if (run == 0)  // untimed: the server's first touch of its pages is not the network
            if (Status s = dev->write_batch(reqs); !s.ok()) die("warm-up write_batch", s);
        auto t0 = Clock::now();
        for (std::size_t at = 0; at < n;) {
            const std::size_t k = raw_waves ? std::min<std::size_t>(raw_waves, n - at) : n;
            if (Status s = dev->write_batch(std::span(reqs).subspan(at, k)); !s.ok())
                die("raw write_batch", s);
            at += k;
        }
        if (Status s = dev->flush(); !s.ok()) die("raw flush", s);
        const double raw_s = secs(Clock::now() - t0);

        // 1b. the cache: the same n keys dirty in pmem, then written back until clean.
        const std::string pmem_path = dir + "/pmem";
        ::unlink(pmem_path.c_str());
        Pmem2OpenOptions po;
        po.create = true;
        po.size_bytes = std::max<std::uint64_t>(512, std::uint64_t(mib) * 2 + 64) << 20;
        auto pmem = Pmem2Device::open(pmem_path, po);
        if (!pmem.ok()) die("pmem", pmem.status());
        BackingOpenOptions bo;
        bo.queue_depth = qd;
        auto backing = open_backing(server.uri(), bo);
        if (!backing.ok()) die("backing", backing.status());
        CacheOptions co;
        co.writeback_queue_depth = batch ? batch : qd;
        auto cache =
            Cache<Pmem2Device, BackingDevice>::format(borrow(*pmem), borrow(**backing), co);
        if (!cache.ok()) die("cache", cache.status());
        Cache<Pmem2Device, BackingDevice>& c = **cache;
        for (std::size_t i = 0; i < n; ++i)
            if (Status s = c.write(std::uint64_t(i) * 2 * kReq, data).status; !s.ok())
                die("cache write", s);
        if (Status s = c.flush(); !s.ok()) die("cache flush", s);
        t0 = Clock::now();
        while (c.dirty_bytes() > 0) {
            auto r = c.writeback_step();
            if (!r.status.ok()) die("writeback", r.status);
            if (!r.progressed) break;
        }
        const double wb_s = secs(Clock::now() - t0);
        if (c.dirty_bytes() != 0) die("writeback did not finish");
        const double mb = double(n * kReq) / 1e6;
        raw_mbs.add(mb / raw_s);
        cache_mbs.add(mb / wb_s);
        ratio.add(raw_s / wb_s);

        // 2. QD1 latency: write hits in the cache versus writes straight to the server.
        Stats d, h;
        for (int i = 0; i < 300; ++i) {
            const auto a = Clock::now();
            if (Status s = dev->write(std::uint64_t(i) * kReq, data, false); !s.ok())
                die("direct write", s);
            d.add(secs(Clock::now() - a) * 1e6);
        }
        for (int i = 0; i < 3000; ++i) {
            const auto a = Clock::now();
            if (Status s = c.write(std::uint64_t(i % 256) * kReq, data).status; !s.ok())
                die("cache write hit", s);
            h.add(secs(Clock::now() - a) * 1e6);
        }
        direct_us.add(d.median());
        hit_us.add(h.median());
        lat_ratio.add(d.median() / h.median());
        if (Status s = c.close(); !s.ok()) die("close", s);
        std::printf(
            "run %u: raw %.1f MB/s, writeback %.1f MB/s, ratio %.2f; direct write %.1f us, "
            "cache write hit %.2f us (x%.0f)\n",
            run + 1, mb / raw_s, mb / wb_s, raw_s / wb_s, d.median(), h.median(),
            d.median() / h.median());
        std::fflush(stdout);
    }
    const std::string load_after = loadavg();
    const auto row = [](const char* name, const Stats& s, const char* fmt) {
        std::printf("| %s | ", name);
        std::printf(fmt, s.min());
        std::printf(" | ");
        std::printf(fmt, s.median());
        std::printf(" | ");
        std::printf(fmt, s.max());
        std::printf(" |\n");
    };
    std::printf("\n| figure | min | median | max |\n|---|---|---|---|\n");
    row("raw bound, libnbd aio (MB/s)", raw_mbs, "%.1f");
    row("writeback through the cache (MB/s)", cache_mbs, "%.1f");
    row("writeback / raw bound (target >= 0.80)", ratio, "%.2f");
    row("write straight to NBD, QD1 (us, median of 300)", direct_us, "%.1f");
    row("cache write hit, QD1 (us, median of 3000)", hit_us, "%.2f");
    row("latency ratio (target >= 50)", lat_ratio, "%.0f");
    std::printf("\nload average before: %s; after: %s\n", load_before.c_str(), load_after.c_str());
    server.kill(SIGKILL);
    ::unlink((dir + "/pmem").c_str());
    ::unlink((dir + "/sock").c_str());
    ::rmdir(dir.c_str());
    return 0;
}
