// Issue 17 figures (docs/PERFORMANCE.md "Issue 17"), each beside a bound of the same work
// measured in the same run just before it (same request size, queue depth and device), on `mem`
// and `shm-cacheline`. Google Benchmark prints wall time ("Time") and CPU time ("CPU") for each.
//   i17/write_hit[_crc]/DEV/4096        1 thread; ratio_to_bound = / NT copy + fence
//   i17/copy_mt/DEV/4096/threads:N      its bound: the copy + fence alone on N threads (wall time)
//   i17/write_hit_mt/DEV/4096/threads:N aggregate items/s (wall time), N = 1, 2, 4, 8 in order
//   i17/read_hit/DEV/4096               ratio_to_bound = / memcpy of 4 KiB out of the mapping
//   i17/floor/{write,read}_hit/DEV/4096 the engine's cost over the copy with its index in cache:
//                                       16 keys (docs/PERFORMANCE.md "Fourth session", Floors)
//   i17/writeback_{seq,rand}/DEV        ratio_to_bound = / the same backing writes + flushes
//   i17/writeback_rand_uring_qd32/DEV   the same through io_uring, queue depth 32; wall and CPU
//   i17/sustained/DEV                   Runtime on, cache 2x smaller than the working set:
//                                       ops/s and latency percentiles (ns), writeback+GC inside
//   i17/replay_fresh/DEV/N              Cache::open of N keys in a fresh process (exec)
//   i17/crc32c_4k/{one_stream,three_streams}  CRC32C of 4 KiB, one crc32q chain vs three
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "issue17_writeback.hpp"
#include "pcache/blockdev/uring_block_device.hpp"
#include "pcache/runtime.hpp"

namespace pcache::bench {
namespace {

using namespace i17;

// Bytes/s of a memcpy of `size` bytes out of the mapping (the read-hit bound).
template <class P>
double bound_map_copy(Dev d, std::uint64_t size) {
    auto pmem = make_pmem<P>(d, kBoundSpanBytes);
    std::vector<std::byte> out(size);
    const std::uint64_t slots = kBoundSpanBytes / size;
    return ops_per_second([&](std::uint64_t i) {
               std::memcpy(out.data(), pmem->data() + (i * 40503 % slots) * size, size);
               benchmark::DoNotOptimize(out.data());
           }) *
           static_cast<double>(size);
}

template <class P>
Rig<P>*& rig17() {
    static Rig<P>* r = nullptr;
    return r;
}

// Write hits of 4 KiB on 1..8 threads, wall time; the 1-thread run comes first in the same run
// (docs/PERFORMANCE.md divides the aggregates by it: x_one_thread).
template <class P>
void BM_WriteHit17(State& st, Dev d, bool crc) {
    static double bound = 0;
    const std::uint64_t region = kBacking / st.threads();
    const std::uint64_t base = region * st.thread_index();
    auto buf = std::vector<std::byte>(kKey, std::byte{0x3c});
    if (st.thread_index() == 0) {
        bound = bound_pmem_write<P>(d, kKey);
        rig17<P>() = new Rig<P>(d, kPmem, kBacking, CacheOptions{.data_crc = crc});
    }
    std::uint64_t i = 0;
    for (auto _ : st) rig17<P>()->write(&st, base + spread(i++, region), buf);
    const double iters = static_cast<double>(st.iterations());
    st.SetBytesProcessed(static_cast<std::int64_t>(iters * kKey));
    st.SetItemsProcessed(st.iterations());
    st.counters["ratio_to_bound"] = Counter(iters * kKey / bound / st.threads(), Counter::kIsRate);
    st.counters["bound_MBps"] = Counter(bound / 1e6, Counter::kAvgThreads);
    if (st.thread_index() == 0) delete std::exchange(rig17<P>(), nullptr);
}

// The bound of write_hit_mt: the same 4 KiB copy + fence on N threads at once, each thread
// writing its own 64 MiB region in order (as a lane's data head fills its segment), wall time.
// Its N-thread / 1-thread figure is what the machine's memory path allows write_hit_mt.
template <class P>
std::unique_ptr<P>& copy_mt_pmem() {
    static std::unique_ptr<P> p;
    return p;
}
template <class P>
void BM_CopyMt17(State& st, Dev d) {
    const std::uint64_t base = kBoundSpanBytes * static_cast<std::uint64_t>(st.thread_index());
    const std::uint64_t slots = kBoundSpanBytes / kKey;
    const auto buf = std::vector<std::byte>(kKey, std::byte{0x5a});
    if (st.thread_index() == 0)
        copy_mt_pmem<P>() =
            make_pmem<P>(d, kBoundSpanBytes * static_cast<std::uint64_t>(st.threads()));
    std::uint64_t i = 0;
    for (auto _ : st) {  // the loop starts after thread 0's setup (Google Benchmark's barrier)
        P& pmem = *copy_mt_pmem<P>();
        if (!pmem.write(base + (i++ % slots) * kKey, buf, kPmemFlushCache).ok() ||
            !pmem.drain().ok())
            std::abort();
    }
    st.SetItemsProcessed(st.iterations());
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * kKey));
    if (st.thread_index() == 0) copy_mt_pmem<P>().reset();
}

