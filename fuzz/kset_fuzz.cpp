// Fuzz target: decode_kset and validate_key over every key of a normal kset (5.2, 9.4, 9.5).
//
// Input: n_segs (u32le), seg_data_bytes (u32le), fix (u8: bit 0 re-seals the kset CRC over
// what key_num claims, clamped to the window), then the window: the bytes from the kset's
// position to the end of its segment's data area (at most 5144 are read by the engine; the
// target passes the window as given, so longer windows test the key_num bound too).
#include <cstdint>
#include <cstring>

#include "fuzz_image.hpp"
#include "pcache/format/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pcache::format;
    constexpr std::size_t kHead = 9;
    if (size < kHead) return 0;
    std::uint32_t n_segs = 0, data_bytes = 0;
    std::memcpy(&n_segs, data, 4);
    std::memcpy(&data_bytes, data + 4, 4);
    std::vector<std::byte> window(size - kHead);  // exact size: ASan catches any overread
    if (!window.empty()) std::memcpy(window.data(), data + kHead, window.size());
    if ((data[8] & 1) && window.size() >= kKsetHeaderBytes) {
        auto h = load<KsetHeader>(window);
        std::uint64_t len =
            (h.flags & kKsetFlagLast) ? kKsetHeaderBytes : 24 + 40ull * h.key_num_or_next;
        len = std::min<std::uint64_t>(len, window.size());
        const std::uint32_t c = pcache::crc::kcrc(window.data() + 4, len - 4);
        std::memcpy(window.data(), &c, 4);
    }
    auto v = decode_kset(window, n_segs, 20480 + 12288);
    if (!v.ok()) {
        PCACHE_FUZZ_CHECK(!v.status().message().empty(), "an error without a message");
        return 0;
    }
    PCACHE_FUZZ_CHECK(v->size_bytes() <= window.size() && v->bytes.size() == v->size_bytes(),
                      "kset larger than its window");
    if (v->kind == KsetKind::end) {
        PCACHE_FUZZ_CHECK(!v->end_reason.empty(), "end of log without a reason");
        return 0;
    }
    if (v->kind == KsetKind::last) {
        PCACHE_FUZZ_CHECK(v->next_cache_seg_id() < n_segs, "LAST kset to an out-of-range segment");
        return 0;
    }
    PCACHE_FUZZ_CHECK(v->key_num() >= 1 && v->key_num() <= kKsetKeysMax, "key_num out of range");
    for (std::uint32_t i = 0; i < v->key_num(); ++i) {
        const KeyOnMedia k = v->key(i);
        auto s = validate_key(k, n_segs, data_bytes, 32768 + kset_bytes(i));
        if (!s.ok()) continue;
        PCACHE_FUZZ_CHECK(k.len > 0 && k.cache_seg_id < n_segs &&
                              std::uint64_t(k.cache_seg_off) + k.len <= data_bytes &&
                              (k.off >> kSubtreeShift) == ((k.off + k.len - 1) >> kSubtreeShift),
                          "accepted an out-of-range key");
    }
    return 0;
}
