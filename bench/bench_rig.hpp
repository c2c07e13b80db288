// Devices, engine rigs and hardware bounds for the engine benchmark suite (engine_bench.cpp).
//
// Every engine figure is reported next to the bound the hardware sets for the same work,
// measured in the same process on the same device: a ratio survives a noisy, shared machine
// far better than an absolute number. A bound is the primitive the engine itself uses, called
// directly with nothing around it:
//   pmem write  Pmem::write(off, bytes, kPmemFlushCache) then drain()  (libpmem2 memcpy,
//               non-temporal, then the fence; an msync per write at page granularity)
//   pmem read   Pmem::read(off, out)  (a copy from the mapping under the SIGBUS guard for
//               Pmem2Device since issue 17, a pread before; a plain copy for MemPmem)
//   backing     FileBlockDevice::write / read (pwrite / pread) on a /dev/shm file
// Bounds are measured once per process and size (memoised), for bound_seconds() of CPU time.
//
// Devices (the pmem side; the backing device is always a /dev/shm file):
//   shm-page       Pmem2Device on a /dev/shm file, page granularity (persist = msync)
//   shm-cacheline  the same mapped with PMEM2_FORCE_GRANULARITY=CACHE_LINE (persist = clwb +
//                  sfence; not durable on tmpfs, but it is the instruction path of real pmem)
//   mem            MemPmem (anonymous memory: the engine's cost with free persistence)
//   dax            Pmem2Device on a device-DAX path given by PCACHE_BENCH_DAX or --dax=PATH
#pragma once

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pcache/blockdev/file_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/mem_pmem.hpp"
#include "pcache/pmem/pmem2_device.hpp"

namespace pcache::bench {

enum class Dev { shm_page, shm_cacheline, mem, dax };

inline const char* dev_name(Dev d) {
    switch (d) {
        case Dev::shm_page:
            return "shm-page";
        case Dev::shm_cacheline:
            return "shm-cacheline";
        case Dev::mem:
            return "mem";
        case Dev::dax:
            return "dax";
    }
    return "?";
}

inline std::string& dax_path() {
    static std::string path;
    return path;
}

// CPU time each bound is measured for (--quick lowers it).
inline double& bound_seconds() {
    static double s = 0.2;
    return s;
}

[[noreturn]] inline void die(const char* what, const Status& s) {
    std::fprintf(stderr, "pcache bench: %s: %s\n", what, s.to_string().c_str());
    std::exit(1);
}

inline std::string temp_path(const char* kind) {
    static int n = 0;
    return "/dev/shm/pcache-bench-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "." +
           kind;
}

// Zeroes the whole device: a blank cache (DAX keeps old contents), and every page mapped
// before anything is timed (a first touch costs a page fault that neither side should pay).
template <class P>
void prefault(P& p) {
    const std::vector<std::byte> zeros(1 << 20);
    for (std::uint64_t off = 0; off < p.size(); off += zeros.size()) {
        const auto n = std::min<std::uint64_t>(zeros.size(), p.size() - off);
        if (Status s = p.write(off, std::span(zeros).first(n), kPmemFlushCache); !s.ok())
            die("prefault", s);
    }
    if (Status s = p.drain(); !s.ok()) die("prefault drain", s);
}

// Opens a pmem device of `bytes` bytes; files are unlinked at once (the mapping keeps them).
template <class P>
std::unique_ptr<P> make_pmem(Dev d, std::uint64_t bytes) {
    if constexpr (std::is_same_v<P, MemPmem>) {
        auto p = std::make_unique<MemPmem>(bytes);
        prefault(*p);
        return p;
    } else {
        Pmem2OpenOptions o;
        std::string path;
        if (d == Dev::dax) {
            path = dax_path();
            o.size_bytes = (bytes + (2u << 20) - 1) & ~std::uint64_t((2u << 20) - 1);
        } else {
            path = temp_path("pmem");
            o.create = true;
            o.size_bytes = bytes;
        }
        if (d == Dev::shm_cacheline) {
            ::setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 1);
            o.required_granularity = PmemGranularity::cache_line;
        }
        auto r = Pmem2Device::open(path, o);
        if (d == Dev::shm_cacheline) ::unsetenv("PMEM2_FORCE_GRANULARITY");
        if (d != Dev::dax) ::unlink(path.c_str());
        if (!r.ok()) die(("opening pmem " + path).c_str(), r.status());
        auto p = std::make_unique<P>(std::move(r.value()));
        prefault(*p);
        return p;
    }
}

inline FileBlockDevice make_backing(std::uint64_t bytes) {
    const std::string path = temp_path("backing");
    auto r = FileBlockDevice::open(path, BlockOpenOptions{.create = true, .size_bytes = bytes});
    ::unlink(path.c_str());
    if (!r.ok()) die("opening backing file", r.status());
    return std::move(r.value());
}

// One cache on one pmem device and a /dev/shm backing file. No background threads: when the
// cache is full, the benchmark pauses its timer and calls drain().
template <class P>
struct Rig {
    using CacheT = Cache<P, FileBlockDevice>;
    std::unique_ptr<P> pmem;
    FileBlockDevice backing;
    std::unique_ptr<CacheT> cache;

