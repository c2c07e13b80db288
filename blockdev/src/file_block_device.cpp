// FileBlockDevice: pread/pwrite loops, RWF_DSYNC for FUA, fdatasync for flush, O_DIRECT bounce.
#include "pcache/blockdev/file_block_device.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "aligned_buffer.hpp"

namespace pcache {

Result<FileBlockDevice> FileBlockDevice::open(const std::string& path, BlockOpenOptions options) {
    Result<BackingFile> file = BackingFile::open(path, options);
    if (!file) return file.status();
    return FileBlockDevice(std::move(file).value());
}

Status FileBlockDevice::read(std::uint64_t off, std::span<std::byte> dst) {
    PCACHE_TRY(file_.check_io("block read", off, dst.size()));
    if (file_.buffer_ok(dst.data())) return pread_full(off, dst.data(), dst.size());
    detail::AlignedBuffer bounce(std::min(dst.size(), detail::kBounceChunkBytes),
                                 file_.direct_mem_align_bytes());
    if (!bounce.data()) return {Errc::no_space, "block read: cannot allocate a bounce buffer"};
    for (std::size_t done_bytes = 0; done_bytes < dst.size();) {
        const std::size_t n = std::min(bounce.size(), dst.size() - done_bytes);
        PCACHE_TRY(pread_full(off + done_bytes, bounce.data(), n));
        std::memcpy(dst.data() + done_bytes, bounce.data(), n);
        done_bytes += n;
    }
    return {};
}

Status FileBlockDevice::write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
    PCACHE_TRY(file_.check_io("block write", off, src.size()));
    if (file_.buffer_ok(src.data())) return pwrite_full(off, src.data(), src.size(), fua);
    detail::AlignedBuffer bounce(std::min(src.size(), detail::kBounceChunkBytes),
                                 file_.direct_mem_align_bytes());
    if (!bounce.data()) return {Errc::no_space, "block write: cannot allocate a bounce buffer"};
    for (std::size_t done_bytes = 0; done_bytes < src.size();) {
        const std::size_t n = std::min(bounce.size(), src.size() - done_bytes);
        std::memcpy(bounce.data(), src.data() + done_bytes, n);
        PCACHE_TRY(pwrite_full(off + done_bytes, bounce.data(), n, fua));
        done_bytes += n;
    }
    return {};
}

Status FileBlockDevice::flush() {
    // fdatasync, not fsync: the engine never needs the file's timestamps to be durable, only
    // its data (and the size metadata fdatasync covers).
    if (::fdatasync(file_.fd()) != 0) return file_.errno_status("block flush", 0, errno);
    return {};
}

Status FileBlockDevice::pread_full(std::uint64_t off, std::byte* dst, std::size_t len) {
    std::size_t done_bytes = 0;
    while (done_bytes < len) {
        const ssize_t n = ::pread(file_.fd(), dst + done_bytes, len - done_bytes,
                                  static_cast<off_t>(off + done_bytes));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return file_.errno_status("block read", off + done_bytes, errno);
        // The size was checked at open; hitting EOF means the file shrank under us.
        if (n == 0)
            return {Errc::io, "block read of '" + file_.path() + "' at " +
                                  std::to_string(off + done_bytes) +
                                  ": unexpected end of file (was it truncated?)"};
        done_bytes += static_cast<std::size_t>(n);
    }
    return {};
}

Status FileBlockDevice::pwrite_full(std::uint64_t off, const std::byte* src, std::size_t len,
                                    bool fua) {
    bool need_sync = false;  // RWF_DSYNC unsupported: fdatasync once at the end instead
    std::size_t done_bytes = 0;
    while (done_bytes < len) {
        ssize_t n = 0;
        const auto at = static_cast<off_t>(off + done_bytes);
        if (fua && !need_sync) {
            iovec iov{const_cast<std::byte*>(src + done_bytes), len - done_bytes};
            n = ::pwritev2(file_.fd(), &iov, 1, at, RWF_DSYNC);
            if (n < 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
                need_sync = true;
                continue;
            }
        } else {
            n = ::pwrite(file_.fd(), src + done_bytes, len - done_bytes, at);
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return file_.errno_status("block write", off + done_bytes, errno);
        if (n == 0)
            return {Errc::io, "block write of '" + file_.path() + "' at " +
                                  std::to_string(off + done_bytes) + ": wrote 0 bytes"};
        done_bytes += static_cast<std::size_t>(n);
    }
    if (need_sync && ::fdatasync(file_.fd()) != 0)
        return file_.errno_status("block write (FUA fdatasync)", off, errno);
    return {};
}

}  // namespace pcache
