// The engine benchmark suite: each figure beside the hardware bound for the same work, measured
// in the same run (bench_rig.hpp says what each bound is). Counters:
//   ratio_to_bound  engine throughput / bound throughput (for N threads: / (N x bound)); a
//                   plain ratio, although Google Benchmark prints rate counters with "/s"
// Times are CPU times (steadier than wall time on a loaded machine), except for the two-thread
// write figures, which are wall time.
//   bound_MBps      the bound, in MB/s (1e6 bytes), measured in this process
// Run directly (pcache_bench --benchmark_filter=...) or through `pcache bench [--quick]`.
// Devices: shm-page, shm-cacheline and mem always; dax with PCACHE_BENCH_DAX=/dev/daxX.Y or
// --dax=/dev/daxX.Y. Results and the reading of them are in docs/PERFORMANCE.md.
#include <benchmark/benchmark.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "bench_rig.hpp"

namespace pcache::bench {
namespace {

constexpr std::uint64_t kPmemBytes = 512ull << 20;       // the smallest cache device (31 segments)
constexpr std::uint64_t kBackingBytes = 1ull << 30;      // sparse on /dev/shm
constexpr std::uint64_t kWorkingSetBytes = 64ull << 20;  // read/mixed working set (fits)

using benchmark::Counter;
using benchmark::State;

std::vector<std::byte> pattern(std::uint64_t size) {
    return std::vector<std::byte>(size, std::byte{0xa5});
}

// ratio_to_bound = (bytes / bound) per second of benchmark time: GB divides by the time and
// sums over threads; dividing by `threads` compares with threads x the one-thread bound.
void report(State& st, double bytes_per_iter, double bound_bytes_per_s) {
    st.SetBytesProcessed(
        static_cast<std::int64_t>(static_cast<double>(st.iterations()) * bytes_per_iter));
    st.counters["ratio_to_bound"] = Counter(
        static_cast<double>(st.iterations()) * bytes_per_iter / bound_bytes_per_s / st.threads(),
        Counter::kIsRate);
    st.counters["bound_MBps"] = Counter(bound_bytes_per_s / 1e6, Counter::kAvgThreads);
}

// Spreads offsets of `size` bytes over a region (odd multiplier: every slot is visited).
std::uint64_t slot_off(std::uint64_t i, std::uint64_t size, std::uint64_t region_bytes) {
    const std::uint64_t slots = region_bytes / size;
    return (i * 40503 % slots) * size;
}

// ---- bounds as benchmarks of their own (the table's "bound" rows) ----

template <class P>
void BM_BoundPmemWrite(State& st, Dev d) {
    const auto size = static_cast<std::uint64_t>(st.range(0));
    auto pmem = make_pmem<P>(d, kBoundSpanBytes);
    auto buf = pattern(size);
    std::uint64_t i = 0;
    for (auto _ : st) {
        // Sequential, as the engine's data head fills a segment.
        if (!pmem->write((i++ % (kBoundSpanBytes / size)) * size, buf, kPmemFlushCache).ok())
            std::abort();
        if (!pmem->drain().ok()) std::abort();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * size));
}

template <class P>
void BM_BoundPmemRead(State& st, Dev d) {
    const auto size = static_cast<std::uint64_t>(st.range(0));
    auto pmem = make_pmem<P>(d, kBoundSpanBytes);
    auto buf = pattern(size);
    for (std::uint64_t off = 0; off < kBoundSpanBytes; off += size)
        (void)pmem->write(off, buf, kPmemFlushCache);
    if (!pmem->drain().ok()) std::abort();
    std::uint64_t i = 0;
    for (auto _ : st) {
        if (!pmem->read(slot_off(i++, size, kBoundSpanBytes), buf).ok()) std::abort();
        benchmark::DoNotOptimize(buf.data());
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * size));
}

