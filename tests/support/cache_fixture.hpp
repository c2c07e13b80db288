// Helpers for engine tests: a small in-memory cache, patterned data, image snapshots.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "pcache/blockdev/mem_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/mem_pmem.hpp"

namespace pcache::testutil {

using MemCache = Cache<MemPmem, MemBlockDevice>;

inline std::vector<std::byte> pattern(std::size_t len, std::uint32_t seed) {
    std::vector<std::byte> v(len);
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (auto& b : v) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b = std::byte(x);
    }
    return v;
}

inline CacheOptions small_options(bool data_crc = false) {
    CacheOptions o;
    o.data_crc = data_crc;
    o.geometry.segment_bytes = 256 * 1024;  // 244 KiB data areas: many segments in a small image
    // Tests drop a cache to cut the power; the tests of close-on-destroy use the default.
    o.close_on_destroy = false;
    return o;
}

inline std::uint64_t small_pmem_bytes(std::uint32_t segs) {
    return format::kSegmentsOffsetBytes + std::uint64_t(segs) * 256 * 1024;
}

// Formats a cache on devices the test keeps alive (borrowed). A refusal throws, naming the
// status: Google Test reports the exception as the test's failure and ends the test there, so
// no caller goes on with a null cache (RapidCheck reports it as the property's failure).
template <PmemDevice P, BlockDevice B>
std::unique_ptr<Cache<P, B>> format_or_fail(P& pmem, B& disk, CacheOptions o = small_options()) {
    auto c = Cache<P, B>::format(borrow(pmem), borrow(disk), std::move(o));
    if (!c.ok()) throw std::runtime_error("Cache::format refused: " + c.status().to_string());
    return std::move(c.value());
}

// Reads len bytes at off through the cache; a failed read is a test failure naming the status.
template <class C>
std::vector<std::byte> read_or_fail(C& c, std::uint64_t off, std::size_t len) {
    std::vector<std::byte> out(len);
    Status s = c.read(off, out);
    EXPECT_TRUE(s.ok()) << s.to_string();
    return out;
}

inline std::vector<std::byte> snapshot(const MemPmem& p) { return {p.data(), p.data() + p.size()}; }

}  // namespace pcache::testutil
