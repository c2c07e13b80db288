// UringBlockDevice: a BlockDevice over a file or a block device, with io_uring.
//
// The synchronous read/write/flush behave exactly as FileBlockDevice's (same open options,
// same checks, same errors); flush is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC and FUA is a
// write with RWF_DSYNC. What io_uring adds is batching: write_batch() puts up to queue_depth
// writes in flight at once and waits for all of them, which is what writeback needs to reach
// the disk's queue-depth throughput (≈ 96 K IOPS at 32 vs ≈ 20 K at 1 here, build-notes).
//
// A batch is validated as a whole before anything is submitted: one bad request refuses the
// batch and writes nothing. Once submitted, the writes have no order among themselves (as on a
// disk queue); each is completed (short writes resubmitted) or fails, and the error reported is
// that of the lowest-index failed request. None is durable without FUA or a later flush().
// Thread safety: one ring, guarded by a mutex; concurrent calls are serialised.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "pcache/block_device.hpp"
#include "pcache/blockdev/backing_file.hpp"
#include "pcache/result.hpp"

namespace pcache {

class UringBlockDevice {
public:
    static constexpr unsigned kDefaultQueueDepth = 64;

    // Errors as BackingFile::open; plus Errc::unsupported if the kernel refuses io_uring.
    static Result<UringBlockDevice> open(const std::string& path, BlockOpenOptions options = {},
                                         unsigned queue_depth = kDefaultQueueDepth);

    UringBlockDevice(UringBlockDevice&&) noexcept;
    UringBlockDevice& operator=(UringBlockDevice&&) noexcept;
    ~UringBlockDevice();

    std::uint64_t size() const;
    Status read(std::uint64_t off, std::span<std::byte> dst);
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua);
    Status flush();
    Status write_batch(std::span<const WriteRequest> requests);

    bool direct() const;
    const std::string& path() const;
    unsigned queue_depth() const;

private:
    struct Ring;  // the io_uring, its mutex and the backing file (keeps liburing.h out of here)
    explicit UringBlockDevice(std::unique_ptr<Ring> ring);
    std::unique_ptr<Ring> ring_;
};
static_assert(BatchBlockDevice<UringBlockDevice>);

}  // namespace pcache