void BM_BoundBacking(State& st, bool write) {
    const auto size = static_cast<std::uint64_t>(st.range(0));
    FileBlockDevice dev = make_backing(kBoundSpanBytes);
    auto buf = pattern(size);
    for (std::uint64_t off = 0; off < kBoundSpanBytes; off += size)
        (void)dev.write(off, buf, false);
    std::uint64_t i = 0;
    for (auto _ : st) {
        const std::uint64_t off = (i++ % (kBoundSpanBytes / size)) * size;
        if (!(write ? dev.write(off, buf, false) : dev.read(off, buf)).ok()) std::abort();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * size));
}

// ---- engine figures ----

// Shared by the threads of one run; thread 0 creates it before the loop and frees it after
// (Google Benchmark's start and stop barriers order that against the other threads).
template <class P>
Rig<P>*& shared_rig() {
    static Rig<P>* rig = nullptr;
    return rig;
}

// Write hit: the cache has room (a full cache is drained outside the timer).
template <class P>
void BM_WriteHit(State& st, Dev d) {
    const auto size = static_cast<std::uint64_t>(st.range(0));
    static double bound = 0;  // the memo is not thread-safe: thread 0 measures
    if (st.thread_index() == 0) {
        bound = bound_pmem_write<P>(d, size);
        shared_rig<P>() = new Rig<P>(d, kPmemBytes, kBackingBytes);
    }
    auto buf = pattern(size);
    const std::uint64_t region = kBackingBytes / st.threads();
    const std::uint64_t base = region * st.thread_index();
    std::uint64_t i = 0;
    for (auto _ : st) shared_rig<P>()->write(&st, base + slot_off(i++, size, region), buf);
    report(st, static_cast<double>(size), bound);
    if (st.thread_index() == 0) delete std::exchange(shared_rig<P>(), nullptr);
}

// Read hit: `size` bytes out of keys of `key_size` bytes, all in the cache.
template <class P>
void BM_ReadHit(State& st, Dev d, bool data_crc) {
    const auto size = static_cast<std::uint64_t>(st.range(0));
    const auto key_size = static_cast<std::uint64_t>(st.range(1));
    Rig<P> rig(d, kPmemBytes, kBackingBytes, CacheOptions{.data_crc = data_crc});
    auto key = pattern(key_size);
    for (std::uint64_t off = 0; off < kWorkingSetBytes; off += key_size)
        rig.write(nullptr, off, key);
    const double bound = bound_pmem_read<P>(d, size);
    std::vector<std::byte> out(size);
    std::uint64_t i = 0;
    const auto hits0 = rig.cache->counters().read_hits;
    for (auto _ : st) {
        if (!rig.cache->read(slot_off(i++, size, kWorkingSetBytes), out).ok()) std::abort();
        benchmark::DoNotOptimize(out.data());
    }
    if (rig.cache->counters().read_hits - hits0 != static_cast<std::uint64_t>(st.iterations()))
        st.SkipWithError("a read missed");
    report(st, static_cast<double>(size), bound);
}

// Read miss, straight from the backing device (fill off), or kept as a CLEAN key (fill on).
template <class P>
void BM_ReadMiss(State& st, Dev d, bool fill) {
    const auto size = static_cast<std::uint64_t>(st.range(0));
    Rig<P> rig(d, kPmemBytes, kBackingBytes, CacheOptions{.fill_on_read_miss = fill});
    const double backing_s = 1 / bound_backing(false, size);
    const double bound = 1 / (backing_s + (fill ? 1 / bound_pmem_write<P>(d, size) : 0));
    const std::vector<std::byte> chunk(1 << 20, std::byte{0x3c});
    for (std::uint64_t off = 0; off < kBackingBytes; off += chunk.size())
        if (Status s = rig.backing.write(off, chunk, false); !s.ok()) die("backing", s);
    std::vector<std::byte> out(size);
    std::uint64_t i = 0;
    const auto misses0 = rig.cache->counters().read_misses;
    for (auto _ : st) {
        if (fill && (i & 1023) == 1023 && rig.cache->segs_used() + 3 >= rig.cache->n_segs()) {
            st.PauseTiming();  // full of clean keys: collect them (a full cache skips fills)
            rig.drain();
            st.ResumeTiming();
        }
        // Sequential offsets over the whole backing device: never in the cache yet.
        if (!rig.cache->read((i++ * size) % kBackingBytes, out).ok()) std::abort();
        benchmark::DoNotOptimize(out.data());
    }
    report(st, static_cast<double>(size), bound);
    st.counters["miss_fraction"] =
        static_cast<double>(rig.cache->counters().read_misses - misses0) /
        static_cast<double>(std::max<benchmark::IterationCount>(st.iterations(), 1));
}

