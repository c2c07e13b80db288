// Issue 17 writeback benchmarks (bench/issue17_bench.cpp registers them) and the helpers the
// issue-17 file shares with them.
#pragma once

#include <time.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "bench_rig.hpp"
#include "pcache/blockdev/uring_block_device.hpp"
#include "pcache/cache/cache.hpp"

namespace pcache::bench::i17 {

using benchmark::Counter;
using benchmark::State;
using WallClock = std::chrono::steady_clock;

inline constexpr std::uint64_t kPmem = 512ull << 20, kBacking = 1ull << 30, kKey = 4096;

inline bool& quick_mode() {
    static bool q = false;
    return q;
}

inline std::uint64_t spread(std::uint64_t i, std::uint64_t region) {
    return (i * 40503 % (region / kKey)) * kKey;
}

// Reads 96 MiB of scratch memory, one load per cache line (clean lines: nothing to write back
// later): what ran before (a side's source and its destination pages) leaves the CPU caches
// (L3 32 MiB, L2 2 MiB per core here), so each timed side starts from memory that is not in
// cache, as writeback in service does (it runs long after the writes; on real pmem the data
// went out with non-temporal stores). Untimed.
inline void evict_cpu_caches() {
    static std::vector<std::uint64_t> scratch(std::size_t(96) << 17, 1);
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < scratch.size(); i += 8) sum += scratch[i];
    benchmark::DoNotOptimize(sum);
}

// The writeback bounds' source: a pmem device of the same kind holding `dirty` bytes of keys
// (each request's bytes come from where its key sits, the keys in write order), filled with
// `fill` repeated.
template <class P>
std::unique_ptr<P> bound_source(Dev d, std::uint64_t dirty, std::span<const std::byte> fill) {
    auto src = make_pmem<P>(d, dirty);
    for (std::uint64_t off = 0; off < dirty; off += fill.size())
        if (Status s = src->write(off, fill, kPmemFlushCache); !s.ok()) die("source fill", s);
    if (Status s = src->drain(); !s.ok()) die("source drain", s);
    return src;
}