template <class P>
void BM_ReadHit17(State& st, Dev d) {
    constexpr std::uint64_t kSet = 64ull << 20;
    Rig<P> rig(d, kPmem, kBacking);
    auto buf = std::vector<std::byte>(kKey, std::byte{0x3c});
    for (std::uint64_t off = 0; off < kSet; off += kKey) rig.write(nullptr, off, buf);
    const double bound = bound_map_copy<P>(d, kKey);
    std::uint64_t i = 0;
    for (auto _ : st) {
        if (!rig.cache->read(spread(i++, kSet), buf).ok()) std::abort();
        benchmark::DoNotOptimize(buf.data());
    }
    const double iters = static_cast<double>(st.iterations());
    st.SetBytesProcessed(static_cast<std::int64_t>(iters * kKey));
    st.counters["ratio_to_bound"] = Counter(iters * kKey / bound, Counter::kIsRate);
    st.counters["bound_MBps"] = Counter(bound / 1e6);
}

// The engine's own cost per 4 KiB hit when everything it touches besides the data is in the
// CPU caches: 16 keys (64 KiB of offsets), one subtree, so the index, the subtree, the lane and
// the segment table stay in L1/L2. A write's data still streams through the whole pmem device
// (the data head moves on), and its bound is the same one as i17/write_hit's: write + drain
// into a 64 MiB span. A read's 16 keys are in cache, and so is its bound's data: memcpy of the
// same 16 keys' bytes out of the mapping, at the addresses the keys point to. The CPU column
// minus bound_ns is what the engine adds even when nothing misses; a target of r of the bound
// allows bound_ns * (1/r - 1) (scripts/bench_issue17.sh prints both; PERFORMANCE.md "Fourth
// session", Floors).
template <class P>
void BM_Floor17(State& st, Dev d, bool write) {
    constexpr std::uint64_t kKeys = 16;
    Rig<P> rig(d, kPmem, kBacking);
    auto buf = std::vector<std::byte>(kKey, std::byte{0x3c});
    double bound_ns = 0;
    if (write) {
        bound_ns = 1e9 * kKey / bound_pmem_write<P>(d, kKey);
    } else {
        // Each key's bytes carry its offset, to find where the data head put them (segment data
        // areas are 4 KiB aligned in the mapping).
        std::vector<const std::byte*> at(kKeys, nullptr);
        for (std::uint64_t k = 0; k < kKeys; ++k) {
            const std::uint64_t tag = 0x7a6b000000000000ull | k;
            std::memcpy(buf.data(), &tag, sizeof tag);
            rig.write(nullptr, k * kKey, buf);
        }
        const std::byte* base = rig.pmem->data();
        for (std::uint64_t a = 0; a + kKey <= rig.pmem->size(); a += kKey) {
            std::uint64_t tag = 0;
            std::memcpy(&tag, base + a, sizeof tag);
            if ((tag >> 48) == 0x7a6b && (tag & 0xffff) < kKeys &&
                std::memcmp(base + a + sizeof tag, buf.data() + sizeof tag, kKey - sizeof tag) == 0)
                at[tag & 0xffff] = base + a;
        }
        if (std::count(at.begin(), at.end(), nullptr) != 0) {
            st.SkipWithError("the keys' bytes were not found in the mapping");
            return;
        }
        std::vector<std::byte> out(kKey);
        bound_ns = 1e9 / ops_per_second([&](std::uint64_t i) {
                       std::memcpy(out.data(), at[(i * 7) % kKeys], kKey);
                       benchmark::DoNotOptimize(out.data());
                   });
    }
    std::uint64_t i = 0;
    for (auto _ : st) {
        const std::uint64_t off = ((i++ * 7) % kKeys) * kKey;
        if (write) {
            rig.write(&st, off, buf);
        } else {
            if (!rig.cache->read(off, buf).ok()) std::abort();
            benchmark::DoNotOptimize(buf.data());
        }
    }
    if (!write && rig.cache->counters().read_misses != 0)
        st.SkipWithError("a read missed: the floor is of hits only");
    st.counters["bound_ns"] = bound_ns;  // overhead: the CPU column minus this
}