// 70 % reads, 30 % writes, 4 KiB, over a cached working set.
template <class P>
void BM_Mixed7030(State& st, Dev d) {
    constexpr std::uint64_t kSize = 4096;
    Rig<P> rig(d, kPmemBytes, kBackingBytes);
    auto buf = pattern(kSize);
    for (std::uint64_t off = 0; off < kWorkingSetBytes; off += kSize) rig.write(nullptr, off, buf);
    const double per_op_s =
        0.7 / bound_pmem_read<P>(d, kSize) + 0.3 / bound_pmem_write<P>(d, kSize);
    std::uint64_t i = 0;
    for (auto _ : st) {
        const std::uint64_t off = slot_off(i, kSize, kWorkingSetBytes);
        if (i++ % 10 < 7) {
            if (!rig.cache->read(off, buf).ok()) std::abort();
        } else {
            rig.write(&st, off, buf);
        }
    }
    report(st, static_cast<double>(kSize), 1 / per_op_s);
}

// Overwrite-heavy: 4 KiB writes at 512-byte steps into one 4 MiB subtree of 64 KiB keys, so
// every write trims, splits or deletes older keys.
template <class P>
void BM_Overwrite(State& st, Dev d) {
    constexpr std::uint64_t kSize = 4096, kRegion = format::kSubtreeBytes;
    Rig<P> rig(d, kPmemBytes, kBackingBytes);
    auto big = pattern(64 << 10), buf = pattern(kSize);
    for (std::uint64_t off = 0; off < kRegion; off += big.size()) rig.write(nullptr, off, big);
    const double bound = bound_pmem_write<P>(d, kSize);
    std::uint64_t i = 0;
    for (auto _ : st) rig.write(&st, (i++ * 7 * 512) % (kRegion - kSize), buf);
    report(st, static_cast<double>(kSize), bound);
}

// Replay: a log of `keys` 512-byte keys (built once, outside the timer), then Cache::open.
// Bound: reading the log's kset bytes with Pmem::read, 5144-byte windows, as replay must.
template <class P>
void BM_Replay(State& st, Dev d) {
    const auto keys = static_cast<std::uint64_t>(st.range(0));
    const std::uint64_t data_bytes = keys * 512;
    const std::uint64_t pmem_bytes = std::max<std::uint64_t>(
        kPmemBytes, (data_bytes + data_bytes / 8 + (64ull << 20)) & ~((16ull << 20) - 1));
    Rig<P> rig(d, pmem_bytes, data_bytes);
    auto buf = pattern(512);
    for (std::uint64_t k = 0; k < keys; ++k) rig.write(nullptr, k * 512, buf);
    if (Status s = rig.cache->close(); !s.ok()) die("close", s);
    rig.cache.reset();
    const double ksets =
        static_cast<double>((keys + format::kKsetKeysMax - 1) / format::kKsetKeysMax);
    const double bound_s = ksets * static_cast<double>(format::kKsetBytesMax) /
                           bound_pmem_read<P>(d, format::kKsetBytesMax);
    for (auto _ : st) {
        auto c = Rig<P>::CacheT::open(borrow(*rig.pmem), borrow(rig.backing), {});
        if (!c.ok()) die("replay", c.status());
        if (c.value()->counters().replay_keys != keys)
            st.SkipWithError("replayed a wrong number of keys");
        st.PauseTiming();
        c.value().reset();  // freeing a million index nodes is not replay
        st.ResumeTiming();
    }
    st.counters["keys_per_s"] =
        Counter(static_cast<double>(keys), Counter::kIsIterationInvariantRate);
    st.counters["ratio_to_target"] =
        Counter(static_cast<double>(keys) / 1e6, Counter::kIsIterationInvariantRate);  // 1 M keys/s
    st.counters["ratio_to_bound"] = Counter(bound_s, Counter::kIsIterationInvariantRate);
}

