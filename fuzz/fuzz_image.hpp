// Structure-aware mutation of real cache images, shared by the replay fuzz targets and the
// corpus generator.
//
// A fuzz input is one template selector byte followed by 8-byte edits:
//
//   byte 0          template index (mod kTemplateCount): fresh, wrapped log, data_crc
//   then, per edit  op:u8  region:u8  off:u16le  value:u32le          (at most kEditsMax)
//
// Templates are small images written by the engine itself (64 KiB segments, 10 segments), so a
// mutation starts from bytes a writer really produces. A region names one metadata record (the
// superblock, a cache_info / key_tail / dirty_tail / segment_info / seg_gen copy), the data area
// of a key-log segment, or a whole segment (raw bytes). An edit changes a byte or a 32/64-bit
// word at an offset inside the region and may then re-seal the CRC of the record or kset it
// touched, so mutations reach the semantic checks behind the CRCs. Everything here is
// deterministic: a template is a pure function of its index.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "pcache/blockdev/mem_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/mem_pmem.hpp"

// A harness check: a failure is a finding (libFuzzer reports the abort and saves the input).
#define PCACHE_FUZZ_CHECK(cond, what)                                                  \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, \
                         std::string(what).c_str());                                   \
            std::abort();                                                              \
        }                                                                              \
    } while (0)

