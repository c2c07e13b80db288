// Round-trip properties of the codec: decode(encode(x)) == x for every record type, and any
// single-byte change of a CRC-covered record is rejected (or, for ksets, ends the log).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstring>

#include "bytes_util.hpp"
#include "pcache/format/codec.hpp"

namespace pcache::format {
namespace {

template <class T>
bool same_bytes(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <MetaRecord T>
void check_meta_roundtrip(T rec, std::uint8_t seq, std::size_t pos, std::uint8_t mask) {
    seal(rec, seq);
    auto raw = testutil::bytes_of(rec);
    auto back = decode_meta<T>(raw, 0);
    RC_ASSERT(back.ok());
    RC_ASSERT(same_bytes(*back, rec));
    raw[pos % raw.size()] ^= std::byte(mask == 0 ? 1 : mask);
    RC_ASSERT(!decode_meta<T>(raw, 0).ok());
}

RC_GTEST_PROP(FormatRoundTrip, CacheInfo,
              (std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint8_t seq, std::size_t pos,
               std::uint8_t mask)) {
    check_meta_roundtrip(CacheInfo{{}, a, b, c, 0}, seq, pos, mask);
}
RC_GTEST_PROP(FormatRoundTrip, CachePos,
              (std::uint32_t a, std::uint32_t b, std::uint8_t seq, std::size_t pos,
               std::uint8_t mask)) {
    check_meta_roundtrip(CachePos{{}, a, b}, seq, pos, mask);
}
RC_GTEST_PROP(FormatRoundTrip, SegmentInfo,
              (std::uint32_t a, std::uint32_t b, std::uint8_t seq, std::size_t pos,
               std::uint8_t mask)) {
    check_meta_roundtrip(SegmentInfo{{}, a, b}, seq, pos, mask);
}
RC_GTEST_PROP(FormatRoundTrip, SegGen,
              (std::uint64_t g, std::uint8_t seq, std::size_t pos, std::uint8_t mask)) {
    check_meta_roundtrip(SegGen{{}, g}, seq, pos, mask);
}

RC_GTEST_PROP(FormatRoundTrip, Superblock,
              (std::uint32_t seg_num, std::size_t pos, std::uint8_t mask)) {
    const Geometry g = Geometry::kernel();
    const std::uint32_t n = 1 + seg_num % 1000;
    const std::uint64_t dev = kSegmentsOffsetBytes + std::uint64_t(n) * g.segment_bytes;
    auto raw = testutil::bytes_of(make_superblock(n));
    auto back = decode_superblock(raw, dev, g);
    RC_ASSERT(back.ok());
    RC_ASSERT(back->seg_num == n);
    raw[pos % raw.size()] ^= std::byte(mask == 0 ? 1 : mask);
    RC_ASSERT(!decode_superblock(raw, dev, g).ok());
}

RC_GTEST_PROP(FormatRoundTrip, Kset, (std::size_t pos, std::uint8_t mask)) {
    const auto n = *rc::gen::inRange<std::uint32_t>(1, kKsetKeysMax + 1);
    std::vector<std::byte> img(kset_bytes(n));
    KsetHeader h{0, n, 0, 0};
    std::memcpy(img.data(), &h, sizeof h);
    std::vector<KeyOnMedia> keys;
    for (std::uint32_t i = 0; i < n; ++i) {
        KeyOnMedia k{*rc::gen::arbitrary<std::uint64_t>(), *rc::gen::arbitrary<std::uint32_t>(),
                     *rc::gen::arbitrary<std::uint32_t>(), *rc::gen::arbitrary<std::uint32_t>(),
                     *rc::gen::arbitrary<std::uint32_t>(), *rc::gen::arbitrary<std::uint64_t>(),
                     *rc::gen::arbitrary<std::uint32_t>(), 0};
        keys.push_back(k);
        std::memcpy(img.data() + kKsetHeaderBytes + i * kKeyBytes, &k, sizeof k);
    }
    seal_kset(img);
    auto v = decode_kset(img, 1000, 0);
    RC_ASSERT(v.ok());
    RC_ASSERT(v->kind == KsetKind::normal);
    RC_ASSERT(v->key_num() == n);
    for (std::uint32_t i = 0; i < n; ++i) RC_ASSERT(same_bytes(v->key(i), keys[i]));
    img[pos % img.size()] ^= std::byte(mask == 0 ? 1 : mask);
    auto bad = decode_kset(img, 1000, 0);
    RC_ASSERT(!bad.ok() || bad->kind == KsetKind::end);
}

}  // namespace
}  // namespace pcache::format