// Writeback of 32 MiB of dirty 4 KiB keys (written outside the timer). Bound: pwrite of the
// same 4 KiB pieces to the same kind of backing file.
template <class P>
void BM_Writeback(State& st, Dev d) {
    constexpr std::uint64_t kSize = 4096, kDirty = 32ull << 20;
    Rig<P> rig(d, kPmemBytes, kBackingBytes);
    const double bound = bound_backing(true, kSize);
    auto buf = pattern(kSize);
    std::uint64_t round = 0;
    for (auto _ : st) {
        st.PauseTiming();
        rig.drain();
        for (std::uint64_t off = 0; off < kDirty; off += kSize)
            rig.write(nullptr, (round * kDirty + off) % kBackingBytes, buf);
        if (Status s = rig.cache->flush(); !s.ok()) die("flush", s);
        ++round;
        st.ResumeTiming();
        for (;;) {
            auto w = rig.cache->writeback_step();
            if (!w.status.ok()) die("writeback", w.status);
            if (!w.progressed) break;
        }
    }
    report(st, static_cast<double>(kDirty), bound);
}

// GC of the ksets of 32 MiB of written-back 4 KiB keys (256 ksets), per kset retired.
// Bound: per kset, reading its 5144 bytes and persisting one 64-byte tail record.
template <class P>
void BM_Gc(State& st, Dev d) {
    constexpr std::uint64_t kSize = 4096, kData = 32ull << 20;
    Rig<P> rig(d, kPmemBytes, kBackingBytes);
    const double per_kset_s =
        static_cast<double>(format::kKsetBytesMax) / bound_pmem_read<P>(d, format::kKsetBytesMax) +
        64.0 / bound_pmem_write<P>(d, 64);
    auto buf = pattern(kSize);
    std::uint64_t retired = 0;
    for (auto _ : st) {
        st.PauseTiming();
        for (std::uint64_t off = 0; off < kData; off += kSize) rig.write(nullptr, off, buf);
        if (Status s = rig.cache->flush(); !s.ok()) die("flush", s);
        while (rig.cache->writeback_step().progressed) {
        }
        const auto before = rig.cache->counters().gc_ksets_retired;
        st.ResumeTiming();
        for (;;) {
            auto g = rig.cache->gc_step();
            if (!g.status.ok()) die("gc", g.status);
            if (!g.progressed) break;
        }
        retired += rig.cache->counters().gc_ksets_retired - before;
    }
    st.counters["ksets_per_s"] = Counter(static_cast<double>(retired), Counter::kIsRate);
    st.counters["ratio_to_bound"] =
        Counter(static_cast<double>(retired) * per_kset_s, Counter::kIsRate);
}

// ---- DRAM of the index (issue 17 item 2; owned by the index work, self-contained) ----

// RssAnon of this process in bytes (/proc/self/status). The cache device and the backing file
// live on /dev/shm (RssShmem, page cache), so RssAnon growth is the engine's own heap.
std::uint64_t rss_anon_bytes() {
    std::FILE* f = std::fopen("/proc/self/status", "r");
    if (!f) die("dram", Status(Errc::io, "cannot open /proc/self/status"));
    char line[256];
    std::uint64_t kib = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "RssAnon: %" SCNu64 " kB", &kib) == 1) {
            found = true;
            break;
        }
    std::fclose(f);
    if (!found) die("dram", Status(Errc::io, "no RssAnon line in /proc/self/status"));
    return kib << 10;
}

