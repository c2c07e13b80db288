// Where a 4 KiB write hit's time goes (docs/PERFORMANCE.md "Issue 17", "The write path in
// parts"): the same random 4 KiB writes as i17/write_hit, over a working set whose index is
// warm (2 subtrees) and one whose index is cold (1 GiB, 256 subtrees, the i17 figure), beside
// the index insert alone over the same key sets and the NT copy + fence bound. CPU time per
// operation; every figure of one device comes from the same run.
//   i17/parts/nt_copy/DEV                 the bound (pmem write + drain of 4 KiB)
//   i17/parts/write/DEV/{8,1024}          Cache::write of 4 KiB keys spread over N MiB
//   i17/parts/index_insert/{8,1024}       Subtree::insert of the same keys, nothing else
#include <deque>

#include "bench_rig.hpp"

namespace pcache::bench {
namespace {

using benchmark::Counter;
using benchmark::State;

constexpr std::uint64_t kKey = 4096, kPmemBytes = 512ull << 20, kBackingBytes = 1ull << 30;

// The i17 spread: a permutation of the 4 KiB slots of the region (40503 is odd and the region
// a power of two), so each slot is overwritten once per pass.
std::uint64_t slot(std::uint64_t i, std::uint64_t region) {
    return (i * 40503 % (region / kKey)) * kKey;
}

template <class P>
void BM_PartNtCopy(State& st, Dev d) {
    const double bound = bound_pmem_write<P>(d, kKey);
    auto pmem = make_pmem<P>(d, 64ull << 20);
    auto buf = std::vector<std::byte>(kKey, std::byte{0x3c});
    std::uint64_t i = 0;
    for (auto _ : st) {
        if (!pmem->write((i++ % (16384)) * kKey, buf, kPmemFlushCache).ok()) std::abort();
        if (!pmem->drain().ok()) std::abort();
    }
    st.counters["bound_ns"] = 1e9 * static_cast<double>(kKey) / bound;
}

template <class P>
void BM_PartWrite(State& st, Dev d) {
    const std::uint64_t region = static_cast<std::uint64_t>(st.range(0)) << 20;
    const double bound = bound_pmem_write<P>(d, kKey);
    Rig<P> rig(d, kPmemBytes, kBackingBytes);
    auto buf = std::vector<std::byte>(kKey, std::byte{0x3c});
    // One pass first: the index holds every slot of the region before the timing starts.
    for (std::uint64_t i = 0; i < region / kKey; ++i) rig.write(nullptr, slot(i, region), buf);
    std::uint64_t i = 0;
    for (auto _ : st) rig.write(&st, slot(i++, region), buf);
    st.counters["ratio_to_bound"] =
        Counter(static_cast<double>(st.iterations()) * kKey / bound, Counter::kIsRate);
}

void BM_PartIndexInsert(State& st) {
    const std::uint64_t region = static_cast<std::uint64_t>(st.range(0)) << 20;
    std::deque<Subtree> subtrees(region / format::kSubtreeBytes);
    auto never_stale = [](const CacheKey&) { return false; };
    auto no_piece = [](const CacheKey&, CacheKey&) {};
    std::uint32_t seg_off = 0;
    auto insert = [&](std::uint64_t off) {
        CacheKey k{off, static_cast<std::uint32_t>(kKey), 0, 1, seg_off, 1, 0, false};
        seg_off = (seg_off + kKey) % (16u << 20);
        Subtree& t = subtrees[off >> format::kSubtreeShift];
        std::lock_guard g(t.mutex);  // the write path holds it too
        t.insert(k, never_stale, no_piece);
    };
    for (std::uint64_t i = 0; i < region / kKey; ++i) insert(slot(i, region));
    std::uint64_t i = 0;
    for (auto _ : st) insert(slot(i++, region));
    st.counters["keys"] = static_cast<double>(region / kKey);
}

template <class P>
void register_parts(Dev d, bool quick) {
    const std::string dn = dev_name(d);
    benchmark::RegisterBenchmark(("i17/parts/nt_copy/" + dn).c_str(), BM_PartNtCopy<P>, d);
    auto* w = benchmark::RegisterBenchmark(("i17/parts/write/" + dn).c_str(), BM_PartWrite<P>, d);
    w->Arg(8);
    if (!quick) w->Arg(1024);
}

}  // namespace

void register_write_path(bool quick) {
    auto* ix = benchmark::RegisterBenchmark("i17/parts/index_insert", BM_PartIndexInsert);
    ix->Arg(8);
    if (!quick) ix->Arg(1024);
    register_parts<MemPmem>(Dev::mem, quick);
    register_parts<Pmem2Device>(Dev::shm_cacheline, quick);
}

}  // namespace pcache::bench
