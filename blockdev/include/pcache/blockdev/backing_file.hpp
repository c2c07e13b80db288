// BackingFile: the open file (or block device) under FileBlockDevice and UringBlockDevice.
//
// It owns the descriptor, knows the exposed size and, with O_DIRECT, the alignment the kernel
// demands, and checks every request against both before any byte moves, so a refused request
// changes nothing. The size is either the whole file (rounded down to whole 512-byte sectors)
// or exactly the size asked for; a file shorter than asked for is refused at open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pcache/block_device.hpp"
#include "pcache/result.hpp"

namespace pcache {

struct BlockOpenOptions {
    // Create a regular file if `path` does not exist, size_bytes long (sparse). An existing file
    // is opened as is (and must then be at least size_bytes long).
    bool create = false;
    // 0: the whole file or device. Otherwise expose exactly size_bytes (a multiple of 512).
    std::uint64_t size_bytes = 0;
    // O_DIRECT: bypass the page cache. File systems that refuse it (tmpfs) make open fail with
    // Errc::unsupported. Caller buffers that are not aligned as the kernel needs are copied
    // through an aligned bounce buffer; offsets and lengths must be multiples of
    // direct_offset_align_bytes() (512 on most devices).
    bool direct = false;
    // O_RDONLY: for inspection only (writes then fail with the kernel's EBADF). Not with create.
    bool read_only = false;
};

class BackingFile {
public:
    // Errors: Errc::not_found (no such file: path and strerror), Errc::invalid_argument (file
    // shorter than size_bytes, size not sector aligned, not a file or block device),
    // Errc::unsupported (O_DIRECT refused), Errc::io (other system errors).
    static Result<BackingFile> open(const std::string& path, const BlockOpenOptions& options);

    BackingFile(const BackingFile&) = delete;
    BackingFile& operator=(const BackingFile&) = delete;
    BackingFile(BackingFile&& other) noexcept;
    BackingFile& operator=(BackingFile&& other) noexcept;
    ~BackingFile();

    int fd() const { return fd_; }
    const std::string& path() const { return path_; }
    std::uint64_t size() const { return size_bytes_; }
    bool direct() const { return direct_; }
    std::uint32_t direct_mem_align_bytes() const { return mem_align_bytes_; }
    std::uint32_t direct_offset_align_bytes() const { return offset_align_bytes_; }

    // Range, sector alignment and (with O_DIRECT) the device's offset alignment.
    Status check_io(const char* what, std::uint64_t off, std::uint64_t len) const;
    // True if `p` may be handed to the kernel as is (always, without O_DIRECT).
    bool buffer_ok(const void* p) const {
        return !direct_ || reinterpret_cast<std::uintptr_t>(p) % mem_align_bytes_ == 0;
    }
    // "block write of '<path>' at <off>: <strerror>".
    Status errno_status(const char* what, std::uint64_t off, int err) const;

private:
    BackingFile() = default;
    Status probe(const BlockOpenOptions& options);

    std::string path_;
    int fd_ = -1;
    std::uint64_t size_bytes_ = 0;
    bool direct_ = false;
    std::uint32_t mem_align_bytes_ = 1;
    std::uint32_t offset_align_bytes_ = kBlockSectorBytes;
};

}  // namespace pcache
