// Fuzz target: replay followed by work on the replayed cache. After Cache::open accepts a
// mutated image (fuzz_image.hpp), a few reads, writeback steps and GC steps run on it, then a
// write, a clean close and a second open. The steps may report errors (corrupt ksets found
// late, data CRC mismatches) but must stay in bounds, terminate, keep the invariants, and a
// cache that closed cleanly must open again: pcache must never turn an image it accepted
// into one it refuses. And once an existing cache is open, the engine writes only cache_info,
// cache_ctrl, seg_gen records and data areas: a change anywhere else (a segment_info page, the
// superblock) is a stray write, found even where no sanitizer can see it.
#include <cstdint>
#include <cstring>

#include "fuzz_image.hpp"

namespace {

struct ReadRange {
    std::uint64_t off, len;
};
// The template workloads' hot spots: both subtrees, the 4 MiB boundary, the wrapped log's span.
constexpr ReadRange kReads[] = {
    {0, 16384},        {pcache::format::kSubtreeBytes - 8192, 16384}, {1 << 20, 8192},
    {64 * 1024, 4096}, {pcache::fuzz::kBackingBytes - 65536, 65536},
};

// Bytes an opened cache may never write: all but the records it rewrites and the data areas.
void check_no_stray_write(std::span<const std::byte> before, std::span<const std::byte> after) {
    using namespace pcache::format;
    const auto same = [&](std::uint64_t from, std::uint64_t to) {
        const bool ok = std::memcmp(before.data() + from, after.data() + from, to - from) == 0;
        PCACHE_FUZZ_CHECK(ok, "stray write in device bytes [" + std::to_string(from) + ", " +
                                  std::to_string(to) + ")");
    };
    same(0, kCacheInfoOffsetBytes);  // unused page and superblock
    same(kCacheInfoOffsetBytes + kCacheInfoBytes,
         kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes);
    same(kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes + kCacheInfoBytes,
         kCacheCtrlOffsetBytes);
    same(kCacheCtrlOffsetBytes + kCacheCtrlBytes, kSegmentsOffsetBytes);
    for (std::uint32_t s = 0; s < pcache::fuzz::kSegs; ++s) {
        const std::uint64_t seg = kSegmentsOffsetBytes + s * pcache::fuzz::kSegmentBytes;
        same(seg, seg + kSegCtrlOffsetBytes);  // both segment_info pages
        same(seg + kSegCtrlOffsetBytes + 2 * kSegGenBytes, seg + kSegDataOffsetBytes);
    }
}

// Would open() load this image as it is (rather than format it)?
bool loads_existing(std::span<const std::byte> img) {
    using namespace pcache::format;
    Geometry geo;
    geo.segment_bytes = pcache::fuzz::kSegmentBytes;
    if (!decode_superblock(img.subspan(kSuperblockOffsetBytes, kSuperblockBytes), img.size(), geo)
             .ok())
        return false;
    const std::uint64_t s1 = kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes;
    return select_latest<CacheInfo>(img.subspan(kCacheInfoOffsetBytes, kCacheInfoBytes),
                                    kCacheInfoOffsetBytes, img.subspan(s1, kCacheInfoBytes), s1)
        .has_value();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pcache::fuzz;
    using pcache::Status;
    static Rig rig;
    static std::vector<std::byte> buf(65536);
    static std::vector<std::byte> before(kPmemBytes);
    const Template& t = prepare(rig, data, size);
    const std::span<const std::byte> img(rig.pmem.data(), rig.pmem.size());
    std::memcpy(before.data(), img.data(), img.size());
    const bool existing = loads_existing(img);
    auto opened = MemCache::open(borrow(rig.pmem), borrow(rig.backing), t.opts);
    if (!opened.ok()) {
        // A refused device is never modified, and open never formats (cache.hpp).
        PCACHE_FUZZ_CHECK(std::memcmp(before.data(), img.data(), img.size()) == 0,
                          "refused open wrote");
        return 0;
    }
    auto c = std::move(*opened);
    auto check = [&](const char* when) {
        Status s = c->check_invariants();
        PCACHE_FUZZ_CHECK(s.ok(), std::string(when) + ": " + s.to_string());
    };
    check("after open");
    for (const auto& r : kReads) (void)c->read(r.off, std::span(buf).first(r.len));
    check("after reads");
    for (int i = 0; i < 8 && c->writeback_step().progressed; ++i) {
    }
    check("after writeback");
    for (int i = 0; i < 8 && c->gc_step().progressed; ++i) {
    }
    check("after gc");
    (void)c->write(4096, std::span(buf).first(4096), {.fua = true});
    check("after write");
    const Status closed = c->close();
    c.reset();
    if (existing) check_no_stray_write(before, img);
    if (!closed.ok()) return 0;
    auto again = MemCache::open(borrow(rig.pmem), borrow(rig.backing), t.opts);
    PCACHE_FUZZ_CHECK(again.ok(), "reopen after a clean close: " + again.status().to_string());
    Status s = (*again)->check_invariants();
    PCACHE_FUZZ_CHECK(s.ok(), "after reopen: " + s.to_string());
    return 0;
}
