// CRC-32C: known answers from dm-pcache-format.md 1.5, and both implementations against
// Boost.CRC (the oracle) on random buffers of random lengths and alignments.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <boost/crc.hpp>

#include <random>
#include <string_view>
#include <vector>

#include "pcache/crc32c.hpp"

namespace {

// Raw CRC-32C from seed 0x3B15A, no final XOR: Boost wants the initial register bit-reflected.
std::uint32_t boost_kcrc(const void* data, std::size_t len) {
    boost::crc_optimal<32, 0x1EDC6F41, 0x5A8DC000, 0, true, true> c;
    c.process_bytes(data, len);
    return c.checksum();
}

TEST(Crc32c, KnownAnswers) {
    constexpr std::string_view s = "123456789";
    EXPECT_EQ(pcache::crc::kcrc(s.data(), s.size()), 0xE5868AB2u);
    const std::uint8_t zeros[20] = {};
    EXPECT_EQ(pcache::crc::kcrc(zeros, sizeof zeros), 0xB9B69066u);
    const std::uint8_t seq1[12] = {1};
    EXPECT_EQ(pcache::crc::kcrc(seq1, sizeof seq1), 0x6EF5DFB0u);
    EXPECT_EQ(boost_kcrc(s.data(), s.size()), 0xE5868AB2u);  // the oracle itself is right
}

TEST(Crc32c, PortableAndSelectedMatchBoostOnRandomBuffers) {
    std::mt19937_64 rng(20261125);  // seeded: the test is deterministic
    std::vector<unsigned char> buf(70000);
    for (auto& b : buf) b = static_cast<unsigned char>(rng());
    for (int i = 0; i < 2000; ++i) {
        const std::size_t start = rng() % 64;
        const std::size_t len = (i < 100) ? std::size_t(i) : rng() % (buf.size() - 64);
        const auto* p = buf.data() + start;
        const std::uint32_t want = boost_kcrc(p, len);
        ASSERT_EQ(pcache::crc::update_portable(0x3B15A, p, len), want) << "len " << len;
        ASSERT_EQ(pcache::crc::kcrc(p, len), want) << "len " << len;
#if PCACHE_HAVE_X86_CRC
        if (pcache::crc::hardware_available()) {
            ASSERT_EQ(pcache::crc::update_sse42(0x3B15A, p, len), want) << "len " << len;
        }
#endif
    }
}

TEST(Crc32c, UpdateIsIncremental) {
    std::vector<unsigned char> buf(1000);
    for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 7);
    const auto whole = pcache::crc::kcrc(buf.data(), buf.size());
    const auto part = pcache::crc::kcrc(buf.data(), 333);
    EXPECT_EQ(pcache::crc::update(part, buf.data() + 333, buf.size() - 333), whole);
}

TEST(Crc32c, HardwarePathIsSelectedOnThisCpu) {
#if PCACHE_HAVE_X86_CRC
    if (!pcache::crc::hardware_available()) GTEST_SKIP() << "CPU without SSE4.2";
    EXPECT_EQ(pcache::crc::selected_update(), &pcache::crc::update_sse42);
#else
    EXPECT_EQ(pcache::crc::selected_update(), &pcache::crc::update_portable);
#endif
}

// Issue 17: the three-stream path is bit-exact with one stream and with the portable tables, for
// any register, length (across the 3 x 128 and 3 x 1360 block boundaries) and alignment.
// RapidCheck prints the seed and the failing case; rerun with RC_PARAMS="reproduce=...".
RC_GTEST_PROP(Crc32cProperty, ThreeStreamsEqualOneStream, ()) {
    const auto seed = *rc::gen::arbitrary<std::uint32_t>();
    const auto len = *rc::gen::oneOf(rc::gen::inRange<std::size_t>(0, 9000),
                                     rc::gen::inRange<std::size_t>(9000, 70000));
    const auto align = *rc::gen::inRange<std::size_t>(0, 64);
    std::mt19937_64 rng(*rc::gen::arbitrary<std::uint64_t>());
    std::vector<unsigned char> buf(len + align);
    for (auto& b : buf) b = static_cast<unsigned char>(rng());
    const unsigned char* p = buf.data() + align;
    const std::uint32_t want = pcache::crc::update_portable(seed, p, len);
#if PCACHE_HAVE_X86_CRC
    if (pcache::crc::hardware_available()) {
        RC_ASSERT(pcache::crc::update_sse42_serial(seed, p, len) == want);
        RC_ASSERT(pcache::crc::update_sse42(seed, p, len) == want);
    }
#endif
    RC_ASSERT(pcache::crc::update(seed, p, len) == want);
}

// The join tables: shift_n(r) is the register after n zero bytes, for every block size used.
TEST(Crc32c, ZeroShiftTablesAreZeroBytes) {
    std::mt19937_64 rng(17);
    for (std::size_t n : {pcache::crc::detail::kShortBlock, pcache::crc::detail::kLongBlock}) {
        const auto z = pcache::crc::detail::make_zero_shift(n);
        const std::vector<unsigned char> zeros(n);
        for (int i = 0; i < 200; ++i) {
            const auto r = static_cast<std::uint32_t>(rng());
            ASSERT_EQ(z(r), pcache::crc::update_portable(r, zeros.data(), n)) << "n " << n;
        }
    }
}

}  // namespace
