// Fuzz target: selection of the newest valid copy of a duplicated record (select_latest, 3.2)
// and its semantic check (validate_cache_info / validate_pos / validate_segment_info; seg_gen
// has none: any CRC-valid generation is accepted).
//
// Input: type (u8: cache_info, cache_pos, segment_info, seg_gen), bound (u32le: seg_num or
// n_segs), seg_data_bytes (u32le), fix (u8: bit i re-seals slot i's CRC), then slot 0 and slot
// 1 bytes (each sizeof(record); a short input truncates them, which must be refused cleanly).
#include <cstdint>
#include <cstring>

#include "fuzz_image.hpp"
#include "pcache/format/codec.hpp"

namespace {

using namespace pcache::format;

template <MetaRecord T>
void one(const std::uint8_t* p, std::size_t n, std::uint32_t bound, std::uint64_t data_bytes,
         std::uint8_t fix) {
    const std::size_t l0 = std::min(n, sizeof(T));
    const std::size_t l1 = std::min(n - l0, sizeof(T));
    std::vector<std::byte> s0(l0), s1(l1);  // exact sizes: ASan catches any overread
    if (l0) std::memcpy(s0.data(), p, l0);
    if (l1) std::memcpy(s1.data(), p + l0, l1);
    auto seal = [](std::vector<std::byte>& s) {
        if (s.size() != sizeof(T)) return;
        const std::uint32_t c = pcache::crc::kcrc(s.data() + 4, sizeof(T) - 4);
        std::memcpy(s.data(), &c, 4);
    };
    if (fix & 1) seal(s0);
    if (fix & 2) seal(s1);
    auto latest = select_latest<T>(s0, 8192, s1, 12288);
    const auto v0 = decode_meta<T>(s0, 8192), v1 = decode_meta<T>(s1, 12288);
    PCACHE_FUZZ_CHECK(latest.has_value() == (v0.ok() || v1.ok()), "a valid copy was not selected");
    if (!latest) return;
    PCACHE_FUZZ_CHECK(record_crc(latest->record) == latest->record.header.crc,
                      "selected a bad CRC");
    if (v0.ok() && v1.ok()) {
        const bool one_newer = seq_after(v1->header.seq, v0->header.seq);
        PCACHE_FUZZ_CHECK(latest->slot == (one_newer ? 1u : 0u), "wrong copy selected");
    }
    pcache::Status s;
    if constexpr (std::is_same_v<T, CacheInfo>) {
        s = validate_cache_info(latest->record, bound, 8192);
        if (s.ok())
            PCACHE_FUZZ_CHECK(latest->record.seg_id < bound && latest->record.n_segs <= bound &&
                                  gc_percent_of(latest->record.flags) <= kGcPercentMax,
                              "accepted an impossible cache_info");
    } else if constexpr (std::is_same_v<T, CachePos>) {
        s = validate_pos(latest->record, bound, data_bytes, "key_tail", 16384);
        if (s.ok())
            PCACHE_FUZZ_CHECK(latest->record.cache_seg_id < bound &&
                                  latest->record.seg_off + kKsetHeaderBytes <= data_bytes,
                              "accepted an out-of-range position");
    } else if constexpr (std::is_same_v<T, SegmentInfo>) {
        s = validate_segment_info(latest->record, bound, 20480);
        if (s.ok() && (latest->record.flags & kSegInfoFlagHasNext))
            PCACHE_FUZZ_CHECK(latest->record.next_seg < bound, "accepted an out-of-range next_seg");
    }
    if (!s.ok()) PCACHE_FUZZ_CHECK(!s.message().empty(), "an error without a message");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::size_t kHead = 10;
    if (size < kHead) return 0;
    std::uint32_t bound = 0, data_bytes = 0;
    std::memcpy(&bound, data + 1, 4);
    std::memcpy(&data_bytes, data + 5, 4);
    const std::uint8_t fix = data[9];
    const std::uint8_t* p = data + kHead;
    const std::size_t n = size - kHead;
    switch (data[0] % 4) {
        case 0:
            one<CacheInfo>(p, n, bound, data_bytes, fix);
            break;
        case 1:
            one<CachePos>(p, n, bound, data_bytes, fix);
            break;
        case 2:
            one<SegmentInfo>(p, n, bound, data_bytes, fix);
            break;
        default:
            one<SegGen>(p, n, bound, data_bytes, fix);
            break;
    }
    return 0;
}