namespace pcache::fuzz {

using MemCache = Cache<MemPmem, MemBlockDevice>;

inline constexpr std::uint64_t kSegmentBytes = 64 * 1024;  // the smallest test geometry
inline constexpr std::uint32_t kSegs = 10;
inline constexpr std::uint64_t kPmemBytes = format::kSegmentsOffsetBytes + kSegs * kSegmentBytes;
inline constexpr std::uint64_t kBackingBytes = 8ull << 20;  // two 4 MiB subtrees
inline constexpr std::uint32_t kTemplateCount = 3;
inline constexpr std::size_t kEditBytes = 8;
inline constexpr std::size_t kEditsMax = 64;

inline CacheOptions options(bool data_crc) {
    CacheOptions o;
    o.data_crc = data_crc;
    o.geometry.segment_bytes = kSegmentBytes;
    // One lane: with more, a write's lane would be the CPU it ran on (sched_getcpu), and the
    // templates, the corpus and every fuzz run must not depend on the machine's scheduling.
    o.n_lanes = 1;
    o.close_on_destroy = false;  // the fuzzers compare images: no I/O when a cache is dropped
    return o;
}
inline constexpr std::uint64_t seg_data_bytes() {
    return kSegmentBytes - format::kSegDataOffsetBytes;
}

enum class RegionKind { superblock, meta, kset_area, raw };

struct Region {
    std::string name;
    RegionKind kind = RegionKind::raw;
    std::uint64_t base = 0;          // device offset
    std::uint32_t len = 0;           // bytes
    std::uint32_t record_bytes = 0;  // meta: size of the record (its CRC covers bytes 4..end)
    std::vector<std::uint32_t> kset_starts;  // kset_area: offsets of the ksets found at build
};

struct Template {
    std::string name;
    CacheOptions opts;
    std::vector<std::byte> image;
    std::vector<Region> regions;
    LogPos key_tail, dirty_tail, key_head;  // as written, for the generator's crafted inputs
    std::vector<LogPos> ksets;              // log positions from key_tail, in order
};

struct Edit {
    // bits 0-1 kind, bit 2 re-seal CRC, bit 3 64-bit, bit 4 "a kset starts at this (8-aligned)
    // offset": write its magic and seal it (kset areas only)
    std::uint8_t op = 0;
    std::uint8_t region = 0;  // index mod regions.size()
    std::uint16_t off = 0;    // offset mod region length
    std::uint32_t value = 0;
};
enum : std::uint8_t {
    kOpSetByte = 0,
    kOpSetWord = 1,
    kOpAddWord = 2,
    kOpSetInteresting = 3,
    kOpFixCrc = 1u << 2,
    kOpWide = 1u << 3,
    kOpNewKset = 1u << 4,
};

inline std::array<std::byte, kEditBytes> encode(const Edit& e) {
    std::array<std::byte, kEditBytes> b{};
    b[0] = std::byte(e.op);
    b[1] = std::byte(e.region);
    std::memcpy(b.data() + 2, &e.off, 2);
    std::memcpy(b.data() + 4, &e.value, 4);
    return b;
}
inline Edit decode_edit(const std::uint8_t* p) {
    Edit e;
    e.op = p[0];
    e.region = p[1];
    std::memcpy(&e.off, p + 2, 2);
    std::memcpy(&e.value, p + 4, 4);
    return e;
}

// Values that sit on the edges of the checks (segment counts, offsets, key counts, magics).
inline std::uint64_t interesting(std::uint32_t pick) {
    const std::uint64_t d = seg_data_bytes();
    const std::array<std::uint64_t, 28> v{0,
                                          1,
                                          2,
                                          7,
                                          8,
                                          24,
                                          64,
                                          127,
                                          128,
                                          129,
                                          255,
                                          256,
                                          kSegs - 1,
                                          kSegs,
                                          kSegs + 1,
                                          d - 64,
                                          d - 24,
                                          d - 8,
                                          d,
                                          d + 8,
                                          format::kKsetBytesMax,
                                          0x7fffffffu,
                                          0x80000000u,
                                          0xffffffffu,
                                          format::kKsetMagic,
                                          UINT64_MAX,
                                          kBackingBytes - 512,
                                          format::kSubtreeBytes - 512};
    return v[pick % v.size()];
}

// Re-seals the CRC of the record or kset that an edit at `rel` of region `r` touched.
inline void fix_crc(std::span<std::byte> img, const Region& r, std::uint32_t rel, bool new_kset) {
    std::byte* p = img.data() + r.base;
    auto seal = [](std::byte* rec, std::uint64_t bytes) {
        const std::uint32_t c = crc::kcrc(rec + 4, bytes - 4);
        std::memcpy(rec, &c, 4);
    };
    switch (r.kind) {
        case RegionKind::superblock:
            seal(p, format::kSuperblockBytes);
            return;
        case RegionKind::meta:
            seal(p, r.record_bytes);
            return;
        case RegionKind::raw:
            return;
        case RegionKind::kset_area:
            break;
    }
    std::uint64_t start = 0;
    if (new_kset) {
        start = rel & ~7u;
    } else {
        auto it = std::upper_bound(r.kset_starts.begin(), r.kset_starts.end(), rel);
        if (it == r.kset_starts.begin()) return;
        start = *--it;
    }
    if (start + format::kKsetHeaderBytes > r.len) return;
    std::byte* k = p + start;
    if (new_kset) std::memcpy(k + 8, &format::kKsetMagic, 8);
    auto h =
        format::load<format::KsetHeader>(std::span<const std::byte>(k, format::kKsetHeaderBytes));
    // The CRC a reader would compute if it trusted key_num, even past the data area or past
    // 5144 bytes (that is exactly what the hardened reader must refuse to do); clamped to the
    // image so the harness itself stays in bounds.
    std::uint64_t size = (h.flags & format::kKsetFlagLast)
                             ? format::kKsetHeaderBytes
                             : format::kset_bytes(0) + 40ull * h.key_num_or_next;
    size = std::min<std::uint64_t>(size, img.size() - (r.base + start));
    seal(k, size);
}

inline void apply(std::span<std::byte> img, const std::vector<Region>& regions, const Edit& e) {
    const Region& r = regions[e.region % regions.size()];
    const unsigned width = (e.op & 3) == kOpSetByte ? 1 : (e.op & kOpWide) ? 8 : 4;
    if (r.len < width) return;
    std::uint32_t rel = e.off % r.len;
    rel = std::min<std::uint32_t>(rel, r.len - width) & ~(width - 1);
    std::byte* at = img.data() + r.base + rel;
    std::uint64_t cur = 0;
    std::memcpy(&cur, at, width);
    std::uint64_t next = cur;
    switch (e.op & 3) {
        case kOpSetByte:
            next = e.value & 0xff;
            break;
        case kOpSetWord:
            next = e.value;
            break;
        case kOpAddWord:
            next = cur + std::uint64_t(std::int64_t(std::int32_t(e.value)));
            break;
        case kOpSetInteresting:
            next = interesting(e.value);
            break;
    }
    std::memcpy(at, &next, width);
    if (e.op & (kOpFixCrc | kOpNewKset)) fix_crc(img, r, rel, (e.op & kOpNewKset) != 0);
}

// ---- templates -----------------------------------------------------------------------------
inline std::vector<std::byte> pattern_bytes(std::size_t len, std::uint32_t seed) {
    std::vector<std::byte> v(len);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& b : v) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b = std::byte(x);
    }
    return v;
}

// Runs `body` on a freshly formatted cache, closes it and returns the template.
template <class Body>
Template build(const std::string& name, bool data_crc, Body&& body) {
    MemPmem pmem(kPmemBytes);
    MemBlockDevice backing(kBackingBytes);
    auto opened = MemCache::format(borrow(pmem), borrow(backing), options(data_crc));
    PCACHE_FUZZ_CHECK(opened.ok(), "template " + name + ": " + opened.status().to_string());
    auto& c = **opened;
    body(c);
    Status closed = c.close();
    PCACHE_FUZZ_CHECK(closed.ok(), "template " + name + ": close: " + closed.to_string());
    Template t;
    t.name = name;
    t.opts = options(data_crc);
    t.key_tail = c.key_tail();
    t.dirty_tail = c.dirty_tail();
    t.key_head = c.key_head();
    t.image.assign(pmem.data(), pmem.data() + pmem.size());
    return t;
}

