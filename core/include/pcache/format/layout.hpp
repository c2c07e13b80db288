// The on-media structures of dm-pcache v6.18, byte for byte.
//
// Each struct is a trivially copyable aggregate whose layout equals the kernel's natural C
// layout: fields in the kernel's order, no hidden padding (asserted below), little-endian
// host order (the kernel stores everything but the superblock in host order and refuses a
// foreign-endian superblock; pcache supports little-endian hosts only, asserted here).
// Structs are never overlaid on device memory: they are copied in and out with memcpy by the
// codec (codec.hpp), so alignment of device offsets never matters.
//
// Device map (dm-pcache-format.md section 2):
//   0      unused            4096  superblock          8192  cache_info slot 0
//   12288  cache_info slot 1 16384 cache_ctrl          20480 segment 0, then every 16 MiB
// Inside a segment: seg_info slot 0 @0, slot 1 @4096, seg_ctrl @8192, data area @12288.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "pcache/format/constants.hpp"

static_assert(std::endian::native == std::endian::little,
              "pcache supports little-endian hosts only (dm-pcache stores host-endian records)");

namespace pcache::format {

// First 8 bytes of every duplicated record.
struct MetaHeader {
    std::uint32_t crc;     // kcrc(record + 4, sizeof(record) - 4)
    std::uint8_t seq;      // 8-bit sequence number, serial arithmetic (newest copy wins)
    std::uint8_t version;  // unused by the kernel; pcache writes 0, readers ignore it
    std::uint16_t res;     // unused; pcache writes 0, readers ignore it
};

// Device offset 4096. Single copy. CRC covers bytes 4..23 including the tail padding.
struct Superblock {
    std::uint32_t crc;      // le32 kcrc(sb + 4, 20)
    std::uint32_t flags;    // le32, bit 0 = formatted on a big-endian host
    std::uint64_t magic;    // le64 kSuperblockMagic; 0 = unformatted
    std::uint32_t seg_num;  // le32 number of physical segments
    std::uint32_t pad;      // C tail padding: CRC-covered, never assumed zero on read
};

// Device offsets 8192 and 12288 (stride 4096).
struct CacheInfo {
    MetaHeader header;
    std::uint32_t seg_id;    // physical id of cache segment 0
    std::uint32_t n_segs;    // cache segments in the chain
    std::uint32_t flags;     // kCacheFlag* (data_crc, init_done, mode, gc_percent)
    std::uint32_t reserved;  // 0
};

// A log position (key_tail, dirty_tail): cache segment index and byte offset in its data area.
struct CachePos {
    MetaHeader header;
    std::uint32_t cache_seg_id;  // cache segment index (0..n_segs-1), not physical
    std::uint32_t seg_off;       // bytes from the start of the segment's data area
};

// Device offset 16384: two copies each of key_tail and dirty_tail, 16 bytes apart.
struct CacheCtrl {
    CachePos key_tail_pos[kMetaIndexMax];
    CachePos dirty_tail_pos[kMetaIndexMax];
};

// Segment offsets 0 and 4096 (stride 4096).
struct SegmentInfo {
    MetaHeader header;
    std::uint32_t flags;     // bit 0 HAS_NEXT, bits 1..4 type (1 = cache data)
    std::uint32_t next_seg;  // physical id of the next segment in the chain (with HAS_NEXT)
};

// Generation of a segment's contents; two copies 16 bytes apart at segment offset 8192.
struct SegGen {
    MetaHeader header;
    std::uint64_t gen;  // only increases; a key with seg_gen < gen is stale
};

struct SegCtrl {
    SegGen gen[kMetaIndexMax];
    std::uint64_t res[64];  // zeroed at format
};

// One cached extent: backing range [off, off+len) stored at (cache_seg_id, cache_seg_off).
struct KeyOnMedia {
    std::uint64_t off;            // logical byte offset on the backing device
    std::uint32_t len;            // bytes (> 0)
    std::uint32_t flags;          // 0 dirty, kKeyFlagClean for read-miss fills
    std::uint32_t cache_seg_id;   // cache segment of the data
    std::uint32_t cache_seg_off;  // bytes from the start of that segment's data area
    std::uint64_t seg_gen;        // data segment generation at allocation time
    std::uint32_t data_crc;       // kcrc(data, len) when DATA_CRC is on, else 0
    std::uint32_t reserved;       // 0
};

// Header of a kset; a normal kset is followed by key_num keys, a LAST kset by nothing.
struct KsetHeader {
    std::uint32_t crc;              // kcrc(kset + 4, size - 4)
    std::uint32_t key_num_or_next;  // key count (normal) or next_cache_seg_id (LAST)
    std::uint64_t magic;            // kKsetMagic; anything else ends the log
    std::uint64_t flags;            // bit 0 LAST
};

// ---- Layout assertions: size, every field offset, no hidden padding ---------------------
#define PCACHE_LAYOUT(T, bytes)                                                     \
    static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>); \
    static_assert(sizeof(T) == (bytes));                                            \
    static_assert(std::has_unique_object_representations_v<T>, #T " has hidden padding")

PCACHE_LAYOUT(MetaHeader, kMetaHeaderBytes);
static_assert(offsetof(MetaHeader, crc) == 0 && offsetof(MetaHeader, seq) == 4 &&
              offsetof(MetaHeader, version) == 5 && offsetof(MetaHeader, res) == 6);

PCACHE_LAYOUT(Superblock, kSuperblockBytes);
static_assert(offsetof(Superblock, crc) == 0 && offsetof(Superblock, flags) == 4 &&
              offsetof(Superblock, magic) == 8 && offsetof(Superblock, seg_num) == 16 &&
              offsetof(Superblock, pad) == 20);

PCACHE_LAYOUT(CacheInfo, kCacheInfoBytes);
static_assert(offsetof(CacheInfo, header) == 0 && offsetof(CacheInfo, seg_id) == 8 &&
              offsetof(CacheInfo, n_segs) == 12 && offsetof(CacheInfo, flags) == 16 &&
              offsetof(CacheInfo, reserved) == 20);

PCACHE_LAYOUT(CachePos, kPosBytes);
static_assert(offsetof(CachePos, header) == 0 && offsetof(CachePos, cache_seg_id) == 8 &&
              offsetof(CachePos, seg_off) == 12);

PCACHE_LAYOUT(CacheCtrl, kCacheCtrlBytes);
static_assert(offsetof(CacheCtrl, key_tail_pos) == 0 && offsetof(CacheCtrl, dirty_tail_pos) == 32);
static_assert(kKeyTailOffsetBytes == kCacheCtrlOffsetBytes + offsetof(CacheCtrl, key_tail_pos));
static_assert(kDirtyTailOffsetBytes == kCacheCtrlOffsetBytes + offsetof(CacheCtrl, dirty_tail_pos));

PCACHE_LAYOUT(SegmentInfo, kSegInfoBytes);
static_assert(offsetof(SegmentInfo, header) == 0 && offsetof(SegmentInfo, flags) == 8 &&
              offsetof(SegmentInfo, next_seg) == 12);

PCACHE_LAYOUT(SegGen, kSegGenBytes);
static_assert(offsetof(SegGen, header) == 0 && offsetof(SegGen, gen) == 8);

PCACHE_LAYOUT(SegCtrl, kSegCtrlBytes);
static_assert(offsetof(SegCtrl, gen) == 0 && offsetof(SegCtrl, res) == 32);

PCACHE_LAYOUT(KeyOnMedia, kKeyBytes);
static_assert(offsetof(KeyOnMedia, off) == 0 && offsetof(KeyOnMedia, len) == 8 &&
              offsetof(KeyOnMedia, flags) == 12 && offsetof(KeyOnMedia, cache_seg_id) == 16 &&
              offsetof(KeyOnMedia, cache_seg_off) == 20 && offsetof(KeyOnMedia, seg_gen) == 24 &&
              offsetof(KeyOnMedia, data_crc) == 32 && offsetof(KeyOnMedia, reserved) == 36);

PCACHE_LAYOUT(KsetHeader, kKsetHeaderBytes);
static_assert(offsetof(KsetHeader, crc) == 0 && offsetof(KsetHeader, key_num_or_next) == 4 &&
              offsetof(KsetHeader, magic) == 8 && offsetof(KsetHeader, flags) == 16);

#undef PCACHE_LAYOUT

// Bytes of a normal kset holding n keys.
constexpr std::uint64_t kset_bytes(std::uint32_t key_num) noexcept {
    return kKsetHeaderBytes + kKeyBytes * key_num;
}
static_assert(kset_bytes(kKsetKeysMax) == 5144);

// Record field accessors used by the generic duplicated-record code.
template <class T>
concept MetaRecord = std::is_same_v<T, CacheInfo> || std::is_same_v<T, CachePos> ||
    std::is_same_v<T, SegmentInfo> || std::is_same_v<T, SegGen>;

template <MetaRecord T>
constexpr const char* record_name() noexcept {
    if constexpr (std::is_same_v<T, CacheInfo>)
        return "cache_info";
    else if constexpr (std::is_same_v<T, CachePos>)
        return "cache_pos";
    else if constexpr (std::is_same_v<T, SegmentInfo>)
        return "segment_info";
    else
        return "seg_gen";
}

}  // namespace pcache::format
