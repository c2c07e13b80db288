// Golden tests of the on-media format: encoders must produce the exact bytes the kernel wrote
// (taken from the kernel-written image basic_crash_crc, see tests/data/kernel/README.md), and
// decoders must accept those bytes and reject damaged ones with an error naming field and offset.
#include <gtest/gtest.h>

#include "bytes_util.hpp"
#include "pcache/format/codec.hpp"

namespace pcache::format {
namespace {

using testutil::bytes_of;
using testutil::from_hex;

constexpr std::uint64_t kOneGiB = 1ull << 30;

// Bytes copied from the kernel image (xxd of device offsets 0x1000, 0x3000, 0x4000, 0x5000, ...).
const auto kSbBytes = from_hex("db12 7f09 0000 0000 ef96 c596 fa5e b065 3f00 0000 0000 0000");
const auto kCacheInfoSlot1 =
    from_hex("6c33 a5a6 0100 0000 0000 0000 3f00 0000 8311 0000 0000 0000");
const auto kTailSeq1 = from_hex("b0df f56e 0100 0000 0000 0000 0000 0000");
const auto kSeg0Info0 = from_hex("318e 663b 0200 0000 0300 0000 0100 0000");
const auto kSeg0Info1 = from_hex("fe25 8dfc 0100 0000 0200 0000 0000 0000");
const auto kKset5 = from_hex(
    "2cd7 b762 0500 0000 1a4f 164e a694 6867 0000 0000 0000 0000"
    "0000 0000 0000 0000 0010 0000 0000 0000 0100 0000 0000 0000 0000 0000 0000 0000 86a8 bfed "
    "0000 0000"
    "0010 0000 0000 0000 0010 0000 0000 0000 0100 0000 0010 0000 0000 0000 0000 0000 d885 7fab "
    "0000 0000"
    "0000 1000 0000 0000 0010 0000 0000 0000 0100 0000 0020 0000 0000 0000 0000 0000 bd4c 646a "
    "0000 0000"
    "0000 8000 0000 0000 0000 1000 0000 0000 0100 0000 0030 0000 0000 0000 0000 0000 5925 e9fd "
    "0000 0000"
    "0000 0004 0000 0000 0010 0000 0000 0000 0100 0000 0030 1000 0000 0000 0000 0000 0116 e4e7 "
    "0000 0000");

TEST(FormatGolden, SuperblockEncodesToKernelBytes) {
    const Superblock sb = make_superblock(63);
    const auto raw = bytes_of(sb);
    EXPECT_EQ(raw, kSbBytes);
    // Field offsets on the raw bytes: magic at 8, seg_num at 16, CRC at 0 over 4..23.
    EXPECT_EQ(raw[8], std::byte{0xef});
    EXPECT_EQ(raw[15], std::byte{0x65});
    EXPECT_EQ(raw[16], std::byte{63});
    EXPECT_EQ(crc::kcrc(raw.data() + 4, 20), 0x097f12dbu);
    auto d = decode_superblock(kSbBytes, kOneGiB, Geometry::kernel());
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    EXPECT_EQ(d->seg_num, 63u);
}

TEST(FormatGolden, CacheInfoEncodesToKernelBytes) {
    CacheInfo ci{};
    ci.seg_id = 0;
    ci.n_segs = 63;
    ci.flags = kCacheFlagDataCrc | kCacheFlagInitDone | (70u << kCacheFlagGcPercentShift);
    EXPECT_EQ(ci.flags, 0x1183u);
    seal(ci, 1);
    EXPECT_EQ(bytes_of(ci), kCacheInfoSlot1);
    auto d = decode_meta<CacheInfo>(kCacheInfoSlot1, 12288);
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(validate_cache_info(*d, 63, 12288).ok());
    EXPECT_EQ(gc_percent_of(d->flags), 70u);
}

TEST(FormatGolden, PositionAndSegmentRecords) {
    CachePos p{};
    seal(p, 1);
    EXPECT_EQ(bytes_of(p), kTailSeq1);
    EXPECT_EQ(p.header.crc, 0x6EF5DFB0u);  // the spec's test vector for "seq 1, rest 0"

    SegmentInfo si{};
    si.flags = kSegInfoFlagHasNext | (kSegTypeCacheData << kSegInfoTypeShift);
    si.next_seg = 1;
    seal(si, 2);
    EXPECT_EQ(bytes_of(si), kSeg0Info0);
    SegmentInfo last{};
    last.flags = kSegTypeCacheData << kSegInfoTypeShift;
    seal(last, 1);
    EXPECT_EQ(bytes_of(last), kSeg0Info1);

    // Newest copy: slot 0 holds seq 2, slot 1 seq 1.
    auto latest = select_latest<SegmentInfo>(kSeg0Info0, 20480, kSeg0Info1, 24576);
    ASSERT_TRUE(latest.has_value());
    EXPECT_EQ(latest->slot, 0u);
    EXPECT_EQ(latest->record.next_seg, 1u);
}

TEST(FormatGolden, KsetEncodesToKernelBytes) {
    std::vector<std::byte> img(kset_bytes(5));
    KsetHeader h{0, 5, 0, 0};
    std::memcpy(img.data(), &h, sizeof h);
    const std::uint64_t offs[5] = {0, 4096, 1 << 20, 8 << 20, 64 << 20};
    const std::uint32_t lens[5] = {4096, 4096, 4096, 1 << 20, 4096};
    const std::uint32_t segoffs[5] = {0, 4096, 8192, 12288, 1060864};
    const std::uint32_t dcrcs[5] = {0xedbfa886, 0xab7f85d8, 0x6a644cbd, 0xfde92559, 0xe7e41601};
    for (int i = 0; i < 5; ++i) {
        KeyOnMedia k{offs[i], lens[i], 0, 1, segoffs[i], 0, dcrcs[i], 0};
        std::memcpy(img.data() + kKsetHeaderBytes + i * kKeyBytes, &k, sizeof k);
    }
    seal_kset(img);
    EXPECT_EQ(img, kKset5);
    // Raw offsets: magic at 8, first key's len at 24+8, fourth key's off at 24+3*40.
    EXPECT_EQ(img[8], std::byte{0x1a});
    EXPECT_EQ(img[24 + 9], std::byte{0x10});
    EXPECT_EQ(img[24 + 3 * 40 + 2], std::byte{0x80});

    auto v = decode_kset(kKset5, 63, 0x8000);
    ASSERT_TRUE(v.ok()) << v.status().to_string();
    ASSERT_EQ(v->kind, KsetKind::normal);
    EXPECT_EQ(v->key_num(), 5u);
    EXPECT_EQ(v->size_bytes(), 224u);
    EXPECT_EQ(v->key(3).len, 1u << 20);
    EXPECT_EQ(v->key(4).cache_seg_off, 1060864u);
}

TEST(FormatGolden, LastKsetMatchesSpecVector) {
    auto h = make_last_kset(1);
    auto raw = bytes_of(h);
    EXPECT_EQ(crc::kcrc(raw.data() + 4, 20), 0x84181C51u);
    auto v = decode_kset(raw, 63, 0);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->kind, KsetKind::last);
    EXPECT_EQ(v->next_cache_seg_id(), 1u);
}

TEST(FormatDecode, SuperblockErrorsNameFieldAndOffset) {
    auto b = kSbBytes;
    b[9] ^= std::byte{1};
    auto r = decode_superblock(b, kOneGiB, Geometry::kernel());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.code(), Errc::corrupt);
    EXPECT_NE(r.status().message().find("superblock.magic at device offset 4104"),
              std::string::npos)
        << r.status().message();

