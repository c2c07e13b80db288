// Encode and decode of every on-media record. Pure and total.
//
// Decoders take raw bytes (copied out of the device), never assume anything about them, never
// read outside the span they are given, never assert on their content, and return either a
// value or an error that names the record, the field and the device offset. Encoders build
// complete records (every byte initialised) and fill in the CRC.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "pcache/crc32c.hpp"
#include "pcache/format/geometry.hpp"
#include "pcache/format/layout.hpp"
#include "pcache/mutation.hpp"
#include "pcache/result.hpp"

namespace pcache::format {

using Bytes = std::span<const std::byte>;

// ---- raw copies ---------------------------------------------------------------------------
template <class T>
T load(Bytes bytes, std::size_t at = 0) noexcept {
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof(T));  // callers check the size first
    return v;
}
template <class T>
std::array<std::byte, sizeof(T)> to_bytes(const T& v) noexcept {
    std::array<std::byte, sizeof(T)> out;
    std::memcpy(out.data(), &v, sizeof(T));
    return out;
}

inline std::string hex(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}
inline std::string at(std::uint64_t device_offset) {
    return " at device offset " + std::to_string(device_offset);
}

// ---- CRCs -----------------------------------------------------------------------------------
// Every record's CRC covers its bytes from offset 4 to its end (for ksets: to the last key).
template <class T>
std::uint32_t record_crc(const T& record) noexcept {
    auto b = to_bytes(record);
    return crc::kcrc(b.data() + 4, b.size() - 4);
}

// ---- superblock -----------------------------------------------------------------------------
inline Superblock make_superblock(std::uint32_t seg_num, std::uint32_t pad = 0) noexcept {
    Superblock sb{0, 0, kSuperblockMagic, seg_num, pad};
    sb.crc = record_crc(sb);
    return sb;
}

// Validates the 24 bytes at device offset 4096. Errc::not_found means "unformatted" (magic 0).
inline Result<Superblock> decode_superblock(Bytes bytes, std::uint64_t device_bytes,
                                            const Geometry& geo) {
    const std::uint64_t where = kSuperblockOffsetBytes;
    if (bytes.size() < kSuperblockBytes)
        return {Errc::corrupt, "superblock: " + std::to_string(bytes.size()) + " bytes, need 24"};
    auto sb = load<Superblock>(bytes);
    if (sb.magic == 0) return {Errc::not_found, "superblock: magic is 0 (device is not formatted)"};
    if (sb.magic != kSuperblockMagic)
        return {Errc::corrupt, "superblock.magic" + at(where + 8) + ": expected " +
                                   hex(kSuperblockMagic) + ", found " + hex(sb.magic)};
    if (auto c = record_crc(sb); c != sb.crc)
        return {Errc::corrupt,
                "superblock.crc" + at(where) + ": stored " + hex(sb.crc) + ", computed " + hex(c)};
    if (sb.flags & kSbFlagBigEndian)
        return {Errc::unsupported,
                "superblock.flags" + at(where + 4) +
                    ": formatted on a big-endian host, this host is little-endian"};
    if (sb.flags & ~kSbFlagBigEndian)
        return {Errc::corrupt,
                "superblock.flags" + at(where + 4) + ": unknown bits " + hex(sb.flags)};
    const std::uint64_t fit = geo.seg_num_for(device_bytes);
    if (sb.seg_num == 0 || sb.seg_num > fit || sb.seg_num > kCacheSegsMax)
        return {Errc::corrupt, "superblock.seg_num" + at(where + 16) + ": " +
                                   std::to_string(sb.seg_num) + " segments of " +
                                   std::to_string(geo.segment_bytes) + " B, but the device (" +
                                   std::to_string(device_bytes) + " B) holds 1.." +
                                   std::to_string(fit) + " (wrong segment size or wrong device?)"};
    return sb;
}

// ---- duplicated metadata records ---------------------------------------------------------
template <MetaRecord T>
void seal(T& record, std::uint8_t seq) noexcept {
    if constexpr (mutant(6)) {  // M6: CRC computed before the sequence number is set
        record.header.crc = record_crc(record);
        record.header.seq = seq;
    } else {
        record.header.seq = seq;
        record.header.crc = record_crc(record);
    }
}