    Rig(Dev d, std::uint64_t pmem_bytes, std::uint64_t backing_bytes, CacheOptions opts = {})
        : pmem(make_pmem<P>(d, pmem_bytes)), backing(make_backing(backing_bytes)) {
        reopen(opts, true);
        if (Status s = cache->set_gc_percent(0); !s.ok()) die("gc_percent", s);
    }
    void reopen(CacheOptions opts = {}, bool fresh = false) {
        cache.reset();
        auto c = fresh ? CacheT::format(borrow(*pmem), borrow(backing), opts)
                       : CacheT::open(borrow(*pmem), borrow(backing), opts);
        if (!c.ok()) die("opening the cache", c.status());
        cache = std::move(c.value());
    }
    // Writes back everything and collects every retired kset: frees the cache's space.
    void drain() {
        if (Status s = cache->flush(); !s.ok()) die("flush", s);
        for (int i = 0; i < 1 << 20; ++i) {
            auto w = cache->writeback_step();
            if (!w.status.ok()) die("writeback", w.status);
            auto g = cache->gc_step();
            if (!g.status.ok()) die("gc", g.status);
            if (!w.progressed && !g.progressed) return;
        }
    }
    // cache->write, draining whenever the cache is full; with a state, outside its timer (pass
    // nullptr where the timer is not running: before the loop or while paused).
    void write(benchmark::State* st, std::uint64_t off, std::span<const std::byte> data) {
        for (int tries = 0; tries < 1000; ++tries) {
            const WriteResult w = cache->write(off, data);
            const Status& s = w.status;
            const std::uint64_t done = w.done_bytes;
            if (s.ok()) return;
            if (s.code() != Errc::busy) die("write", s);
            if (st) st->PauseTiming();
            drain();
            if (st) st->ResumeTiming();
            off += done;
            data = data.subspan(done);
        }
        die("write", Status(Errc::busy, "still busy after 1000 drains"));
    }
};

// ---- bounds: the primitive alone, memoised per (what, device, size) ----

// CPU time of this thread (user + system): on a loaded machine it is far steadier than wall
// time, and the engine benchmarks report CPU time too (Google Benchmark's default).
inline double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

template <class Fn>
double ops_per_second(Fn&& op) {
    for (int i = 0; i < 64; ++i) op(i);  // warm up
    const double start = thread_cpu_seconds();
    std::uint64_t n = 0;
    double elapsed = 0;
    do {
        for (int i = 0; i < 64; ++i) op(n++);
        elapsed = thread_cpu_seconds() - start;
    } while (elapsed < bound_seconds());
    return static_cast<double>(n) / elapsed;
}

inline std::map<std::string, double>& bound_memo() {
    static std::map<std::string, double> memo;
    return memo;
}

constexpr std::uint64_t kBoundSpanBytes = 64ull << 20;  // offsets rotate over 64 MiB

// Bytes/s of write(kPmemFlushCache) + drain of `size` bytes.
template <class P>
double bound_pmem_write(Dev d, std::uint64_t size) {
    const std::string key = std::string("pmem_write/") + dev_name(d) + "/" + std::to_string(size);
    if (auto it = bound_memo().find(key); it != bound_memo().end()) return it->second;
    auto pmem = make_pmem<P>(d, kBoundSpanBytes);
    std::vector<std::byte> buf(size, std::byte{0x5a});
    const std::uint64_t slots = kBoundSpanBytes / size;
    const double ops = ops_per_second([&](std::uint64_t i) {
        if (!pmem->write((i % slots) * size, buf, kPmemFlushCache).ok()) std::abort();
        if (!pmem->drain().ok()) std::abort();
    });
    return bound_memo()[key] = ops * static_cast<double>(size);
}

// Bytes/s of read() of `size` bytes.
template <class P>
double bound_pmem_read(Dev d, std::uint64_t size) {
    const std::string key = std::string("pmem_read/") + dev_name(d) + "/" + std::to_string(size);
    if (auto it = bound_memo().find(key); it != bound_memo().end()) return it->second;
    auto pmem = make_pmem<P>(d, kBoundSpanBytes);
    std::vector<std::byte> buf(size, std::byte{0x5a});
    const std::uint64_t slots = kBoundSpanBytes / size;
    for (std::uint64_t i = 0; i < slots; ++i)
        if (!pmem->write(i * size, buf, kPmemFlushCache).ok()) std::abort();
    if (!pmem->drain().ok()) std::abort();
    const double ops = ops_per_second([&](std::uint64_t i) {
        if (!pmem->read((i * 40503 % slots) * size, buf).ok()) std::abort();
    });
    return bound_memo()[key] = ops * static_cast<double>(size);
}

// Bytes/s of FileBlockDevice pwrite (`write` true) or pread of `size` bytes on /dev/shm.
inline double bound_backing(bool write, std::uint64_t size) {
    const std::string key =
        std::string(write ? "backing_write/" : "backing_read/") + std::to_string(size);
    if (auto it = bound_memo().find(key); it != bound_memo().end()) return it->second;
    FileBlockDevice dev = make_backing(kBoundSpanBytes);
    std::vector<std::byte> buf(size, std::byte{0x5a});
    const std::uint64_t slots = kBoundSpanBytes / size;
    for (std::uint64_t i = 0; i < slots; ++i) (void)dev.write(i * size, buf, false);
    const double ops = ops_per_second([&](std::uint64_t i) {
        const std::uint64_t off = (i % slots) * size;  // sequential, as misses and writeback go
        if (!(write ? dev.write(off, buf, false) : dev.read(off, buf)).ok()) std::abort();
    });
    return bound_memo()[key] = ops * static_cast<double>(size);
}

}  // namespace pcache::bench