// Sustained random 4 KiB writes over a working set twice the cache, Runtime threads on, every
// write timed (write_blocking: a full cache waits for writeback and GC, inside the figure).
template <class P>
void BM_Sustained(State& st, Dev d) {
    using CacheT = typename Rig<P>::CacheT;
    const std::uint64_t ops = quick_mode() ? 20000 : 300000;  // 2.3x the cache in full runs
    const double bound = bound_pmem_write<P>(d, kKey);
    Rig<P> rig(d, kPmem, 2 * kPmem);
    if (!rig.cache->set_gc_percent(70).ok()) std::abort();  // the kernel's default
    std::vector<std::uint64_t> lat(ops);
    auto buf = std::vector<std::byte>(kKey, std::byte{0x3c});
    std::mt19937_64 rng(17);  // seeded: the same offsets every run
    double wall = 0;
    for (auto _ : st) {
        Runtime<CacheT> rt(*rig.cache);
        if (!rt.start().ok()) std::abort();
        const auto t0 = WallClock::now();
        for (std::uint64_t i = 0; i < ops; ++i) {
            const auto a = WallClock::now();
            if (Status s = rt.write_blocking(rng() % (2 * kPmem / kKey) * kKey, buf).status;
                !s.ok())
                die("sustained write", s);
            lat[i] = static_cast<std::uint64_t>((WallClock::now() - a).count());
        }
        wall = std::chrono::duration<double>(WallClock::now() - t0).count();
        rt.stop();
        if constexpr (requires { rt.stats().pace_waits; }) {  // what write_blocking waited for
            const auto rs = rt.stats();
            st.counters["paced_writes"] = static_cast<double>(rs.paced_writes);
            st.counters["pace_waits"] = static_cast<double>(rs.pace_waits);
            st.counters["busy_waits"] = static_cast<double>(rs.busy_waits);
        }
    }
    // The scheduling tail of this machine, just after and for as long: timed 4 KiB pmem writes
    // (write + drain, the bound's primitive) with no cache and no background thread. Its ops
    // over 1 ms are the OS (other processes on the cores), not the engine: compare os_slow_ops_1ms
    // with slow_ops_1ms (the same wall time).
    std::vector<std::uint64_t> os_lat;
    {
        auto pmem = make_pmem<P>(d, kBoundSpanBytes);
        const std::uint64_t slots = kBoundSpanBytes / kKey;
        const auto end = WallClock::now() + std::chrono::duration<double>(wall);
        for (std::uint64_t i = 0; WallClock::now() < end; ++i) {
            const auto a = WallClock::now();
            if (!pmem->write((i * 40503 % slots) * kKey, buf, kPmemFlushCache).ok() ||
                !pmem->drain().ok())
                std::abort();
            os_lat.push_back(static_cast<std::uint64_t>((WallClock::now() - a).count()));
        }
        std::sort(os_lat.begin(), os_lat.end());
    }
    std::sort(lat.begin(), lat.end());
    auto pct = [](const std::vector<std::uint64_t>& v, double p) {
        return static_cast<double>(v[std::min<std::size_t>(
            v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))]);
    };
    st.counters["ops_per_s"] = static_cast<double>(ops) / wall;
    st.counters["ratio_to_bound"] = static_cast<double>(ops * kKey) / wall / bound;
    st.counters["p50_ns"] = pct(lat, 0.50);
    st.counters["p99_ns"] = pct(lat, 0.99);
    st.counters["p999_ns"] = pct(lat, 0.999);
    st.counters["p9999_ns"] = pct(lat, 0.9999);
    st.counters["max_ns"] = static_cast<double>(lat.back());
    st.counters["os_max_ns"] = static_cast<double>(os_lat.back());
    st.counters["os_slow_ops_1ms"] = static_cast<double>(
        os_lat.end() - std::upper_bound(os_lat.begin(), os_lat.end(), std::uint64_t{1000000}));
    const auto c = rig.cache->counters();
    st.counters["written_back_MiB"] = static_cast<double>(c.backing_written_bytes) / (1 << 20);
    st.counters["gc_ksets"] = static_cast<double>(c.gc_ksets_retired);
    st.counters["busy_returns"] = static_cast<double>(c.busy_returns);  // writes that waited
    st.counters["slow_ops_1ms"] = static_cast<double>(
        lat.end() - std::upper_bound(lat.begin(), lat.end(), std::uint64_t{1000000}));
}