// Writeback of `dirty` bytes of 4 KiB keys, sequential or random offsets, FileBlockDevice
// (pwrite, queue depth 1). The bound, timed in every iteration just before the engine
// (interleaved: both see the same load): the requests writeback issues for this round
// (sequential keys coalesce into 1 MiB runs; random ones stay 4 KiB, each kset's keys in offset
// order), one at a time, plus one flush per 32 ksets, each from where its bytes sit in a pmem
// device of the same kind (make_pmem<P>: the keys in write order, as the data head lays them
// out): the same work as the engine's, which writes from the pmem mapping (docs/PERFORMANCE.md
// "seqwb"). The old bound, the same requests from one hot buffer of the request's size, is
// reported beside it (ratio_hot_buffer). Every side starts with cold CPU caches
// (evict_cpu_caches). Thread CPU time (ratio_to_bound: pwrite runs in the calling thread) and
// wall time (ratio_wall). Every page of the backing file exists before anything is timed.
template <class P>
void BM_Writeback17(State& st, Dev d, bool random) {
    const std::uint64_t dirty = quick_mode() ? (4ull << 20) : (32ull << 20);
    const std::uint64_t keys = dirty / kKey;
    const std::uint64_t req = random ? kKey : (1ull << 20);
    auto offset = [&](std::uint64_t round, std::uint64_t k) {
        return random ? spread(round * keys + k, kBacking) : (round * dirty + k * kKey) % kBacking;
    };
    Rig<P> rig(d, kPmem, kBacking);
    auto buf = std::vector<std::byte>(1 << 20, std::byte{0x3c});
    for (std::uint64_t off = 0; off < kBacking; off += buf.size())
        if (Status s = rig.backing.write(off, buf, false); !s.ok()) die("backing prefill", s);
    auto src = bound_source<P>(d, dirty, buf);
    buf.resize(req);
    const std::uint64_t ksets = (keys + format::kKsetKeysMax - 1) / format::kKsetKeysMax;
    const std::uint64_t per_flush = kWritebackKsetsMax * format::kKsetKeysMax * kKey;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> reqs(dirty / req);  // (offset, source)
    std::uint64_t round = 0;
    double cpu = 0, wall = 0, bound_cpu = 0, bound_wall = 0, hot_cpu = 0, hot_wall = 0;
    auto time_bound = [&](bool hot, double& c, double& w) {
        evict_cpu_caches();
        const auto b0 = WallClock::now();
        const double bc0 = thread_cpu_seconds();
        for (std::uint64_t b = 0; b < reqs.size(); ++b) {
            const std::span<const std::byte> from =
                hot ? std::span<const std::byte>(buf)
                    : std::span(src->data() + reqs[b].second, req);
            if (!rig.backing.write(reqs[b].first, from, false).ok()) std::abort();
            if (((b + 1) * req) % per_flush == 0 || b + 1 == reqs.size())
                if (!rig.backing.flush().ok()) std::abort();
        }
        c += thread_cpu_seconds() - bc0;
        w += std::chrono::duration<double>(WallClock::now() - b0).count();
    };
    for (auto _ : st) {
        st.PauseTiming();
        rig.drain();
        const std::span<const std::byte> key(buf.data(), kKey);
        for (std::uint64_t k = 0; k < keys; ++k) rig.write(nullptr, offset(round, k), key);
        if (!rig.cache->flush().ok()) std::abort();
        for (std::uint64_t b = 0; b < reqs.size(); ++b)
            reqs[b] = {random ? offset(round, b) : offset(round, b * (req / kKey)), b * req};
        if (random)  // as each kset sorts its keys
            for (std::uint64_t k = 0; k < keys; k += format::kKsetKeysMax)
                std::sort(reqs.begin() + static_cast<std::ptrdiff_t>(k),
                          reqs.begin() + static_cast<std::ptrdiff_t>(
                                             std::min(keys, k + format::kKsetKeysMax)));
        ++round;
        time_bound(true, hot_cpu, hot_wall);
        time_bound(false, bound_cpu, bound_wall);
        evict_cpu_caches();
        st.ResumeTiming();
        const auto t0 = WallClock::now();
        const double c0 = thread_cpu_seconds();
        while (rig.cache->writeback_step().progressed) {
        }
        cpu += thread_cpu_seconds() - c0;
        wall += std::chrono::duration<double>(WallClock::now() - t0).count();
    }
    const double n = static_cast<double>(std::max<std::int64_t>(st.iterations(), 1));
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) *
                         static_cast<std::int64_t>(dirty));
    st.counters["ratio_to_bound"] = bound_cpu / cpu;
    st.counters["ratio_wall"] = bound_wall / wall;
    st.counters["ratio_hot_buffer"] = hot_cpu / cpu;
    st.counters["ratio_hot_buffer_wall"] = hot_wall / wall;
    st.counters["bound_MBps"] = static_cast<double>(dirty) * n / bound_cpu / 1e6;
    st.counters["hot_bound_MBps"] = static_cast<double>(dirty) * n / hot_cpu / 1e6;
    st.counters["engine_MBps"] = static_cast<double>(dirty) * n / cpu / 1e6;
    st.counters["ksets"] = static_cast<double>(ksets);
}