    b = kSbBytes;
    b[21] ^= std::byte{1};  // tail padding is CRC-covered
    r = decode_superblock(b, kOneGiB, Geometry::kernel());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("superblock.crc"), std::string::npos);

    // A device too small for the recorded seg_num (wrong device or wrong geometry).
    r = decode_superblock(kSbBytes, 512ull << 20, Geometry::kernel());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("superblock.seg_num"), std::string::npos);

    std::vector<std::byte> zeros(24);
    EXPECT_EQ(decode_superblock(zeros, kOneGiB, Geometry::kernel()).code(), Errc::not_found);
    EXPECT_EQ(decode_superblock(std::span(kSbBytes).first(10), kOneGiB, Geometry::kernel()).code(),
              Errc::corrupt);
}

TEST(FormatDecode, SelectLatestFollowsSerialArithmetic) {
    auto rec = [](std::uint8_t seq) {
        CachePos p{};
        p.seg_off = seq;
        seal(p, seq);
        return bytes_of(p);
    };
    auto pick = [&](std::uint8_t s0, std::uint8_t s1) {
        return select_latest<CachePos>(rec(s0), 0, rec(s1), 16)->slot;
    };
    EXPECT_EQ(pick(1, 2), 1u);
    EXPECT_EQ(pick(3, 2), 0u);
    EXPECT_EQ(pick(255, 0), 1u);  // wrap: 0 is after 255
    EXPECT_EQ(pick(0, 255), 0u);
    EXPECT_EQ(pick(7, 7), 0u);    // tie: slot 0
    EXPECT_EQ(pick(0, 128), 0u);  // difference 128: neither is after, slot 0
    EXPECT_EQ(pick(128, 0), 0u);
    auto bad = rec(9);
    bad[10] ^= std::byte{4};
    EXPECT_EQ(select_latest<CachePos>(rec(1), 0, bad, 16)->slot, 0u);
    EXPECT_FALSE(select_latest<CachePos>(bad, 0, bad, 16).has_value());
}

