// AlignedBuffer: a heap buffer aligned for O_DIRECT, used as a bounce buffer when the caller's
// memory is not aligned as the kernel requires. Private to blockdev/src.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>

namespace pcache::detail {

class AlignedBuffer {
public:
    AlignedBuffer() = default;
    // Empty (data() == nullptr) if the allocation fails; callers turn that into an error.
    AlignedBuffer(std::size_t size_bytes, std::size_t align_bytes) {
        // aligned_alloc wants the size to be a multiple of the alignment.
        const std::size_t rounded = (size_bytes + align_bytes - 1) / align_bytes * align_bytes;
        bytes_.reset(static_cast<std::byte*>(std::aligned_alloc(align_bytes, rounded)));
        size_bytes_ = bytes_ ? size_bytes : 0;
    }
    std::byte* data() const { return bytes_.get(); }
    std::size_t size() const { return size_bytes_; }

private:
    struct Free {
        void operator()(std::byte* p) const noexcept { std::free(p); }
    };
    std::unique_ptr<std::byte[], Free> bytes_;
    std::size_t size_bytes_ = 0;
};

// Bounce buffers are allocated per call in chunks of at most this, so a 1 GiB unaligned write
// does not need 1 GiB of extra memory.
inline constexpr std::size_t kBounceChunkBytes = std::size_t{1} << 20;

}  // namespace pcache::detail
