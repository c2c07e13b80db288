// Fuzz target: decode_superblock (dm-pcache-format.md 2.2, 2.8, 9.4).
//
// Input: 24 superblock bytes, then optionally a device size (u64le), a geometry selector (u8)
// and a flag byte whose bit 0 re-seals the CRC so the seg_num and flag checks are reached.
// Checks: the decoder never reads past its span, and anything it accepts is in bounds.
#include <cstdint>
#include <cstring>

#include "fuzz_image.hpp"
#include "pcache/format/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pcache::format;
    const std::size_t sb_len = std::min<std::size_t>(size, kSuperblockBytes);
    std::uint64_t device_bytes = kCacheDevBytesMin;
    if (size >= kSuperblockBytes + 8) std::memcpy(&device_bytes, data + kSuperblockBytes, 8);
    const std::uint8_t geo_pick = size > kSuperblockBytes + 8 ? data[kSuperblockBytes + 8] : 0;
    const bool fix = size > kSuperblockBytes + 9 && (data[kSuperblockBytes + 9] & 1);
    Geometry geo;
    const std::uint64_t sizes[] = {kKernelSegmentBytes, 64 * 1024, 256 * 1024, 1 << 20};
    geo.segment_bytes = sizes[geo_pick % 4];
    PCACHE_FUZZ_CHECK(geo.validate().ok(), "geometry");

    // An exactly sized heap copy, so ASan sees any read past the span.
    std::vector<std::byte> sb(sb_len);
    if (sb_len) std::memcpy(sb.data(), data, sb_len);
    if (fix && sb_len == kSuperblockBytes)
        pcache::fuzz::fix_crc(
            sb,
            {"sb", pcache::fuzz::RegionKind::superblock, 0, std::uint32_t(kSuperblockBytes), 0, {}},
            0, false);
    auto r = decode_superblock(sb, device_bytes, geo);
    if (!r.ok()) {
        PCACHE_FUZZ_CHECK(!r.status().message().empty(), "an error without a message");
        return 0;
    }
    PCACHE_FUZZ_CHECK(sb_len == kSuperblockBytes, "accepted a truncated superblock");
    PCACHE_FUZZ_CHECK(r->magic == kSuperblockMagic && record_crc(*r) == r->crc,
                      "accepted a bad magic or CRC");
    PCACHE_FUZZ_CHECK(r->seg_num > 0 && r->seg_num <= geo.seg_num_for(device_bytes) &&
                          r->seg_num <= kCacheSegsMax,
                      "accepted seg_num " + std::to_string(r->seg_num));
    PCACHE_FUZZ_CHECK(r->flags == 0, "accepted flags");
    return 0;
}