// DRAM per cached GiB of 4 KiB keys. A cache of range(0) MiB on shm-page; RssAnon is sampled
// after open (empty index), after filling 3/4 of it with distinct 4 KiB keys ("fresh"), and
// after writing 6x the cache size of random 4 KiB writes over a region twice the cache's data
// (writeback + GC whenever it is full), then filling it again until it is full ("churn").
// Counters: MiB of RssAnon growth per GiB of keys in the index, bytes per key, keys.
void BM_IndexDram(State& st) {
    const std::uint64_t pmem_bytes = static_cast<std::uint64_t>(st.range(0)) << 20;
    constexpr std::uint64_t kKey = 4096;
    for (auto _ : st) {
        Rig<Pmem2Device> rig(Dev::shm_page, pmem_bytes, 4 * pmem_bytes);
        const std::uint64_t data_bytes =
            std::uint64_t(rig.cache->n_segs()) * rig.cache->geometry().seg_data_bytes();
        const std::uint64_t region = 2 * data_bytes / kKey * kKey;
        auto buf = pattern(kKey);
        const std::uint64_t base_rss = rss_anon_bytes();
        auto per_gib = [&](std::uint64_t growth, std::uint64_t keys) {
            return static_cast<double>(growth) / (1 << 20) /
                   (static_cast<double>(keys * kKey) / (1ull << 30));
        };
        // Fresh: 3/4 of the data area in distinct 4 KiB keys, no writeback needed.
        const std::uint64_t fresh = data_bytes * 3 / 4 / kKey;
        for (std::uint64_t i = 0; i < fresh; ++i)
            rig.write(nullptr, slot_off(i, kKey, region), buf);
        const std::uint64_t fresh_keys = rig.cache->index_stats().keys;
        const std::uint64_t fresh_growth = rss_anon_bytes() - base_rss;
        // Churn: 6x the cache size through it, then full again.
        std::uint64_t x = 88172645463325252ull;  // xorshift, seeded: the same run every time
        auto next_off = [&] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            return (x % (region / kKey)) * kKey;
        };
        for (std::uint64_t w = 0; w < 6 * pmem_bytes; w += kKey)
            rig.write(nullptr, next_off(), buf);
        for (;;) {
            const std::uint64_t off = next_off();
            Status s = rig.cache->write(off, buf).status;
            if (s.code() == Errc::busy) break;
            if (!s.ok()) die("write", s);
        }
        const auto churn = rig.cache->index_stats();
        const std::uint64_t churn_growth = rss_anon_bytes() - base_rss;
        st.counters["fresh_MiB_per_GiB"] = per_gib(fresh_growth, fresh_keys);
        st.counters["fresh_B_per_key"] =
            static_cast<double>(fresh_growth) / static_cast<double>(fresh_keys);
        st.counters["fresh_keys"] = static_cast<double>(fresh_keys);
        st.counters["churn_MiB_per_GiB"] = per_gib(churn_growth, churn.keys);
        st.counters["churn_B_per_key"] =
            static_cast<double>(churn_growth) / static_cast<double>(churn.keys);
        st.counters["churn_keys"] = static_cast<double>(churn.keys);
        st.counters["churn_depot_nodes"] = static_cast<double>(churn.depot_nodes);
        // Per node the process holds (its peak of live keys), not per key left at the end.
        st.counters["churn_B_per_held_node"] =
            static_cast<double>(churn_growth) / static_cast<double>(churn.depot_nodes);
    }
}

// ---- registration ----

