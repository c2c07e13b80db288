// Geometry: the one layout parameter that is not on the media, the segment size.
//
// The kernel always uses 16 MiB segments (kernel geometry). Tests may choose a smaller size so
// that small images have many segments; such images are pcache-only: the superblock does not
// record the segment size, so they must be reopened with the same geometry (a mismatch fails
// the superblock's seg_num bound check with a clear message).
#pragma once

#include <cstdint>
#include <string>

#include "pcache/format/constants.hpp"
#include "pcache/result.hpp"

namespace pcache::format {

struct Geometry {
    std::uint64_t segment_bytes = kKernelSegmentBytes;

    static constexpr Geometry kernel() noexcept { return {}; }
    // Smallest test segment: metadata pages plus room for a full kset, its end marker and a LAST
    // kset.
    static constexpr std::uint64_t kSegmentBytesMin = 64 * 1024;

    constexpr bool is_kernel() const noexcept { return segment_bytes == kKernelSegmentBytes; }
    constexpr std::uint64_t seg_data_bytes() const noexcept {
        return segment_bytes - kSegDataOffsetBytes;
    }
    constexpr std::uint64_t segment_offset(std::uint32_t phys_id) const noexcept {
        return kSegmentsOffsetBytes + std::uint64_t(phys_id) * segment_bytes;
    }
    constexpr std::uint64_t data_offset(std::uint32_t phys_id) const noexcept {
        return segment_offset(phys_id) + kSegDataOffsetBytes;
    }
    // seg_num the formatter computes for a device (section 2.1).
    constexpr std::uint64_t seg_num_for(std::uint64_t device_bytes) const noexcept {
        return device_bytes < kSegmentsOffsetBytes
                   ? 0
                   : (device_bytes - kSegmentsOffsetBytes) / segment_bytes;
    }
    // The kernel refuses cache devices under 512 MiB; test geometries need two segments.
    constexpr std::uint64_t device_bytes_min() const noexcept {
        return is_kernel() ? kCacheDevBytesMin : kSegmentsOffsetBytes + 2 * segment_bytes;
    }

    Status validate() const {
        if (segment_bytes % 4096 != 0 || segment_bytes < kSegmentBytesMin ||
            segment_bytes > kKernelSegmentBytes)
            return {Errc::invalid_argument,
                    "segment size " + std::to_string(segment_bytes) +
                        " B: expected a multiple of 4096 between 65536 and 16777216"};
        return {};
    }
};

}  // namespace pcache::format
