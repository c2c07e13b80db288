// Test helpers shared by all suites: hex parsing, corruption helpers (flip a byte, fix a CRC).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "pcache/format/codec.hpp"

namespace pcache::testutil {

// "db12 7f09 ..." (xxd style, spaces ignored) -> bytes.
inline std::vector<std::byte> from_hex(std::string_view hex) {
    std::vector<std::byte> out;
    int hi = -1;
    for (char c : hex) {
        int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (v < 0) continue;
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(std::byte(hi * 16 + v));
            hi = -1;
        }
    }
    return out;
}

template <class T>
std::vector<std::byte> bytes_of(const T& v) {
    auto a = format::to_bytes(v);
    return {a.begin(), a.end()};
}

inline void flip_byte(std::span<std::byte> bytes, std::size_t at,
                      std::byte mask = std::byte{0x01}) {
    bytes[at] ^= mask;
}

// Recomputes the CRC of a metadata record stored at the start of `bytes` (crc at offset 0,
// covering bytes 4..size-1), so a corruption gets past the CRC check.
inline void fix_record_crc(std::span<std::byte> bytes, std::size_t record_size) {
    const std::uint32_t c = crc::kcrc(bytes.data() + 4, record_size - 4);
    std::memcpy(bytes.data(), &c, 4);
}

}  // namespace pcache::testutil
