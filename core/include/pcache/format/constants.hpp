// Every constant of the dm-pcache v6.18 on-media format, defined once, with its unit and origin.
//
// Origin notation: [file.h] names the kernel source file under drivers/md/dm-pcache/ that
// defines the value; "derived" values are computed here from others and say how.
#pragma once

#include <cstdint>

namespace pcache::format {

// ---- Sizes and device geometry ----------------------------------------------------------
inline constexpr std::uint32_t kSectorShift = 9;                   // [dm_pcache.c]
inline constexpr std::uint64_t kSectorBytes = 1u << kSectorShift;  // 512 B
inline constexpr std::uint32_t kMetaIndexMax = 2;  // copies per record [pcache_internal.h]

inline constexpr std::uint64_t kSuperblockOffsetBytes = 4096;     // PCACHE_SB_OFF [cache_dev.h]
inline constexpr std::uint64_t kSuperblockRegionBytes = 4096;     // PCACHE_SB_SIZE
inline constexpr std::uint64_t kCacheInfoOffsetBytes = 8192;      // PCACHE_CACHE_INFO_OFF [cache.h]
inline constexpr std::uint64_t kCacheInfoSlotStrideBytes = 4096;  // PCACHE_CACHE_INFO_SIZE
inline constexpr std::uint64_t kCacheCtrlOffsetBytes =
    16384;  // PCACHE_CACHE_CTRL_OFF = 8192 + 2*4096
inline constexpr std::uint64_t kCacheCtrlRegionBytes = 4096;    // PCACHE_CACHE_CTRL_SIZE
inline constexpr std::uint64_t kSegmentsOffsetBytes = 20480;    // PCACHE_SEGMENTS_OFF [cache_dev.h]
inline constexpr std::uint64_t kSegInfoSlotStrideBytes = 4096;  // PCACHE_SEG_INFO_SIZE [segment.h]
inline constexpr std::uint64_t kKernelSegmentBytes = 16ull << 20;  // PCACHE_SEG_SIZE, 16 MiB
inline constexpr std::uint64_t kCacheDevBytesMin =
    512ull << 20;  // PCACHE_CACHE_DEV_SIZE_MIN [cache_dev.h]
inline constexpr std::uint64_t kSegCtrlOffsetBytes = 8192;  // PCACHE_CACHE_SEG_CTRL_OFF = 2*4096
inline constexpr std::uint64_t kSegCtrlRegionBytes = 4096;  // PCACHE_CACHE_SEG_CTRL_SIZE
inline constexpr std::uint64_t kSegDataOffsetBytes =
    12288;  // derived: SEG_CTRL_OFF + SEG_CTRL_SIZE [cache_segment.c]
inline constexpr std::uint64_t kKernelSegDataBytes =  // 16764928 [segment.c]
    kKernelSegmentBytes - kSegDataOffsetBytes;

inline constexpr std::uint64_t kSubtreeBytes = 4ull << 20;  // PCACHE_CACHE_SUBTREE_SIZE [cache.h]
inline constexpr std::uint32_t kSubtreeShift = 22;          // PCACHE_CACHE_SUBTREE_SIZE_SHIFT
inline constexpr std::uint64_t kSubtreeMask = kSubtreeBytes - 1;  // PCACHE_CACHE_SUBTREE_SIZE_MASK
static_assert((1ull << kSubtreeShift) == kSubtreeBytes);

inline constexpr std::uint32_t kKsetKeysMax = 128;  // PCACHE_KSET_KEYS_MAX [cache.h]
inline constexpr std::uint32_t kCacheSegsMax =
    1u << 20;  // PCACHE_CACHE_SEGS_MAX (not enforced by v6.18)

// ---- Record sizes (asserted against the structs in layout.hpp) ---------------------------
inline constexpr std::uint64_t kMetaHeaderBytes = 8;
inline constexpr std::uint64_t kSuperblockBytes = 24;  // 20 used + 4 tail padding
inline constexpr std::uint64_t kCacheInfoBytes = 24;
inline constexpr std::uint64_t kPosBytes = 16;  // pcache_cache_pos_onmedia
inline constexpr std::uint64_t kCacheCtrlBytes = 64;
inline constexpr std::uint64_t kSegInfoBytes = 16;
inline constexpr std::uint64_t kSegGenBytes = 16;
inline constexpr std::uint64_t kSegCtrlBytes = 544;  // 2*16 + 64*8 reserved
inline constexpr std::uint64_t kKeyBytes = 40;
inline constexpr std::uint64_t kKsetHeaderBytes = 24;
inline constexpr std::uint64_t kKsetBytesMax =  // 5144 = PCACHE_KSET_ONMEDIA_SIZE_MAX
    kKsetHeaderBytes + kKeyBytes * kKsetKeysMax;

// Device offsets of the duplicated position records inside cache_ctrl [cache.h].
inline constexpr std::uint64_t kKeyTailOffsetBytes = kCacheCtrlOffsetBytes + 0;     // 16384, 16400
inline constexpr std::uint64_t kDirtyTailOffsetBytes = kCacheCtrlOffsetBytes + 32;  // 16416, 16432
inline constexpr std::uint64_t kPosSlotStrideBytes = kPosBytes;                     // 16
inline constexpr std::uint64_t kSegGenSlotStrideBytes = kSegGenBytes;               // 16

// ---- Magic numbers and seeds ------------------------------------------------------------
inline constexpr std::uint64_t kSuperblockMagic =
    0x65B05EFA96C596EFull;                                          // PCACHE_MAGIC [cache_dev.h]
inline constexpr std::uint64_t kKsetMagic = 0x676894a64e164f1aull;  // PCACHE_KSET_MAGIC [cache.h]
inline constexpr std::uint32_t kCrcSeed = 0x3B15A;  // PCACHE_CRC_SEED [pcache_internal.h]

// ---- Flag bits ---------------------------------------------------------------------------
inline constexpr std::uint32_t kSbFlagBigEndian = 1u << 0;  // PCACHE_SB_F_BIGENDIAN

inline constexpr std::uint32_t kCacheFlagDataCrc = 1u
                                                   << 0;  // PCACHE_CACHE_FLAGS_DATA_CRC [cache.h]
inline constexpr std::uint32_t kCacheFlagInitDone = 1u << 1;  // PCACHE_CACHE_FLAGS_INIT_DONE
inline constexpr std::uint32_t kCacheFlagModeShift = 2;
inline constexpr std::uint32_t kCacheFlagModeMask = 0xFu << kCacheFlagModeShift;  // bits 2..5
inline constexpr std::uint32_t kCacheFlagGcPercentShift = 6;
inline constexpr std::uint32_t kCacheFlagGcPercentMask = 0x7Fu
                                                         << kCacheFlagGcPercentShift;  // bits 6..12
inline constexpr std::uint32_t kCacheModeWriteback = 0;  // the only mode accepted

inline constexpr std::uint32_t kGcPercentMin = 0;       // PCACHE_CACHE_GC_PERCENT_MIN [cache.h]
inline constexpr std::uint32_t kGcPercentMax = 90;      // PCACHE_CACHE_GC_PERCENT_MAX
inline constexpr std::uint32_t kGcPercentDefault = 70;  // PCACHE_CACHE_GC_PERCENT_DEFAULT

inline constexpr std::uint32_t kSegInfoFlagHasNext =
    1u << 0;  // PCACHE_SEG_INFO_FLAGS_HAS_NEXT [segment.h]
inline constexpr std::uint32_t kSegInfoTypeShift = 1;
inline constexpr std::uint32_t kSegInfoTypeMask = 0xFu << kSegInfoTypeShift;  // bits 1..4
inline constexpr std::uint32_t kSegTypeCacheData = 1;  // PCACHE_SEGMENT_TYPE_CACHE_DATA

inline constexpr std::uint32_t kKeyFlagEmpty =
    1u << 0;  // PCACHE_CACHE_KEY_FLAGS_EMPTY (never persisted)
inline constexpr std::uint32_t kKeyFlagClean = 1u << 1;  // PCACHE_CACHE_KEY_FLAGS_CLEAN

inline constexpr std::uint64_t kKsetFlagLast = 1ull << 0;  // PCACHE_KSET_FLAGS_LAST [cache.h]

}  // namespace pcache::format
