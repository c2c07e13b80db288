// MD5 (RFC 1321) for tests: the kernel-image fixtures record region contents as md5 sums.
//
// Hand-written on purpose. OpenSSL is not among pcache's dependencies, and the MD5 that ships
// with Boost lives in boost::uuids::detail: its digest byte order differs between Boost versions
// (1.74 byte-swaps each 32-bit word for UUID compatibility, 1.86 changed the digest type), so it
// cannot be relied on for md5sum-compatible text. Checked against RFC 1321's test suite in
// tests/interop/kernel_write_test.cpp. Speed (~400 MB/s at -O1) is ample for test regions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>

namespace pcache::testutil {

class Md5 {
public:
    void update(std::span<const std::byte> bytes) {
        std::size_t i = 0;
        while (i < bytes.size()) {
            if (fill_ == 0 && bytes.size() - i >= 64) {  // whole blocks straight from the input
                std::memcpy(block_.data(), bytes.data() + i, 64);
                compress();
                i += 64;
                continue;
            }
            block_[fill_++] = static_cast<std::uint8_t>(bytes[i++]);
            if (fill_ == 64) {
                compress();
                fill_ = 0;
            }
        }
        length_bytes_ += bytes.size();
    }
    // Lower-case hex, as md5sum prints it. Call once, after the last update().
    std::string hex() {
        const std::uint64_t bits = length_bytes_ * 8;
        const std::byte pad{0x80}, zero{0};
        update(std::span(&pad, 1));
        while (fill_ != 56) update(std::span(&zero, 1));
        std::array<std::byte, 8> len{};
        for (int i = 0; i < 8; ++i) len[i] = static_cast<std::byte>(bits >> (8 * i));
        update(len);
        std::string out;
        char two[3];
        for (std::uint32_t word : state_)
            for (int i = 0; i < 4; ++i) {
                std::snprintf(two, sizeof two, "%02x",
                              static_cast<unsigned>((word >> (8 * i)) & 0xff));
                out += two;
            }
        return out;
    }

private:
    static std::uint32_t rotl(std::uint32_t x, unsigned c) { return (x << c) | (x >> (32 - c)); }

    void compress() {
        // Per-round shift amounts and the sine-derived constants K[i] = floor(2^32 * |sin(i + 1)|).
        static constexpr unsigned kShift[64] = {
            7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
            14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,  11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
            4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21, 6,  10, 15, 21};
        static constexpr std::uint32_t kK[64] = {
            0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
            0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
            0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
            0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
            0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
            0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
            0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
            0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
            0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
            0xeb86d391};
        std::uint32_t m[16];
        std::memcpy(m, block_.data(),
                    sizeof m);  // little-endian host (asserted by the format layer)
        std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
        for (unsigned i = 0; i < 64; ++i) {
            std::uint32_t f;
            unsigned g;
            if (i < 16) {
                f = (b & c) | (~b & d), g = i;
            } else if (i < 32) {
                f = (d & b) | (~d & c), g = (5 * i + 1) % 16;
            } else if (i < 48) {
                f = b ^ c ^ d, g = (3 * i + 5) % 16;
            } else {
                f = c ^ (b | ~d), g = (7 * i) % 16;
            }
            const std::uint32_t next_d = c;
            c = b;
            b = b + rotl(a + f + kK[i] + m[g], kShift[i]);
            a = d;
            d = next_d;
        }
        state_[0] += a, state_[1] += b, state_[2] += c, state_[3] += d;
    }

    std::array<std::uint32_t, 4> state_{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476};
    std::array<std::uint8_t, 64> block_{};
    std::size_t fill_ = 0;
    std::uint64_t length_bytes_ = 0;
};

inline std::string md5_hex(std::span<const std::byte> bytes) {
    Md5 m;
    m.update(bytes);
    return m.hex();
}

}  // namespace pcache::testutil