// Walks the template's log from key_tail (identity chain: formatted by the engine) and lists
// the regions an edit can name.
inline void index_regions(Template& t) {
    using namespace format;
    auto add_meta = [&](std::string n, std::uint64_t base, std::uint32_t bytes) {
        t.regions.push_back(Region{std::move(n), RegionKind::meta, base, bytes, bytes, {}});
    };
    t.regions.push_back(Region{"superblock",
                               RegionKind::superblock,
                               kSuperblockOffsetBytes,
                               kSuperblockBytes,
                               kSuperblockBytes,
                               {}});
    add_meta("cache_info0", kCacheInfoOffsetBytes, kCacheInfoBytes);
    add_meta("cache_info1", kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes, kCacheInfoBytes);
    add_meta("key_tail0", kKeyTailOffsetBytes, kPosBytes);
    add_meta("key_tail1", kKeyTailOffsetBytes + kPosBytes, kPosBytes);
    add_meta("dirty_tail0", kDirtyTailOffsetBytes, kPosBytes);
    add_meta("dirty_tail1", kDirtyTailOffsetBytes + kPosBytes, kPosBytes);
    const Geometry geo = t.opts.geometry;
    std::vector<std::vector<std::uint32_t>> starts(kSegs);
    struct ImageLog {  // the template's key log as the engine's walker reads it
        const Template& t;
        Geometry geo;
        std::uint32_t n_segs() const { return kSegs; }
        std::uint64_t seg_data_bytes() const { return geo.seg_data_bytes(); }
        std::uint64_t log_addr(LogPos p) const { return geo.data_offset(p.seg) + p.off; }
        Status read(std::uint64_t off, std::span<std::byte> dst) const {
            if (off > t.image.size() || dst.size() > t.image.size() - off)
                return {Errc::invalid_argument, "read outside the template"};
            std::memcpy(dst.data(), t.image.data() + off, dst.size());
            return {};
        }
    };
    auto walked = walk_log(ImageLog{t, geo}, WalkSpec{.from = t.key_tail},
                           [&](const KsetAt& at) -> Result<WalkStep> {
                               starts[at.pos.seg].push_back(at.pos.off);
                               t.ksets.push_back(at.pos);
                               return WalkStep::next;
                           });
    PCACHE_FUZZ_CHECK(walked.ok(), "template " + t.name + ": " + walked.status().to_string());
    starts[walked->pos.seg].push_back(walked->pos.off);  // edits at the end marker extend the log
    PCACHE_FUZZ_CHECK(walked->pos == t.key_head,
                      "template " + t.name + ": log walk does not end at key_head");
    for (std::uint32_t s = 0; s < kSegs; ++s) {
        const std::uint64_t seg = geo.segment_offset(s);
        const std::string n = "seg" + std::to_string(s);
        add_meta(n + ".info0", seg, kSegInfoBytes);
        add_meta(n + ".info1", seg + kSegInfoSlotStrideBytes, kSegInfoBytes);
        add_meta(n + ".gen0", seg + kSegCtrlOffsetBytes, kSegGenBytes);
        add_meta(n + ".gen1", seg + kSegCtrlOffsetBytes + kSegGenSlotStrideBytes, kSegGenBytes);
        if (!starts[s].empty()) {
            std::sort(starts[s].begin(), starts[s].end());
            t.regions.push_back(Region{n + ".log", RegionKind::kset_area, geo.data_offset(s),
                                       std::uint32_t(geo.seg_data_bytes()), 0, starts[s]});
        }
        t.regions.push_back(
            Region{n + ".raw", RegionKind::raw, seg, std::uint32_t(kSegmentBytes - 1), 0, {}});
    }
}

// Templates: 0 "fresh" (a few writes, FUA, overlaps, CLEAN fills, no segment switch);
// 1 "wrapped" (the log has cycled through several kset segments with writeback and GC, so
// stale generations exist; a LAST kset lies between key_tail and key_head, and dirty_tail
// sits between them); 2 "data_crc" (like fresh, with per-key data CRCs).
inline void small_workload(MemCache& c) {
    auto put = [&](std::uint64_t off, std::size_t len, std::uint32_t seed, bool fua) {
        Status s = c.write(off, pattern_bytes(len, seed), {.fua = fua}).status;
        PCACHE_FUZZ_CHECK(s.ok(), "template write: " + s.to_string());
    };
    put(0, 4096, 1, true);
    put(format::kSubtreeBytes - 1024, 2048, 2, true);  // two keys, one per subtree
    put(8192, 1024, 3, false);
    put(8192 + 512, 512, 4, false);  // overlaps the previous key
    std::vector<std::byte> out(4096);
    Status r = c.read(64 * 1024, out);  // a miss: filled as CLEAN keys
    PCACHE_FUZZ_CHECK(r.ok(), "template read: " + r.to_string());
    PCACHE_FUZZ_CHECK(c.flush().ok(), "template flush");
    put(1 << 20, 8192, 5, false);  // closed by close()
}

