// MemPmem: a PmemDevice over anonymous memory, for fast unit tests and fuzzing.
//
// Everything written is immediately "durable" (there is no crash to survive); flush and drain
// only check their arguments. The mapping is MAP_NORESERVE, so a 1 GiB device costs only the
// pages actually touched.
#pragma once

#include <sys/mman.h>

#include <cstring>
#include <utility>

#include "pcache/pmem_device.hpp"

namespace pcache {

class MemPmem {
public:
    explicit MemPmem(std::uint64_t size_bytes) : size_(size_bytes) {
        if (size_ == 0) return;
        void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            size_ = 0;
            return;
        }
        base_ = static_cast<std::byte*>(p);
    }
    MemPmem(const MemPmem&) = delete;
    MemPmem& operator=(const MemPmem&) = delete;
    MemPmem(MemPmem&& o) noexcept
        : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    ~MemPmem() {
        if (base_) ::munmap(base_, size_);
    }

    std::uint64_t size() const { return size_; }
    const std::byte* data() const { return base_; }
    bool writeback_from_mapping() const { return true; }  // anonymous memory: no media errors

    Status write(std::uint64_t off, std::span<const std::byte> src, unsigned /*flags*/) {
        PCACHE_TRY(check_range("pmem write", off, src.size(), size_));
        if (!src.empty()) std::memcpy(base_ + off, src.data(), src.size());
        return {};
    }
    Status flush(std::uint64_t off, std::uint64_t len) {
        return check_range("pmem flush", off, len, size_);
    }
    Status drain() { return {}; }
    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        PCACHE_TRY(check_range("pmem read", off, dst.size(), size_));
        if (!dst.empty()) std::memcpy(dst.data(), base_ + off, dst.size());
        return {};
    }

    // Test access: the raw mapping, for corruption helpers. The engine never uses it.
    std::byte* raw_for_tests() { return base_; }

private:
    std::byte* base_ = nullptr;
    std::uint64_t size_ = 0;
};
static_assert(PmemDevice<MemPmem>);

}  // namespace pcache