// Replay in a fresh process: the log is built here on a /dev/shm file, then this binary is
// exec'd with --replay-child, which maps it (MemPmem: copies it to anonymous memory first, not
// timed), times Cache::open and writes keys/s to a pipe.
template <class P>
void BM_ReplayFresh(State& st, Dev d) {
    const auto keys = static_cast<std::uint64_t>(st.range(0));
    const std::uint64_t data = keys * 512;
    const std::uint64_t pmem_bytes =
        std::max<std::uint64_t>(kPmem, (data + data / 8 + (64ull << 20)) & ~((16ull << 20) - 1));
    const std::string pmem_path = temp_path("replay-pmem"), back_path = temp_path("replay-back");
    {
        ::setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 1);  // no msync per write: tmpfs
        auto pm = Pmem2Device::open(pmem_path, {.create = true, .size_bytes = pmem_bytes});
        ::unsetenv("PMEM2_FORCE_GRANULARITY");
        auto bk =
            FileBlockDevice::open(back_path, BlockOpenOptions{.create = true, .size_bytes = data});
        if (!pm.ok() || !bk.ok()) die("replay files", pm.ok() ? bk.status() : pm.status());
        prefault(*pm);
        CacheOptions co;
        co.force_format = true;  // a scratch device
        auto c = Cache<Pmem2Device, FileBlockDevice>::format(borrow(*pm), borrow(*bk), co);
        if (!c.ok()) die("replay build", c.status());
        const std::vector<std::byte> b(512, std::byte{0x11});
        for (std::uint64_t k = 0; k < keys; ++k)
            if (Status s = (*c)->write(k * 512, b).status; !s.ok()) die("replay build write", s);
        if (Status s = (*c)->close(); !s.ok()) die("replay close", s);
    }
    std::vector<double> rates;
    for (auto _ : st) {
        int fds[2];
        if (::pipe(fds) != 0) std::abort();
        const pid_t pid = ::fork();
        if (pid == 0) {
            ::dup2(fds[1], 1);
            const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
            ::execl(self.c_str(), self.c_str(), "--replay-child", pmem_path.c_str(),
                    back_path.c_str(), dev_name(d), nullptr);
            ::_exit(127);
        }
        ::close(fds[1]);
        char line[128] = {};
        const ssize_t n = ::read(fds[0], line, sizeof line - 1);
        ::close(fds[0]);
        int status = 0;
        ::waitpid(pid, &status, 0);
        if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("replay child", Status(Errc::io, "failed"));
        std::uint64_t got = 0;
        double secs = 0;
        std::sscanf(line, "%lu %lf", &got, &secs);
        if (got != keys) st.SkipWithError("the child replayed a wrong number of keys");
        rates.push_back(static_cast<double>(keys) / secs);
    }
    ::unlink(pmem_path.c_str());
    ::unlink(back_path.c_str());
    std::sort(rates.begin(), rates.end());
    st.counters["keys_per_s_median"] = rates[rates.size() / 2];
    st.counters["keys_per_s_min"] = rates.front();
    st.counters["keys_per_s_max"] = rates.back();
    st.counters["ratio_to_target"] = rates[rates.size() / 2] / 3e6;
}

