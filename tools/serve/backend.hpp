// What the serving front ends (FUSE, nbdkit) expose: a byte-addressed device with FLUSH and FUA.
//
// A front end turns its protocol's requests into these calls and nothing else, so the FUSE file
// and the NBD export have the same semantics: a write is acknowledged volatile, flush() makes
// every earlier acknowledged write durable, write(fua = true) is durable when it returns.
// Offsets and lengths need no alignment (front ends pass what clients send); implementations
// that need sectors do the read-modify-write. Every member may be called from any thread.
//
// Two implementations: CacheBackend (cache_backend.hpp, a pcache device) and MemoryBackend
// (below: a plain buffer, the ceiling a front end reaches without the cache behind it).
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "pcache/result.hpp"

namespace pcache::serve {

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::uint64_t size_bytes() const = 0;
    // [off, off + size) must lie inside the device (front ends clip at the end).
    virtual Status read(std::uint64_t off, std::span<std::byte> out) = 0;
    virtual Status write(std::uint64_t off, std::span<const std::byte> data, bool fua) = 0;
    virtual Status flush() = 0;
    // Clean shutdown: stops background work and persists what a restart needs. Idempotent.
    virtual Status close() = 0;
    // One line for logs: what is being served.
    virtual std::string describe() const = 0;
};

// A buffer in memory: the front end's ceiling for benchmarks. Nothing is durable. Concurrent
// overlapping requests race as they would on a disk (the block layer never orders them).
class MemoryBackend final : public Backend {
public:
    explicit MemoryBackend(std::uint64_t size_bytes)
        : size_bytes_(size_bytes), bytes_(new std::byte[size_bytes]()) {}
    std::uint64_t size_bytes() const override { return size_bytes_; }
    Status read(std::uint64_t off, std::span<std::byte> out) override {
        assert(off <= size_bytes_ && out.size() <= size_bytes_ - off);
        std::memcpy(out.data(), bytes_.get() + off, out.size());
        return {};
    }
    Status write(std::uint64_t off, std::span<const std::byte> data, bool /*fua*/) override {
        assert(off <= size_bytes_ && data.size() <= size_bytes_ - off);
        std::memcpy(bytes_.get() + off, data.data(), data.size());
        return {};
    }
    Status flush() override { return {}; }
    Status close() override { return {}; }
    std::string describe() const override {
        return "memory (" + std::to_string(size_bytes_) +
               " B, not persistent: a benchmark ceiling)";
    }

private:
    std::uint64_t size_bytes_;
    std::unique_ptr<std::byte[]> bytes_;
};

}  // namespace pcache::serve