// Cycles the log through several kset segments (writeback and GC at gc_percent 0), then stops
// collecting right before a segment switch, so the replayed range holds a LAST kset.
inline void wrapped_workload(MemCache& c) {
    auto drain = [&] {
        for (int i = 0; i < 100000; ++i) {
            auto w = c.writeback_step();
            auto g = c.gc_step();
            PCACHE_FUZZ_CHECK(w.status.ok() && g.status.ok(), "template drain");
            if (!w.progressed && !g.progressed) return;
        }
        PCACHE_FUZZ_CHECK(false, "template drain does not converge");
    };
    std::uint32_t i = 0;
    auto put = [&] {
        const std::uint64_t off = (std::uint64_t(i) * 7919 % (kBackingBytes / 512)) * 512;
        for (int attempt = 0; attempt < 3; ++attempt) {
            Status s = c.write(off, pattern_bytes(512, i), {.fua = i % 61 == 0}).status;
            if (s.ok()) {
                ++i;
                return;
            }
            PCACHE_FUZZ_CHECK(s.code() == Errc::busy, "template write: " + s.to_string());
            PCACHE_FUZZ_CHECK(c.flush().ok(), "template flush");
            drain();
        }
        PCACHE_FUZZ_CHECK(false, "template write stays busy");
    };
    PCACHE_FUZZ_CHECK(c.set_gc_percent(0).ok(), "template gc_percent");
    std::uint32_t switches = 0;
    LogPos head = c.key_head();
    for (int round = 0; round < 1000; ++round) {
        for (int k = 0; k < 128; ++k) put();
        PCACHE_FUZZ_CHECK(c.flush().ok(), "template flush");
        if (c.key_head().seg != head.seg) ++switches;
        head = c.key_head();
        drain();
        if (switches >= 3 && seg_data_bytes() - c.key_head().off < 2 * format::kKsetBytesMax) break;
    }
    head = c.key_head();
    for (int round = 0; round < 4 && c.key_head().seg == head.seg; ++round) {
        for (int k = 0; k < 128; ++k) put();
        PCACHE_FUZZ_CHECK(c.flush().ok(), "template flush");
    }
    PCACHE_FUZZ_CHECK(c.key_head().seg != c.key_tail().seg, "template: no segment switch");
    for (int k = 0; k < 64; ++k) put();
    PCACHE_FUZZ_CHECK(c.flush().ok(), "template flush");
    for (int k = 0; k < 2; ++k)
        PCACHE_FUZZ_CHECK(c.writeback_step().status.ok(), "template writeback");
    Status s = c.write(0, pattern_bytes(1024, 99), {.fua = true}).status;
    PCACHE_FUZZ_CHECK(s.ok(), "template write: " + s.to_string());
}

inline Template make_template(std::uint32_t index) {
    Template t = index == 0   ? build("fresh", false, small_workload)
                 : index == 1 ? build("wrapped", false, wrapped_workload)
                              : build("data_crc", true, small_workload);
    index_regions(t);
    return t;
}

inline const std::vector<Template>& templates() {
    static const std::vector<Template> all = [] {
        std::vector<Template> v;
        for (std::uint32_t i = 0; i < kTemplateCount; ++i) v.push_back(make_template(i));
        return v;
    }();
    return all;
}

inline std::uint32_t region_index(const Template& t, const std::string& name) {
    for (std::uint32_t i = 0; i < t.regions.size(); ++i)
        if (t.regions[i].name == name) return i;
    PCACHE_FUZZ_CHECK(false, "no region " + name + " in template " + t.name);
    return 0;
}

// The reusable devices of a fuzz run: the image is restored from the template every input.
struct Rig {
    MemPmem pmem{kPmemBytes};
    MemBlockDevice backing{kBackingBytes};
};

// Loads the template chosen by the input and applies its edits; returns the template.
inline const Template& prepare(Rig& rig, const std::uint8_t* data, std::size_t size) {
    const auto& all = templates();
    const Template& t = all[size == 0 ? 0 : data[0] % all.size()];
    std::span<std::byte> img(rig.pmem.raw_for_tests(), rig.pmem.size());
    std::memcpy(img.data(), t.image.data(), img.size());
    const std::size_t n = size == 0 ? 0 : std::min((size - 1) / kEditBytes, kEditsMax);
    for (std::size_t i = 0; i < n; ++i)
        apply(img, t.regions, decode_edit(data + 1 + i * kEditBytes));
    return t;
}

}  // namespace pcache::fuzz