inline double process_cpu_seconds() {  // every thread of the process: io_uring's workers too
    timespec ts{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Writeback of random 4 KiB keys to an io_uring backing file, queue depth 32. The bound, timed
// in every iteration just before the engine (interleaved, so both see the same machine load):
// the same 4 KiB requests (this round's offsets, each kset's keys in offset order as writeback
// sends them) through UringBlockDevice::write_batch, one flush per 32 ksets, two ways: all
// requests between two flushes in one call (the device keeps 32 in flight: ratio_window) and
// calls of 32 requests each (ratio_b32); ratio_to_bound uses the faster. As in
// BM_Writeback17, each request's bytes come from where that key sits in a pmem device of the
// same kind (the keys in write order), with cold CPU caches on every side; the old bound (the
// same requests from one hot 4 KiB buffer) is reported beside it (ratio_hot_buffer, the faster
// of its two ways). Wall time (the user waits for it); ratio_cpu compares process CPU time of
// the window bound (io_uring's worker threads do the buffered writes, so the thread's own CPU
// time would miss them). Every page of the backing file exists before anything is timed: both
// sides overwrite.
template <class P>
void BM_WritebackUring(State& st, Dev d) {
    constexpr unsigned kDepth = 32;
    const std::uint64_t dirty = quick_mode() ? (4ull << 20) : (32ull << 20);
    const std::uint64_t keys = dirty / kKey;
    auto pmem = make_pmem<P>(d, kPmem);
    const std::string path = temp_path("uring");
    auto ub = UringBlockDevice::open(path, {.create = true, .size_bytes = kBacking}, kDepth);
    ::unlink(path.c_str());
    if (!ub.ok()) die("io_uring backing", ub.status());
    std::vector<std::byte> buf(1 << 20, std::byte{0x3c});
    for (std::uint64_t off = 0; off < kBacking; off += buf.size())
        if (Status s = ub->write(off, buf, false); !s.ok()) die("backing prefill", s);
    auto src = bound_source<P>(d, dirty, buf);
    CacheOptions co;
    co.writeback_queue_depth = kDepth;
    co.force_format = true;  // a scratch device
    auto c = Cache<P, UringBlockDevice>::format(borrow(*pmem), borrow(*ub), co);
    if (!c.ok()) die("cache", c.status());
    if (!(*c)->set_gc_percent(0).ok()) std::abort();
    buf.resize(kKey);
    const std::uint64_t per_flush = kWritebackKsetsMax * format::kKsetKeysMax;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> offs(keys);  // (offset, write order)
    std::vector<WriteRequest> reqs;
    std::uint64_t round = 0;
    double wall = 0, cpu = 0, bound_wall = 0, bound_cpu = 0, b32_wall = 0, hot_wall = 0,
           hot_b32_wall = 0;
    // One side of the bound: `batch` requests per write_batch call (all of a flush's: the
    // window), from the source device or from the hot buffer. Returns wall seconds.
    auto time_bound = [&](bool hot, std::uint64_t batch, double* cpu_out) {
        evict_cpu_caches();
        const auto b0 = WallClock::now();
        const double bc0 = process_cpu_seconds();
        for (std::uint64_t k = 0; k < keys; k += per_flush) {
            const std::uint64_t flush_end = std::min(keys, k + per_flush);
            for (std::uint64_t j = k; j < flush_end; j += batch) {
                reqs.clear();
                for (std::uint64_t q = j; q < std::min(flush_end, j + batch); ++q)
                    reqs.push_back({offs[q].first,
                                    hot ? std::span<const std::byte>(buf)
                                        : std::span(src->data() + offs[q].second * kKey, kKey),
                                    false});
                if (!ub->write_batch(reqs).ok()) std::abort();
            }
            if (!ub->flush().ok()) std::abort();
        }
        if (cpu_out) *cpu_out += process_cpu_seconds() - bc0;
        return std::chrono::duration<double>(WallClock::now() - b0).count();
    };
    for (auto _ : st) {
        for (int i = 0; i < 1 << 20; ++i) {  // written back and collected: room for a round
            const bool w = (*c)->writeback_step().progressed, g = (*c)->gc_step().progressed;
            if (!w && !g) break;
        }
        for (std::uint64_t k = 0; k < keys; ++k) {
            offs[k] = {spread(round * keys + k, kBacking), k};
            if (Status s = (*c)->write(offs[k].first, buf).status; !s.ok()) die("write", s);
        }
        if (!(*c)->flush().ok()) std::abort();
        ++round;
        for (std::uint64_t k = 0; k < keys; k += format::kKsetKeysMax)  // as each kset sorts
            std::sort(offs.begin() + static_cast<std::ptrdiff_t>(k),
                      offs.begin() +
                          static_cast<std::ptrdiff_t>(std::min(keys, k + format::kKsetKeysMax)));
        hot_wall += time_bound(true, per_flush, nullptr);
        hot_b32_wall += time_bound(true, kDepth, nullptr);
        bound_wall += time_bound(false, per_flush, &bound_cpu);
        b32_wall += time_bound(false, kDepth, nullptr);
        evict_cpu_caches();
        const auto t0 = WallClock::now();
        const double c0 = process_cpu_seconds();
        while ((*c)->writeback_step().progressed) {
        }
        cpu += process_cpu_seconds() - c0;
        const double w = std::chrono::duration<double>(WallClock::now() - t0).count();
        wall += w;
        st.SetIterationTime(w);
    }
    const double n = static_cast<double>(std::max<std::int64_t>(st.iterations(), 1));
    st.counters["ratio_to_bound"] = std::min(bound_wall, b32_wall) / wall;  // the faster bound
    st.counters["ratio_window"] = bound_wall / wall;
    st.counters["ratio_b32"] = b32_wall / wall;
    st.counters["ratio_hot_buffer"] = std::min(hot_wall, hot_b32_wall) / wall;
    st.counters["ratio_cpu"] = bound_cpu / cpu;
    st.counters["engine_MBps"] = static_cast<double>(dirty) * n / wall / 1e6;
    st.counters["bound_MBps"] = static_cast<double>(dirty) * n / bound_wall / 1e6;
    st.counters["engine_cpu_ms"] = cpu / n * 1e3;
    st.counters["bound_cpu_ms"] = bound_cpu / n * 1e3;
}

}  // namespace pcache::bench::i17