template <MetaRecord T>
Result<T> decode_meta(Bytes bytes, std::uint64_t where) {
    if (bytes.size() < sizeof(T))
        return {Errc::corrupt, std::string(record_name<T>()) + at(where) + ": truncated"};
    auto r = load<T>(bytes);
    if (auto c = record_crc(r); c != r.header.crc)
        return {Errc::corrupt, std::string(record_name<T>()) + ".crc" + at(where) + ": stored " +
                                   hex(r.header.crc) + ", computed " + hex(c)};
    return r;
}

// Serial-number order on 8 bits: a is newer than b (section 3.2). A difference of exactly 128
// is "not newer" in both directions.
constexpr bool seq_after(std::uint8_t a, std::uint8_t b) noexcept {
    return static_cast<std::int8_t>(static_cast<std::uint8_t>(a - b)) > 0;
}

template <MetaRecord T>
struct Latest {
    T record;
    unsigned slot;  // 0 or 1
};

// The kernel's pcache_meta_find_latest: the newest CRC-valid copy; ties go to slot 0.
template <MetaRecord T>
std::optional<Latest<T>> select_latest(Bytes slot0, std::uint64_t where0, Bytes slot1,
                                       std::uint64_t where1) {
    std::optional<Latest<T>> best;
    auto r0 = decode_meta<T>(slot0, where0);
    if (r0) best = Latest<T>{*r0, 0};
    auto r1 = decode_meta<T>(slot1, where1);
    // M7: the copy picked by index, not by newest sequence
    if (r1 && (!best || (!mutant(7) && seq_after(r1->header.seq, best->record.header.seq))))
        best = Latest<T>{*r1, 1};
    return best;
}

// ---- semantic checks of decoded records (sections 9.4, 9.5, 11) ---------------------------
inline std::uint32_t gc_percent_of(std::uint32_t cache_flags) noexcept {
    return (cache_flags & kCacheFlagGcPercentMask) >> kCacheFlagGcPercentShift;
}
inline std::uint32_t cache_mode_of(std::uint32_t cache_flags) noexcept {
    return (cache_flags & kCacheFlagModeMask) >> kCacheFlagModeShift;
}

inline Status validate_cache_info(const CacheInfo& ci, std::uint32_t seg_num, std::uint64_t where) {
    const std::string name = "cache_info";
    if (ci.n_segs == 0 || ci.n_segs > seg_num)
        return {Errc::corrupt, name + ".n_segs" + at(where + 12) + ": " +
                                   std::to_string(ci.n_segs) + ", expected 1.." +
                                   std::to_string(seg_num)};
    if (ci.seg_id >= seg_num)
        return {Errc::corrupt, name + ".seg_id" + at(where + 8) + ": " + std::to_string(ci.seg_id) +
                                   " is not below seg_num " + std::to_string(seg_num)};
    const std::uint32_t known =
        kCacheFlagDataCrc | kCacheFlagInitDone | kCacheFlagModeMask | kCacheFlagGcPercentMask;
    if (ci.flags & ~known)
        return {Errc::corrupt,
                name + ".flags" + at(where + 16) + ": unknown bits " + hex(ci.flags)};
    if (cache_mode_of(ci.flags) != kCacheModeWriteback)
        return {Errc::unsupported, name + ".flags" + at(where + 16) + ": cache mode " +
                                       std::to_string(cache_mode_of(ci.flags)) +
                                       ", only 0 (writeback) is supported"};
    if (gc_percent_of(ci.flags) > kGcPercentMax)
        return {Errc::corrupt, name + ".flags" + at(where + 16) + ": gc_percent " +
                                   std::to_string(gc_percent_of(ci.flags)) + " exceeds 90"};
    return {};
}

