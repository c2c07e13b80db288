// ImageFile: a read-only view of a file or block device (O_RDONLY, pread), the ImageReader the
// read-only commands (status, check, dump, and format before it decides) inspect through.
// Opening it can never modify the image, unlike Cache::open, which writes cache_info.
#pragma once

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "pcache/inspect.hpp"
#include "pcache/pmem_device.hpp"
#include "pcache/result.hpp"

namespace pcache::tool {

class ImageFile {
public:
    // Errors: Errc::not_found (no such file), Errc::unsupported (not a file or block device),
    // Errc::io (anything else). `what` names the role ("pmem", "backing") in messages.
    static Result<ImageFile> open(const std::string& path, const char* what) {
        ImageFile f;
        f.path_ = path;
        f.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (f.fd_ < 0) {
            const int e = errno;
            return Status(e == ENOENT ? Errc::not_found : Errc::io,
                          std::string(what) + " '" + path + "': " + std::strerror(e));
        }
        struct stat st {};
        if (::fstat(f.fd_, &st) != 0)
            return Status(Errc::io,
                          std::string(what) + " '" + path + "': fstat: " + std::strerror(errno));
        if (S_ISREG(st.st_mode)) {
            f.size_ = static_cast<std::uint64_t>(st.st_size);
        } else if (S_ISBLK(st.st_mode)) {
            if (::ioctl(f.fd_, BLKGETSIZE64, &f.size_) != 0)
                return Status(Errc::io, std::string(what) + " '" + path +
                                            "': BLKGETSIZE64: " + std::strerror(errno));
        } else {
            return Status(Errc::unsupported,
                          std::string(what) + " '" + path + "' is " +
                              (S_ISDIR(st.st_mode)   ? "a directory"
                               : S_ISCHR(st.st_mode) ? "a character device (read-only inspection "
                                                       "of device-DAX is not supported)"
                                                     : "not a file or a device") +
                              ": expected a regular file or a block device");
        }
        return f;
    }

    ImageFile(const ImageFile&) = delete;
    ImageFile& operator=(const ImageFile&) = delete;
    ImageFile(ImageFile&& o) noexcept
        : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), size_(o.size_) {}
    ImageFile& operator=(ImageFile&&) = delete;
    ~ImageFile() {
        if (fd_ >= 0) ::close(fd_);
    }

    std::uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }

    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        PCACHE_TRY(check_range("image read", off, dst.size(), size_));
        std::size_t done = 0;
        while (done < dst.size()) {
            const ssize_t n =
                ::pread(fd_, dst.data() + done, dst.size() - done, static_cast<off_t>(off + done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                return {Errc::io, "read of '" + path_ + "' at " + std::to_string(off + done) +
                                      ": " + std::strerror(errno)};
            if (n == 0)
                return {Errc::io, "read of '" + path_ + "' at " + std::to_string(off + done) +
                                      ": unexpected end of file"};
            done += static_cast<std::size_t>(n);
        }
        return {};
    }

private:
    ImageFile() = default;
    std::string path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};
static_assert(inspect::ImageReader<ImageFile>);

}  // namespace pcache::tool