TEST(FormatDecode, KsetEndOfLogVersusCorruption) {
    std::vector<std::byte> zeros(64);
    auto v = decode_kset(zeros, 63, 0);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->kind, KsetKind::end);

    auto torn = kKset5;
    torn[100] ^= std::byte{0xff};  // a key byte changed: CRC fails, the log ends here
    v = decode_kset(torn, 63, 0);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->kind, KsetKind::end);
    EXPECT_NE(v->end_reason.find("CRC"), std::string::npos);

    v = decode_kset(std::span(kKset5).first(100), 63, 0);  // window shorter than the kset
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->kind, KsetKind::end);

    auto big = kKset5;
    big[4] = std::byte{200};  // key_num 200 > 128: never read past 5144 bytes
    v = decode_kset(big, 63, 0);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->kind, KsetKind::end);

    auto last = bytes_of(make_last_kset(63));  // CRC-valid LAST pointing outside the chain
    auto r = decode_kset(last, 63, 0x9000);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("kset.next_cache_seg_id at device offset 36868"),
              std::string::npos)
        << r.status().message();
}

TEST(FormatDecode, KeyValidationNamesTheField) {
    const Geometry g = Geometry::kernel();
    KeyOnMedia k{0, 4096, 0, 1, 0, 0, 0, 0};
    EXPECT_TRUE(validate_key(k, 63, g.seg_data_bytes(), 0).ok());
    auto k2 = k;
    k2.cache_seg_off = static_cast<std::uint32_t>(g.seg_data_bytes() - 512);
    auto s = validate_key(k2, 63, g.seg_data_bytes(), 1000);
    EXPECT_NE(s.message().find("key.cache_seg_off at device offset 1020"), std::string::npos);
    k2 = k;
    k2.cache_seg_id = 63;
    EXPECT_NE(validate_key(k2, 63, g.seg_data_bytes(), 0).message().find("cache_seg_id"),
              std::string::npos);
    k2 = k;
    k2.off = (4 << 20) - 512;  // crosses a subtree boundary
    EXPECT_FALSE(validate_key(k2, 63, g.seg_data_bytes(), 0).ok());
    k2 = k;
    k2.len = 0;
    EXPECT_FALSE(validate_key(k2, 63, g.seg_data_bytes(), 0).ok());
    k2 = k;
    k2.flags = 1;  // EMPTY is never persisted
    EXPECT_FALSE(validate_key(k2, 63, g.seg_data_bytes(), 0).ok());
    // Keys come from bios: whole sectors (the in-memory index stores sectors).
    k2 = k;
    k2.off = 4096 + 1;
    EXPECT_NE(validate_key(k2, 63, g.seg_data_bytes(), 0).message().find("key.off"),
              std::string::npos);
    k2 = k;
    k2.len = 4096 - 8;
    EXPECT_NE(validate_key(k2, 63, g.seg_data_bytes(), 0).message().find("key.len"),
              std::string::npos);
    k2 = k;
    k2.cache_seg_off = 256;
    EXPECT_NE(validate_key(k2, 63, g.seg_data_bytes(), 0).message().find("key.cache_seg_off"),
              std::string::npos);
}

TEST(FormatDecode, CacheInfoValidation) {
    CacheInfo ci{};
    ci.n_segs = 63;
    ci.flags = kCacheFlagInitDone | (91u << kCacheFlagGcPercentShift);
    EXPECT_NE(validate_cache_info(ci, 63, 8192).message().find("gc_percent 91"), std::string::npos);
    ci.flags = kCacheFlagInitDone | (1u << kCacheFlagModeShift);
    EXPECT_EQ(validate_cache_info(ci, 63, 8192).code(), Errc::unsupported);
    ci.flags = kCacheFlagInitDone;
    ci.n_segs = 64;
    EXPECT_NE(
        validate_cache_info(ci, 63, 8192).message().find("cache_info.n_segs at device offset 8204"),
        std::string::npos);
}

TEST(FormatGeometry, KernelSegmentCounts) {
    const Geometry g = Geometry::kernel();
    EXPECT_EQ(g.seg_num_for(512ull << 20), 31u);
    EXPECT_EQ(g.seg_num_for(kOneGiB), 63u);
    EXPECT_EQ(g.seg_data_bytes(), 16764928u);
    EXPECT_EQ(g.data_offset(1), 20480u + (16u << 20) + 12288u);
    EXPECT_TRUE(g.validate().ok());
    EXPECT_FALSE(Geometry{4096}.validate().ok());
    EXPECT_TRUE(Geometry{1 << 20}.validate().ok());
}

}  // namespace
}  // namespace pcache::format