inline Status validate_segment_info(const SegmentInfo& si, std::uint32_t seg_num,
                                    std::uint64_t where) {
    const std::uint32_t type = (si.flags & kSegInfoTypeMask) >> kSegInfoTypeShift;
    if (type != kSegTypeCacheData)
        return {Errc::corrupt, "segment_info.flags" + at(where + 8) + ": type " +
                                   std::to_string(type) + ", expected 1 (cache data)"};
    if (si.flags & ~(kSegInfoFlagHasNext | kSegInfoTypeMask))
        return {Errc::corrupt,
                "segment_info.flags" + at(where + 8) + ": unknown bits " + hex(si.flags)};
    if ((si.flags & kSegInfoFlagHasNext) && si.next_seg >= seg_num)
        return {Errc::corrupt, "segment_info.next_seg" + at(where + 12) + ": " +
                                   std::to_string(si.next_seg) + " is not below seg_num " +
                                   std::to_string(seg_num)};
    return {};
}

inline Status validate_pos(const CachePos& p, std::uint32_t n_segs, std::uint64_t seg_data_bytes,
                           const char* name, std::uint64_t where) {
    if (p.cache_seg_id >= n_segs)
        return {Errc::corrupt, std::string(name) + ".cache_seg_id" + at(where + 8) + ": " +
                                   std::to_string(p.cache_seg_id) + " is not below n_segs " +
                                   std::to_string(n_segs)};
    if (p.seg_off % 8 != 0 || p.seg_off + kKsetHeaderBytes > seg_data_bytes)
        return {Errc::corrupt, std::string(name) + ".seg_off" + at(where + 12) + ": " +
                                   std::to_string(p.seg_off) +
                                   " is not an 8-byte aligned offset below " +
                                   std::to_string(seg_data_bytes - kKsetHeaderBytes)};
    return {};
}

// A key from a CRC-valid kset; `where` is the device offset of the key.
inline Status validate_key(const KeyOnMedia& k, std::uint32_t n_segs, std::uint64_t seg_data_bytes,
                           std::uint64_t where) {
    auto bad = [&](const char* field, std::uint64_t field_off, std::string what) {
        return Status(Errc::corrupt,
                      std::string("key.") + field + at(where + field_off) + ": " + what);
    };
    if (k.len == 0) return bad("len", 8, "0, expected > 0");
    if (k.cache_seg_id >= n_segs)
        return bad(
            "cache_seg_id", 16,
            std::to_string(k.cache_seg_id) + " is not below n_segs " + std::to_string(n_segs));
    if (std::uint64_t(k.cache_seg_off) + k.len > seg_data_bytes)
        return bad("cache_seg_off", 20,
                   std::to_string(k.cache_seg_off) + " + len " + std::to_string(k.len) +
                       " runs past the data area (" + std::to_string(seg_data_bytes) + " B)");
    if (k.off > UINT64_MAX - k.len) return bad("off", 0, "off + len overflows");
    if ((k.off >> kSubtreeShift) != ((k.off + k.len - 1) >> kSubtreeShift))
        return bad("off", 0,
                   std::to_string(k.off) + " + " + std::to_string(k.len) +
                       " crosses a 4 MiB subtree boundary");
    // The kernel's keys come from bios: whole sectors (the in-memory index stores sectors).
    if (k.off % kSectorBytes)
        return bad("off", 0, std::to_string(k.off) + " is not a multiple of 512");
    if (k.len % kSectorBytes)
        return bad("len", 8, std::to_string(k.len) + " is not a multiple of 512");
    if (k.cache_seg_off % kSectorBytes)
        return bad("cache_seg_off", 20,
                   std::to_string(k.cache_seg_off) + " is not a multiple of 512");
    if (k.flags != 0 && k.flags != kKeyFlagClean)
        return bad("flags", 12, hex(k.flags) + ", expected 0 or 0x2");
    return {};
}

// ---- ksets ----------------------------------------------------------------------------------
enum class KsetKind { normal, last, end };

// A kset's CRC covers its bytes from offset 4 to the end of its last key.
inline std::uint32_t kset_crc(const std::byte* kset, std::uint64_t size_bytes) noexcept {
    // M5: the last key's last word (data_crc, reserved) not covered
    if (mutant(5) && size_bytes > kKsetHeaderBytes) size_bytes -= 8;
    return crc::kcrc(kset + 4, size_bytes - 4);
}

