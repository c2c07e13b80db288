// CRC-32C exactly as dm-pcache computes it: the raw Castagnoli register update (reflected
// polynomial 0x82F63B78) starting from the seed 0x3B15A, with no initial and no final inversion.
// Known answer: "123456789" -> 0xE5868AB2.
//
// Two implementations compute the same function: the SSE4.2 `crc32` instruction (8 bytes per
// step) and a portable table-driven fallback. The choice is made once, at run time, from CPUID.
// Tests compare both against Boost.CRC.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "pcache/format/constants.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define PCACHE_HAVE_X86_CRC 1
#else
#define PCACHE_HAVE_X86_CRC 0
#endif

namespace pcache::crc {

namespace detail {
inline constexpr std::uint32_t kPolyReflected = 0x82F63B78u;

constexpr std::array<std::array<std::uint32_t, 256>, 8> make_tables() {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolyReflected : c >> 1;
        t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
        for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    return t;
}
inline constexpr auto kTables = make_tables();
}  // namespace detail

// Portable slice-by-8 update of the raw register.
inline std::uint32_t update_portable(std::uint32_t crc, const void* data,
                                     std::size_t len) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    const auto& t = detail::kTables;
    while (len >= 8) {
        std::uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= crc;  // little-endian host (asserted in layout.hpp)
        crc = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
              t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if PCACHE_HAVE_X86_CRC
// Hardware update: one crc32q per 8 bytes. Compiled for SSE4.2 regardless of -march; only
// called when CPUID says the instruction exists.
__attribute__((target("sse4.2"))) inline std::uint32_t update_sse42(std::uint32_t crc,
                                                                    const void* data,
                                                                    std::size_t len) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t c = crc;
    while (len >= 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c);
    while (len--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

using UpdateFn = std::uint32_t (*)(std::uint32_t, const void*, std::size_t) noexcept;

inline bool hardware_available() noexcept {
#if PCACHE_HAVE_X86_CRC
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2");
#else
    return false;
#endif
}

inline UpdateFn selected_update() noexcept {
#if PCACHE_HAVE_X86_CRC
    static const UpdateFn fn = hardware_available() ? &update_sse42 : &update_portable;
    return fn;
#else
    return &update_portable;
#endif
}

// Raw register update with the run-time selected implementation.
inline std::uint32_t update(std::uint32_t crc, const void* data, std::size_t len) noexcept {
    return selected_update()(crc, data, len);
}

// The checksum of every dm-pcache record and of cached data: update(0x3B15A, bytes).
inline std::uint32_t kcrc(const void* data, std::size_t len) noexcept {
    return update(format::kCrcSeed, data, len);
}
inline std::uint32_t kcrc(std::span<const std::byte> bytes) noexcept {
    return kcrc(bytes.data(), bytes.size());
}

}  // namespace pcache::crc
