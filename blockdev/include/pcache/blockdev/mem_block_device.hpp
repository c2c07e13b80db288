// MemBlockDevice: a BlockDevice in memory. Writes are durable at once (flush is a no-op);
// it can be told to fail I/O for error-path tests.
#pragma once

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
        if (!dst.empty()) std::memcpy(dst.data(), bytes_.data() + off, dst.size());
        return {};
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool /*fua*/) {
        PCACHE_TRY(check_block_io("block write", off, src.size(), size()));
        if (fail_io_) return {Errc::io, "block write: injected I/O error"};
        if (!src.empty()) std::memcpy(bytes_.data() + off, src.data(), src.size());
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
    std::vector<std::byte> bytes_;
    bool fail_io_ = false;
    std::uint64_t flushes_ = 0;
};
static_assert(BlockDevice<MemBlockDevice>);

}  // namespace pcache