// CRC32C of 4 KiB: the three-stream path against the one-stream chain (issue 17 item 3).
void BM_Crc4k(State& st, bool three) {
    std::vector<unsigned char> b(kKey, 0x5a);
    std::uint32_t c = 0;
    for (auto _ : st) {
#if PCACHE_HAVE_X86_CRC
        c = three ? crc::update_sse42(c, b.data(), b.size())
                  : crc::update_sse42_serial(c, b.data(), b.size());
#else
        c = crc::update(c, b.data(), b.size());
        (void)three;
#endif
        benchmark::DoNotOptimize(c);
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * kKey);
}

template <class P>
void register17(Dev d) {
    const std::string dn = dev_name(d);
    auto name = [&](const char* w) { return "i17/" + std::string(w) + "/" + dn; };
    benchmark::RegisterBenchmark((name("write_hit") + "/4096").c_str(), BM_WriteHit17<P>, d, false);
    benchmark::RegisterBenchmark((name("write_hit_crc") + "/4096").c_str(), BM_WriteHit17<P>, d,
                                 true);
    benchmark::RegisterBenchmark((name("copy_mt") + "/4096").c_str(), BM_CopyMt17<P>, d)
        ->ThreadRange(1, 8)
        ->UseRealTime();
    benchmark::RegisterBenchmark((name("write_hit_mt") + "/4096").c_str(), BM_WriteHit17<P>, d,
                                 false)
        ->ThreadRange(1, 8)
        ->UseRealTime();
    benchmark::RegisterBenchmark((name("read_hit") + "/4096").c_str(), BM_ReadHit17<P>, d);
    for (bool write : {true, false})
        benchmark::RegisterBenchmark(
            ("i17/floor/" + std::string(write ? "write_hit/" : "read_hit/") + dn + "/4096").c_str(),
            BM_Floor17<P>, d, write);
    for (bool random : {false, true})
        benchmark::RegisterBenchmark(name(random ? "writeback_rand" : "writeback_seq").c_str(),
                                     BM_Writeback17<P>, d, random)
            ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(name("writeback_rand_uring_qd32").c_str(), BM_WritebackUring<P>, d)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(name("sustained").c_str(), BM_Sustained<P>, d)
        ->Iterations(1)
        ->Unit(benchmark::kSecond);
    benchmark::RegisterBenchmark(name("replay_fresh").c_str(), BM_ReplayFresh<P>, d)
        ->Arg(quick_mode() ? 20000 : 1000000)
        ->Iterations(quick_mode() ? 1 : 5)
        ->Unit(benchmark::kMillisecond);
}

}  // namespace

// The child side of BM_ReplayFresh: prints "keys seconds".
int replay_child(const char* pmem_path, const char* back_path, const char* dev) {
    const bool cacheline = std::string(dev) != "shm-page";  // mem: loaded from a cache-line map
    if (cacheline) ::setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 1);
    auto bk = FileBlockDevice::open(back_path, {});
    auto pm = Pmem2Device::open(pmem_path, {});
    if (!pm.ok() || !bk.ok()) return 2;
    auto run = [&](auto& pmem) -> int {
        using PmemT = std::remove_reference_t<decltype(pmem)>;
        const auto t0 = WallClock::now();
        auto c = Cache<PmemT, FileBlockDevice>::open(borrow(pmem), borrow(*bk), {});
        const double s = std::chrono::duration<double>(WallClock::now() - t0).count();
        if (!c.ok()) return 3;
        std::printf("%lu %.9f\n", static_cast<unsigned long>((*c)->counters().replay_keys), s);
        std::fflush(stdout);
        std::_Exit(0);  // freeing the index is not replay
    };
    if (std::string(dev) != "mem") return run(*pm);
    MemPmem mem(pm->size());
    std::vector<std::byte> chunk(1 << 20);
    for (std::uint64_t off = 0; off < pm->size(); off += chunk.size())
        if (!pm->read(off, chunk).ok() || !mem.write(off, chunk, kPmemDefault).ok()) return 4;
    return run(mem);
}

void register_issue17(bool quick) {
    quick_mode() = quick;
    benchmark::RegisterBenchmark("i17/crc32c_4k/one_stream", BM_Crc4k, false);
    benchmark::RegisterBenchmark("i17/crc32c_4k/three_streams", BM_Crc4k, true);
    register17<MemPmem>(Dev::mem);
    register17<Pmem2Device>(Dev::shm_cacheline);
}

}  // namespace pcache::bench
