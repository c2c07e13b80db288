// MemBlockDevice: a BlockDevice in memory. Writes are durable at once (flush is a no-op);
// it can be told to fail I/O for error-path tests.
//
// Concurrent requests behave as on a disk: a read overlapping a write in flight may see either
// version of each 8-byte word (the engine never keeps such bytes: docs/design.md "Reads"). The
// device's bytes are moved by relaxed atomic words, so that is not a data race in C++ terms
// (ThreadSanitizer sees none) and it orders nothing: a missing lock in the engine still shows.
#pragma once

#include <atomic>
#include <cstring>
#include <vector>

#include "pcache/block_device.hpp"

namespace pcache {

class MemBlockDevice {
public:
    explicit MemBlockDevice(std::uint64_t size_bytes) : bytes_(size_bytes) {}

    std::uint64_t size() const { return bytes_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) {
        PCACHE_TRY(check_block_io("block read", off, dst.size(), size()));
        if (fail_io_) return {Errc::io, "block read: injected I/O error"};
        for (std::size_t i = 0; i < dst.size(); i += 8) {
            const std::uint64_t w = word(off + i).load(std::memory_order_relaxed);
            std::memcpy(dst.data() + i, &w, 8);
        }
        return {};
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool /*fua*/) {
        PCACHE_TRY(check_block_io("block write", off, src.size(), size()));
        if (fail_io_) return {Errc::io, "block write: injected I/O error"};
        for (std::size_t i = 0; i < src.size(); i += 8) {
            std::uint64_t w;
            std::memcpy(&w, src.data() + i, 8);
            word(off + i).store(w, std::memory_order_relaxed);
        }
        return {};
    }
    Status flush() {
        if (fail_io_) return {Errc::io, "block flush: injected I/O error"};
        ++flushes_;
        return {};
    }

    // Test hooks.
    void set_fail_io(bool fail) { fail_io_ = fail; }
    std::uint64_t flush_count() const { return flushes_; }
    const std::vector<std::byte>& bytes() const { return bytes_; }

private:
    // Offsets and lengths are whole 512-byte sectors (check_block_io), so whole words.
    std::atomic_ref<std::uint64_t> word(std::uint64_t off) {
        return std::atomic_ref<std::uint64_t>(
            *reinterpret_cast<std::uint64_t*>(bytes_.data() + off));
    }
    std::vector<std::byte> bytes_;
    bool fail_io_ = false;
    std::uint64_t flushes_ = 0;
};
static_assert(BlockDevice<MemBlockDevice>);

}  // namespace pcache
