// BackingFile: opening, sizing and O_DIRECT alignment probing for the file-based block devices.
#include "pcache/blockdev/backing_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <utility>

namespace pcache {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// Creates `path` (exclusively) with the given size, without O_DIRECT: tmpfs would create the
// file and then refuse O_DIRECT, leaving the file behind. Sets `created` if it made the file.
Status create_file(const std::string& path, std::uint64_t size_bytes, bool& created) {
    created = false;
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        if (errno == EEXIST) return {};  // opened as an existing file below
        const int err = errno;
        return {err == ENOENT ? Errc::not_found : Errc::io,
                "backing '" + path + "': cannot create: " + errno_text(err)};
    }
    created = true;
    const int rc = ::ftruncate(fd, static_cast<off_t>(size_bytes));
    const int err = errno;
    ::close(fd);
    if (rc != 0) {
        ::unlink(path.c_str());
        created = false;
        return {Errc::io, "backing '" + path + "': cannot size to " + std::to_string(size_bytes) +
                              " B: " + errno_text(err)};
    }
    return {};
}

}  // namespace

Result<BackingFile> BackingFile::open(const std::string& path, const BlockOpenOptions& options) {
    if (options.size_bytes % kBlockSectorBytes != 0)
        return {Errc::invalid_argument, "backing '" + path + "': size_bytes must be a " +
                                            "multiple of 512, found " +
                                            std::to_string(options.size_bytes)};
    if (options.read_only && options.create)
        return {Errc::invalid_argument, "block device '" + path + "': create with read_only"};
    bool created = false;
    if (options.create) {
        if (options.size_bytes == 0)
            return {Errc::invalid_argument,
                    "backing '" + path + "': create needs size_bytes > 0, found 0"};
        PCACHE_TRY(create_file(path, options.size_bytes, created));
    }
    BackingFile file;
    file.path_ = path;
    file.direct_ = options.direct;
    file.fd_ = ::open(path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
                                        (options.direct ? O_DIRECT : 0));
    Status s;
    if (file.fd_ < 0) {
        const int err = errno;
        if (err == ENOENT)
            s = {Errc::not_found, "backing '" + path + "': cannot open: " + errno_text(err)};
        else if (err == EISDIR)
            s = {
                Errc::invalid_argument,
                "backing '" + path + "' is a directory: expected a regular file or a block device"};
        else if (err == EINVAL && options.direct)
            s = {Errc::unsupported,
                 "backing '" + path + "': the file system refuses O_DIRECT: " + errno_text(err)};
        else
            s = {Errc::io, "backing '" + path + "': cannot open: " + errno_text(err)};
    } else {
        s = file.probe(options);
    }
    if (!s.ok()) {
        if (created) ::unlink(path.c_str());
        return s;
    }
    return Result<BackingFile>(std::move(file));
}

// Finds the size and, for O_DIRECT, the alignment the kernel demands.
Status BackingFile::probe(const BlockOpenOptions& options) {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return errno_status("fstat", 0, errno);
    std::uint64_t found_bytes = 0;
    if (S_ISREG(st.st_mode)) {
        found_bytes = static_cast<std::uint64_t>(st.st_size);
    } else if (S_ISBLK(st.st_mode)) {
        if (::ioctl(fd_, BLKGETSIZE64, &found_bytes) != 0)
            return errno_status("BLKGETSIZE64", 0, errno);
    } else {
        return {Errc::invalid_argument,
                "backing '" + path_ + "' is " +
                    (S_ISDIR(st.st_mode) ? "a directory" : "not a file or a device") +
                    ": expected a regular file or a block device"};
    }
    if (found_bytes < options.size_bytes)
        return {Errc::invalid_argument, "backing '" + path_ + "' is " +
                                            std::to_string(found_bytes) + " B, expected at least " +
                                            std::to_string(options.size_bytes) + " B"};
    // A trailing partial sector is not addressable through a sector-granular interface.
    size_bytes_ = options.size_bytes ? options.size_bytes
                                     : found_bytes / kBlockSectorBytes * kBlockSectorBytes;
    if (!direct_) return {};

    // STATX_DIOALIGN (Linux 6.1) gives both alignments for files and devices alike; older
    // kernels leave it unset and the conservative defaults (4 KiB memory, 512 B offsets) hold.
    std::uint32_t mem_align_bytes = 4096;
    std::uint32_t offset_align_bytes = kBlockSectorBytes;
    struct statx stx {};
    if (::statx(fd_, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0) {
        mem_align_bytes = stx.stx_dio_mem_align;
        offset_align_bytes = stx.stx_dio_offset_align;
    }
    // At least a sector for memory (so bounce allocations are sane), at least a sector for
    // offsets (the interface's unit anyway).
    mem_align_bytes_ = std::max<std::uint32_t>(mem_align_bytes, kBlockSectorBytes);
    offset_align_bytes_ = std::max<std::uint32_t>(offset_align_bytes, kBlockSectorBytes);
    return {};
}

Status BackingFile::check_io(const char* what, std::uint64_t off, std::uint64_t len) const {
    PCACHE_TRY(check_block_io(what, off, len, size_bytes_));
    if (direct_ && (off % offset_align_bytes_ || len % offset_align_bytes_))
        return {Errc::invalid_argument, std::string(what) + " [" + std::to_string(off) + ", +" +
                                            std::to_string(len) + ") of '" + path_ +
                                            "': O_DIRECT needs multiples of " +
                                            std::to_string(offset_align_bytes_) + " B"};
    return {};
}

Status BackingFile::errno_status(const char* what, std::uint64_t off, int err) const {
    return {err == ENOSPC ? Errc::no_space : Errc::io, std::string(what) + " of '" + path_ +
                                                           "' at " + std::to_string(off) + ": " +
                                                           errno_text(err)};
}

BackingFile::BackingFile(BackingFile&& other) noexcept { *this = std::move(other); }

BackingFile& BackingFile::operator=(BackingFile&& other) noexcept {
    if (this == &other) return *this;
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    size_bytes_ = std::exchange(other.size_bytes_, 0);
    direct_ = other.direct_;
    mem_align_bytes_ = other.mem_align_bytes_;
    offset_align_bytes_ = other.offset_align_bytes_;
    return *this;
}

BackingFile::~BackingFile() {
    // close() errors are not reported: durability is flush()'s contract, not close()'s.
    if (fd_ >= 0) ::close(fd_);
}

}  // namespace pcache
