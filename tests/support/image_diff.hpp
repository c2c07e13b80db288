// Byte-level comparison of two cache-device images, with every difference explained in terms of
// the on-media format (dm-pcache-format.md section 2): which structure, which copy, which field.
//
// Used by the interoperability tests to compare a pcache-written image with one the kernel
// wrote. The whole device is compared in 1 MiB chunks with memcmp; only differing chunks are
// scanned byte by byte, so a 1 GiB comparison of mostly untouched memory takes well under a
// second. Runs of adjacent differing bytes are reported as one difference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "pcache/format/codec.hpp"

namespace pcache::testutil {

struct ByteDiff {
    std::uint64_t off = 0;  // device offset of the first differing byte of the run
    std::uint64_t len = 0;  // bytes in the run
};

// Up to `max_runs` runs of differing bytes (both spans must have the same size).
inline std::vector<ByteDiff> diff_images(std::span<const std::byte> a, std::span<const std::byte> b,
                                         std::size_t max_runs = 16) {
    std::vector<ByteDiff> runs;
    constexpr std::size_t kChunk = 1u << 20;
    const std::size_t n = std::min(a.size(), b.size());
    for (std::size_t c = 0; c < n && runs.size() < max_runs; c += kChunk) {
        const std::size_t len = std::min(kChunk, n - c);
        if (std::memcmp(a.data() + c, b.data() + c, len) == 0) continue;
        for (std::size_t i = c; i < c + len && runs.size() <= max_runs; ++i) {
            if (a[i] == b[i]) continue;
            if (!runs.empty() && runs.back().off + runs.back().len == i) {
                ++runs.back().len;
            } else {
                if (runs.size() == max_runs) break;
                runs.push_back({i, 1});
            }
        }
    }
    if (a.size() != b.size() && runs.size() < max_runs) runs.push_back({n, 0});
    return runs;
}

namespace detail {

struct Field {
    std::uint64_t off, len;
    const char* name;
};
inline constexpr Field kHeaderFields[] = {
    {0, 4, "header.crc"}, {4, 1, "header.seq"}, {5, 1, "header.version"}, {6, 2, "header.res"}};

inline std::string field_name(std::uint64_t rel, std::span<const Field> fields) {
    for (const Field& f : kHeaderFields)
        if (rel >= f.off && rel < f.off + f.len) return f.name;
    for (const Field& f : fields)
        if (rel >= f.off && rel < f.off + f.len) return f.name;
    return "unused bytes after the record";
}

inline std::string describe_record(const char* what, std::uint64_t base, std::uint64_t off,
                                   std::span<const Field> fields) {
    return std::string(what) + " (device offset " + std::to_string(base) + "), field " +
           field_name(off - base, fields) + " (byte " + std::to_string(off - base) + ")";
}

inline constexpr Field kCacheInfoFields[] = {
    {8, 4, "seg_id"}, {12, 4, "n_segs"}, {16, 4, "flags"}, {20, 4, "reserved"}};
inline constexpr Field kPosFields[] = {{8, 4, "cache_seg_id"}, {12, 4, "seg_off"}};
inline constexpr Field kSegInfoFields[] = {{8, 4, "flags"}, {12, 4, "next_seg"}};
inline constexpr Field kSegGenFields[] = {{8, 8, "gen"}};
inline constexpr Field kKsetFields[] = {
    {0, 4, "crc"}, {4, 4, "key_num/next_cache_seg_id"}, {8, 8, "magic"}, {16, 8, "flags"}};
inline constexpr Field kKeyFields[] = {{0, 8, "off"},
                                       {8, 4, "len"},
                                       {12, 4, "flags"},
                                       {16, 4, "cache_seg_id"},
                                       {20, 4, "cache_seg_off"},
                                       {24, 8, "seg_gen"},
                                       {32, 4, "data_crc"},
                                       {36, 4, "reserved"}};

inline std::string find_field(std::uint64_t rel, std::span<const Field> fields) {
    for (const Field& f : fields)
        if (rel >= f.off && rel < f.off + f.len) return f.name;
    return "?";
}

// Walks the key log of `image` from cache segment 0's data start (the kernel's fresh-format
// chain maps cache segment i to physical segment i) and explains data-area byte `off`: inside a
// kset header or key, or the cached data of a key. Bounded by the number of ksets a cache holds.
inline std::string describe_data(std::span<const std::byte> image, std::uint32_t phys,
                                 std::uint64_t rel) {
    const format::Geometry geo = format::Geometry::kernel();
    const std::uint64_t seg_data = geo.seg_data_bytes();
    const std::uint32_t n_segs = static_cast<std::uint32_t>(geo.seg_num_for(image.size()));
    std::string what =
        "data area of segment " + std::to_string(phys) + " at offset " + std::to_string(rel);
    std::uint32_t seg = 0;
    std::uint64_t pos = 0;
    for (std::uint64_t steps = 0; steps < 64 * 4096 && seg < n_segs; ++steps) {
        const std::uint64_t base = geo.data_offset(seg);
        const auto window = image.subspan(
            base + pos, std::min<std::uint64_t>(format::kKsetBytesMax, seg_data - pos));
        auto v = format::decode_kset(window, n_segs, base + pos);
        if (seg == phys && rel >= pos &&
            rel < pos + std::max<std::uint64_t>(v.ok() ? v->size_bytes() : 0, 24)) {
            if (!v.ok() || v->kind == format::KsetKind::end)
                return what + ": the 24-byte end-of-log marker at log position " +
                       std::to_string(seg) + ":" + std::to_string(pos);
            const std::uint64_t in = rel - pos;
            if (in < format::kKsetHeaderBytes)
                return what + ": kset at " + std::to_string(seg) + ":" + std::to_string(pos) +
                       ", header field " + find_field(in, kKsetFields);
            const std::uint64_t k = (in - format::kKsetHeaderBytes) / format::kKeyBytes;
            return what + ": kset at " + std::to_string(seg) + ":" + std::to_string(pos) +
                   ", key #" + std::to_string(k) + " field " +
                   find_field((in - format::kKsetHeaderBytes) % format::kKeyBytes, kKeyFields);
        }
        if (!v.ok() || v->kind == format::KsetKind::end) break;
        if (v->kind == format::KsetKind::last) {
            seg = v->next_cache_seg_id();
            pos = 0;
            continue;
        }
        for (std::uint32_t i = 0; i < v->key_num(); ++i) {
            const auto key = v->key(i);
            if (key.cache_seg_id == phys && rel >= key.cache_seg_off &&
                rel < key.cache_seg_off + std::uint64_t(key.len))
                return what + ": cached data of key #" + std::to_string(i) + " of the kset at " +
                       std::to_string(seg) + ":" + std::to_string(pos) + " (backing offset " +
                       std::to_string(key.off + (rel - key.cache_seg_off)) + ")";
        }
        pos += v->size_bytes();
    }
    return what + " (no kset or key of the log covers it: unused, or stale)";
}

}  // namespace detail

// What the format places at device offset `off` of a kernel-geometry image.
inline std::string describe_device_offset(std::span<const std::byte> image, std::uint64_t off) {
    using namespace format;
    using namespace detail;
    if (off < kSuperblockOffsetBytes) return "unused first 4 KiB";
    if (off < kCacheInfoOffsetBytes) {
        static constexpr Field sb[] = {{0, 4, "crc"},
                                       {4, 4, "flags"},
                                       {8, 8, "magic"},
                                       {16, 4, "seg_num"},
                                       {20, 4, "tail padding (CRC-covered)"}};
        const std::uint64_t rel = off - kSuperblockOffsetBytes;
        return rel < kSuperblockBytes ? "superblock field " + find_field(rel, sb)
                                      : "superblock page, unused";
    }
    if (off < kCacheCtrlOffsetBytes) {
        const std::uint64_t slot = (off - kCacheInfoOffsetBytes) / kCacheInfoSlotStrideBytes;
        const std::uint64_t base = kCacheInfoOffsetBytes + slot * kCacheInfoSlotStrideBytes;
        const std::string what = "cache_info slot " + std::to_string(slot);
        return off - base < kCacheInfoBytes
                   ? describe_record(what.c_str(), base, off, kCacheInfoFields)
                   : what + " page, unused (v6.18 wrote its second copy at 8216)";
    }
    if (off < kSegmentsOffsetBytes) {
        const std::uint64_t rel = off - kCacheCtrlOffsetBytes;
        if (rel >= kCacheCtrlBytes) return "cache_ctrl page, unused";
        const char* names[] = {"key_tail slot 0", "key_tail slot 1", "dirty_tail slot 0",
                               "dirty_tail slot 1"};
        const std::uint64_t base = kCacheCtrlOffsetBytes + (rel / kPosBytes) * kPosBytes;
        return describe_record(names[rel / kPosBytes], base, off, kPosFields);
    }
    const Geometry geo = Geometry::kernel();
    const auto phys = static_cast<std::uint32_t>((off - kSegmentsOffsetBytes) / geo.segment_bytes);
    if (phys >= geo.seg_num_for(image.size()))
        return "tail of the device after the last segment, unused";
    const std::uint64_t seg_base = geo.segment_offset(phys);
    const std::uint64_t rel = off - seg_base;
    const std::string seg = "segment " + std::to_string(phys) + " ";
    if (rel < kSegCtrlOffsetBytes) {
        const std::uint64_t slot = rel / kSegInfoSlotStrideBytes;
        const std::uint64_t base = seg_base + slot * kSegInfoSlotStrideBytes;
        const std::string what = seg + "segment_info slot " + std::to_string(slot);
        return off - base < kSegInfoBytes ? describe_record(what.c_str(), base, off, kSegInfoFields)
                                          : what + " page, unused";
    }
    if (rel < kSegDataOffsetBytes) {
        const std::uint64_t in = rel - kSegCtrlOffsetBytes;
        if (in >= 2 * kSegGenBytes)
            return seg + (in < kSegCtrlBytes ? "seg_ctrl reserved words" : "seg_ctrl page, unused");
        const std::string what = seg + "seg_gen slot " + std::to_string(in / kSegGenBytes);
        return describe_record(what.c_str(),
                               seg_base + kSegCtrlOffsetBytes + (in / kSegGenBytes) * kSegGenBytes,
                               off, kSegGenFields);
    }
    return describe_data(image, phys, rel - kSegDataOffsetBytes);
}

// A readable report of the first differences: offset, both byte strings, what lives there.
inline std::string diff_report(std::span<const std::byte> ours, std::span<const std::byte> kernel,
                               const std::vector<ByteDiff>& runs) {
    std::string out;
    auto hex = [](std::span<const std::byte> b) {
        std::string s;
        char two[4];
        for (std::size_t i = 0; i < b.size() && i < 24; ++i) {
            std::snprintf(two, sizeof two, "%02x", static_cast<unsigned>(b[i]));
            s += two;
        }
        return b.size() > 24 ? s + "..." : s;
    };
    for (const ByteDiff& d : runs) {
        if (d.len == 0) {
            out += "  sizes differ: pcache " + std::to_string(ours.size()) + " B, kernel " +
                   std::to_string(kernel.size()) + " B\n";
            continue;
        }
        out += "  device offset " + std::to_string(d.off) + " (0x" + format::hex(d.off).substr(2) +
               "), " + std::to_string(d.len) + " B: pcache " + hex(ours.subspan(d.off, d.len)) +
               ", kernel " + hex(kernel.subspan(d.off, d.len)) +
               "\n    = " + describe_device_offset(kernel, d.off) + "\n";
    }
    return out;
}

}  // namespace pcache::testutil
