// BlockDevice: the policy for the backing disk, which has a volatile write cache.
//
//  * size(): bytes; read(off, out), write(off, bytes, fua): byte offsets and lengths must be
//    multiples of 512 (sectors); a write is durable at completion only with fua = true;
//  * flush(): when it returns successfully, every write completed before it is durable.
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

// Shared argument check: in range and sector aligned.
inline Status check_block_io(const char* what, std::uint64_t off, std::uint64_t len,
                             std::uint64_t size) {
    if (off % kBlockSectorBytes || len % kBlockSectorBytes)
        return {Errc::invalid_argument, std::string(what) + " [" + std::to_string(off) + ", +" +
                                            std::to_string(len) + ") is not 512-byte aligned"};
    return check_range(what, off, len, size);
}

}  // namespace pcache