struct KsetView {
    KsetKind kind = KsetKind::end;
    KsetHeader header{};
    Bytes bytes;             // the whole kset (header and keys) for normal and LAST
    std::string end_reason;  // why this position ends the log (kind == end)

    std::uint32_t key_num() const noexcept {
        return kind == KsetKind::normal ? header.key_num_or_next : 0;
    }
    std::uint32_t next_cache_seg_id() const noexcept { return header.key_num_or_next; }
    std::uint64_t size_bytes() const noexcept {
        return kind == KsetKind::normal ? kset_bytes(key_num())
               : kind == KsetKind::last ? kKsetHeaderBytes
                                        : 0;
    }
    KeyOnMedia key(std::uint32_t i) const noexcept {  // precondition: i < key_num()
        return load<KeyOnMedia>(bytes, kKsetHeaderBytes + kKeyBytes * i);
    }
};

// Decodes the kset at a log position. `window` holds the bytes from that position to the end
// of the segment's data area (or at most kKsetBytesMax of them). A position that does not hold
// a complete, CRC-valid kset ends the log (kind == end: the normal end marker, or a torn last
// write); a CRC-valid kset that is nonetheless impossible is an error (Errc::corrupt).
inline Result<KsetView> decode_kset(Bytes window, std::uint32_t n_segs, std::uint64_t where) {
    KsetView v;
    if (window.size() < kKsetHeaderBytes) {
        v.end_reason = "less than 24 bytes left in the segment";
        return v;
    }
    v.header = load<KsetHeader>(window);
    if (v.header.magic != kKsetMagic) {
        v.end_reason = "magic " + hex(v.header.magic);
        return v;
    }
    const bool last = (v.header.flags & kKsetFlagLast) != 0;
    const std::uint64_t size = last ? kKsetHeaderBytes : kset_bytes(v.header.key_num_or_next);
    if (!last && v.header.key_num_or_next > kKsetKeysMax) {
        v.end_reason = "key_num " + std::to_string(v.header.key_num_or_next) + " exceeds 128";
        return v;
    }
    if (size > window.size()) {
        v.end_reason = "kset of " + std::to_string(size) + " B runs past the data area";
        return v;
    }
    const std::uint32_t crc = kset_crc(window.data(), size);
    if (crc != v.header.crc) {
        v.end_reason = "CRC mismatch (stored " + hex(v.header.crc) + ", computed " + hex(crc) + ")";
        return v;
    }
    // From here the bytes were written whole by a writer: anything impossible is corruption.
    if (v.header.flags & ~kKsetFlagLast)
        return {Errc::corrupt,
                "kset.flags" + at(where + 16) + ": unknown bits " + hex(v.header.flags)};
    if (last && v.header.key_num_or_next >= n_segs)
        return {Errc::corrupt, "kset.next_cache_seg_id" + at(where + 4) + ": " +
                                   std::to_string(v.header.key_num_or_next) +
                                   " is not below n_segs " + std::to_string(n_segs)};
    if (!last && v.header.key_num_or_next == 0)
        return {Errc::corrupt, "kset.key_num" + at(where + 4) + ": a CRC-valid kset with 0 keys"};
    v.kind = last ? KsetKind::last : KsetKind::normal;
    v.bytes = window.first(size);
    return v;
}

// Fills header.crc and magic of a normal kset image whose header.key_num_or_next is set.
// `image` holds the header followed by the keys.
inline void seal_kset(std::span<std::byte> image) noexcept {
    KsetHeader h = load<KsetHeader>(image);
    const std::uint64_t size =
        (h.flags & kKsetFlagLast) ? kKsetHeaderBytes : kset_bytes(h.key_num_or_next);
    h.magic = kKsetMagic;
    std::memcpy(image.data(), &h, sizeof h);
    h.crc = kset_crc(image.data(), size);
    std::memcpy(image.data(), &h.crc, 4);
}

inline KsetHeader make_last_kset(std::uint32_t next_cache_seg_id) noexcept {
    KsetHeader h{0, next_cache_seg_id, kKsetMagic, kKsetFlagLast};
    h.crc = record_crc(h);
    return h;
}

}  // namespace pcache::format