template <class P>
void register_device(Dev d, bool quick) {
    const std::string dn = dev_name(d);
    auto name = [&](const char* what) { return std::string(what) + "/" + dn; };
    benchmark::RegisterBenchmark(name("bound/pmem_write").c_str(), BM_BoundPmemWrite<P>, d)
        ->Arg(4096)
        ->Arg(65536);
    benchmark::RegisterBenchmark(name("bound/pmem_read").c_str(), BM_BoundPmemRead<P>, d)
        ->Arg(4096)
        ->Arg(65536);
    benchmark::RegisterBenchmark(name("write_hit").c_str(), BM_WriteHit<P>, d)
        ->Arg(4096)
        ->Arg(65536);
    // Two threads: wall time (CPU time would add both threads up), against 2 x the bound.
    benchmark::RegisterBenchmark(name("write_hit").c_str(), BM_WriteHit<P>, d)
        ->Arg(4096)
        ->Arg(65536)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark(name("read_hit").c_str(), BM_ReadHit<P>, d, false)
        ->Args({4096, 4096})
        ->Args({65536, 65536});
    benchmark::RegisterBenchmark(name("read_hit_crc").c_str(), BM_ReadHit<P>, d, true)
        ->Args({4096, 4096})
        ->Args({4096, 65536});
    benchmark::RegisterBenchmark(name("read_miss").c_str(), BM_ReadMiss<P>, d, false)->Arg(4096);
    benchmark::RegisterBenchmark(name("read_miss_fill").c_str(), BM_ReadMiss<P>, d, true)
        ->Arg(4096);
    benchmark::RegisterBenchmark(name("mixed_70_30").c_str(), BM_Mixed7030<P>, d);
    benchmark::RegisterBenchmark(name("overwrite").c_str(), BM_Overwrite<P>, d);
    auto* replay = benchmark::RegisterBenchmark(name("replay").c_str(), BM_Replay<P>, d);
    replay->Arg(100000)->Unit(benchmark::kMillisecond);
    if (!quick) replay->Arg(1000000);
    benchmark::RegisterBenchmark(name("writeback").c_str(), BM_Writeback<P>, d)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(name("gc").c_str(), BM_Gc<P>, d)->Unit(benchmark::kMillisecond);
}

}  // namespace
}  // namespace pcache::bench

namespace pcache::bench {
void register_issue17(bool quick);     // issue17_bench.cpp
void register_write_path(bool quick);  // write_path_bench.cpp
int replay_child(const char* pmem_path, const char* back_path, const char* dev);
}  // namespace pcache::bench

// Own options, removed before Google Benchmark sees the command line:
//   --dax=PATH   also run on this device-DAX path (PCACHE_BENCH_DAX does the same)
//   --quick      short bound measurements and no 1 M-key replay (CI smoke, `pcache bench --quick`)
int main(int argc, char** argv) {
    using namespace pcache::bench;
    bool quick = false;
    int kept = 1;
    if (argc == 5 && !std::strcmp(argv[1], "--replay-child"))  // issue17_bench.cpp's child
        return replay_child(argv[2], argv[3], argv[4]);
    if (const char* env = std::getenv("PCACHE_BENCH_DAX"); env && *env) dax_path() = env;
    for (int i = 1; i < argc; ++i) {
        if (!std::strncmp(argv[i], "--dax=", 6)) {
            dax_path() = argv[i] + 6;
        } else if (!std::strcmp(argv[i], "--quick")) {
            quick = true;
        } else {
            argv[kept++] = argv[i];
        }
    }
    argc = kept;
    if (quick) bound_seconds() = 0.02;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    register_device<pcache::Pmem2Device>(Dev::shm_page, quick);
    register_device<pcache::Pmem2Device>(Dev::shm_cacheline, quick);
    register_device<pcache::MemPmem>(Dev::mem, quick);
    if (!dax_path().empty()) register_device<pcache::Pmem2Device>(Dev::dax, quick);
    for (bool write : {true, false}) {
        benchmark::RegisterBenchmark(write ? "bound/backing_write" : "bound/backing_read",
                                     BM_BoundBacking, write)
            ->Arg(4096)
            ->Arg(65536);
    }
    // One iteration: the figure is a memory size, not a rate.
    benchmark::RegisterBenchmark("index_dram/shm-page", BM_IndexDram)
        ->Arg(quick ? 512 : 1280)
        ->Iterations(1)
        ->Unit(benchmark::kMillisecond);
    register_issue17(quick);
    register_write_path(quick);
    benchmark::AddCustomContext("pcache_dax",
                                dax_path().empty() ? "none (set PCACHE_BENCH_DAX)" : dax_path());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
