// BlockDevice: the policy for the backing disk, which has a volatile write cache.
//
//  * size(): bytes; read(off, out), write(off, bytes, fua): byte offsets and lengths must be
//    multiples of 512 (sectors); a write is durable at completion only with fua = true;
//  * flush(): when it returns successfully, every write completed before it is durable;
//  * optionally write_batch() (BatchBlockDevice below): many writes in flight at once.
// Errors are returned, never dropped; an out-of-range or misaligned request is refused with
// Errc::invalid_argument and changes nothing.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pcache/pmem_device.hpp"
#include "pcache/result.hpp"

namespace pcache {

template <class B>
concept BlockDevice = requires(B& b, const B& cb, std::uint64_t off, std::span<const std::byte> src,
                               std::span<std::byte> dst, bool fua) {
    { cb.size() } -> std::same_as<std::uint64_t>;
    { b.read(off, dst) } -> std::same_as<Status>;
    { b.write(off, src, fua) } -> std::same_as<Status>;
    { b.flush() } -> std::same_as<Status>;
};

inline constexpr std::uint64_t kBlockSectorBytes = 512;

// One write of a batch (BatchBlockDevice::write_batch).
struct WriteRequest {
    std::uint64_t offset_bytes = 0;
    std::span<const std::byte> bytes;
    bool fua = false;
};

// Optional capability: write_batch(requests) puts the writes in flight together (up to the
// device's queue depth) and returns when every one has completed or failed; the error returned
// is that of the lowest-index failed request. The writes have no order among themselves (as on
// a disk queue), so a caller never puts two overlapping writes in one batch; none is durable
// without FUA or a later flush(). A batch that fails validation writes nothing.
template <class B>
concept BatchBlockDevice = BlockDevice<B> &&
    requires(B& b, std::span<const WriteRequest> requests) {
    { b.write_batch(requests) } -> std::same_as<Status>;
};

// Shared argument check: in range and sector aligned.
inline Status check_block_io(const char* what, std::uint64_t off, std::uint64_t len,
                             std::uint64_t size) {
    if (off % kBlockSectorBytes || len % kBlockSectorBytes)
        return {Errc::invalid_argument, std::string(what) + " [" + std::to_string(off) + ", +" +
                                            std::to_string(len) + ") is not 512-byte aligned"};
    return check_range(what, off, len, size);
}

}  // namespace pcache
