// CRC-32C exactly as dm-pcache computes it: the raw Castagnoli register update (reflected
// polynomial 0x82F63B78) starting from the seed 0x3B15A, with no initial and no final inversion.
// Known answer: "123456789" -> 0xE5868AB2.
//
// Two implementations compute the same function: the SSE4.2 `crc32` instruction and a portable
// table-driven fallback. The choice is made once, at run time, from CPUID. Tests compare both
// against Boost.CRC and the three-stream path against the one-stream one (property test).
//
// Three streams (issue 17): one `crc32q` chain runs at one step per 3 cycles (the instruction's
// latency) although the CPU can start one per cycle. update_sse42 therefore cuts long inputs into
// blocks of three equal parts A, B, C of n bytes, runs three independent chains (A from the
// running register, B and C from 0) and joins them with the linearity of the raw register:
//   crc(c, X || Y) = shift_n(crc(c, X)) ^ crc(0, Y)   where shift_n(r) = crc(r, n zero bytes),
// so crc(c, A||B||C) = shift_n(shift_n(cA) ^ cB) ^ cC. shift_n is linear in r: a 4 x 256 table
// per block size (built once from the 32 basis vectors, no carry-less multiply needed).
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

namespace detail {
// shift_n as a table: r -> crc(r, n zero bytes) = t[0][r & 0xFF] ^ ... ^ t[3][r >> 24].
struct ZeroShift {
    std::array<std::array<std::uint32_t, 256>, 4> t{};
    std::uint32_t operator()(std::uint32_t r) const noexcept {
        return t[0][r & 0xFF] ^ t[1][(r >> 8) & 0xFF] ^ t[2][(r >> 16) & 0xFF] ^ t[3][r >> 24];
    }
};
inline ZeroShift make_zero_shift(std::size_t n) {
    std::array<std::uint32_t, 32> basis{};  // shift_n of each single-bit register
    for (unsigned b = 0; b < 32; ++b) {
        std::uint32_t c = 1u << b;
        for (std::size_t i = 0; i < n; ++i) c = (c >> 8) ^ kTables[0][c & 0xFF];
        basis[b] = c;
    }
    ZeroShift z;
    for (unsigned byte = 0; byte < 4; ++byte)
        for (unsigned v = 0; v < 256; ++v) {
            std::uint32_t r = 0;
            for (unsigned bit = 0; bit < 8; ++bit)
                if (v & (1u << bit)) r ^= basis[byte * 8 + bit];
            z.t[byte][v] = r;
        }
    return z;
}
// Block sizes (bytes per stream): a 4 KiB key is one long block (3 x 1360 = 4080) + 16 bytes;
// 512 B .. 4 KiB remainders use short blocks (3 x 128).
inline constexpr std::size_t kLongBlock = 1360, kShortBlock = 128;
inline const ZeroShift& long_shift() {
    static const ZeroShift z = make_zero_shift(kLongBlock);
    return z;
}
inline const ZeroShift& short_shift() {
    static const ZeroShift z = make_zero_shift(kShortBlock);
    return z;
}
}  // namespace detail

#if PCACHE_HAVE_X86_CRC
namespace detail {
// Three chains over blocks of 3 x n bytes while len allows; returns the joined register.
template <std::size_t n>
__attribute__((target("sse4.2"))) inline std::uint64_t crc3_blocks(
    std::uint64_t c0, const unsigned char*& p, std::size_t& len, const ZeroShift& shift) noexcept {
    static_assert(n % 8 == 0);
    while (len >= 3 * n) {
        std::uint64_t c1 = 0, c2 = 0;
        for (std::size_t i = 0; i < n; i += 8) {
            std::uint64_t a, b, c;
            std::memcpy(&a, p + i, 8);
            std::memcpy(&b, p + n + i, 8);
            std::memcpy(&c, p + 2 * n + i, 8);
            c0 = _mm_crc32_u64(c0, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, c);
        }
        c0 = shift(static_cast<std::uint32_t>(c0)) ^ c1;
        c0 = shift(static_cast<std::uint32_t>(c0)) ^ c2;
        p += 3 * n;
        len -= 3 * n;
    }
    return c0;
}
}  // namespace detail

// Hardware update, one stream: one crc32q per 8 bytes (the reference for the three-stream path).
__attribute__((target("sse4.2"))) inline std::uint32_t update_sse42_serial(
    std::uint32_t crc, const void* data, std::size_t len) noexcept {
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

// Hardware update: three interleaved streams over long then short blocks, the rest serial.
// Compiled for SSE4.2 regardless of -march; only called when CPUID says the instruction exists.
__attribute__((target("sse4.2"))) inline std::uint32_t update_sse42(std::uint32_t crc,
                                                                    const void* data,
                                                                    std::size_t len) noexcept {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t c = crc;
    if (len >= 3 * detail::kShortBlock) {
        c = detail::crc3_blocks<detail::kLongBlock>(c, p, len, detail::long_shift());
        c = detail::crc3_blocks<detail::kShortBlock>(c, p, len, detail::short_shift());
    }
    return update_sse42_serial(static_cast<std::uint32_t>(c), p, len);
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
