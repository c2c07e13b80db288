// FileBlockDevice: a BlockDevice over a file or a block device, with pread/pwrite.
//
//  * read/write loop over short transfers and EINTR, so a returned success moved every byte;
//  * write(.., fua = true) is pwritev2(RWF_DSYNC): durable at completion without flushing the
//    rest of the file (falls back to pwrite + fdatasync where RWF_DSYNC is not supported);
//  * flush() is fdatasync: every write completed before it is durable when it returns;
//  * with BlockOpenOptions::direct (O_DIRECT) unaligned caller buffers go through an aligned
//    bounce buffer, 1 MiB at a time.
// Requests are checked (range, 512-byte alignment, O_DIRECT alignment) before any I/O, so a
// refused request writes nothing. An I/O error in the middle of a long request can leave a
// prefix written: the kernel reports errors per call, as a disk would per sector.
// Thread safety: the methods keep no mutable state, so concurrent calls are safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "pcache/block_device.hpp"
#include "pcache/blockdev/backing_file.hpp"
#include "pcache/result.hpp"

namespace pcache {

class FileBlockDevice {
public:
    static Result<FileBlockDevice> open(const std::string& path, BlockOpenOptions options = {});

    std::uint64_t size() const { return file_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst);
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua);
    Status flush();

    bool direct() const { return file_.direct(); }
    const std::string& path() const { return file_.path(); }

private:
    explicit FileBlockDevice(BackingFile file) : file_(std::move(file)) {}
    Status pread_full(std::uint64_t off, std::byte* dst, std::size_t len);
    Status pwrite_full(std::uint64_t off, const std::byte* src, std::size_t len, bool fua);

    BackingFile file_;
};
static_assert(BlockDevice<FileBlockDevice>);

}  // namespace pcache
