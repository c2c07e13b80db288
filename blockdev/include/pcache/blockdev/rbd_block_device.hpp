// RbdBlockDevice: a BlockDevice on a Ceph RBD image, through librbd.
//
//  * open(pool, image, options): connects to the cluster described by options.conf (default:
//    librados' search path, /etc/ceph/ceph.conf or $CEPH_CONF; $CEPH_ARGS is honoured) as
//    client.<options.id> (default: admin), opens the image writable (or read-only);
//  * reads and writes are rbd aio commands, up to queue_depth in flight (write_batch is the
//    writeback path); flush() is rbd_aio_flush; a FUA write is a write followed by a flush.
//    librbd's own cache is switched off (rbd_cache = false): pcache is the cache;
//  * errors keep the errno librbd reports (ENOSPC -> Errc::no_space, others Errc::io);
//  * no call hangs: the cluster's op timeouts (rados_osd_op_timeout, rados_mon_op_timeout,
//    client_mount_timeout) are set to options.timeout_ms, so an unreachable cluster fails the
//    request with ETIMEDOUT instead of waiting forever.
// Thread safety: requests of one call are in flight together; concurrent calls are serialised.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "pcache/block_device.hpp"
#include "pcache/result.hpp"

namespace pcache {

struct RbdOptions {
    std::string conf;  // ceph.conf path; empty: librados' default search
    std::string id;    // client id (the part after "client."); empty: librados' default (admin)
    bool read_only = false;
    unsigned queue_depth = 32;    // requests in flight at once (1..1024)
    unsigned timeout_ms = 30000;  // cluster op and mount timeouts (rounded up to seconds)
};

class RbdBlockDevice {
public:
    // Errors: Errc::invalid_argument (bad option), Errc::not_found (no such pool or image),
    // Errc::io (cannot reach the cluster, other librados/librbd errors, with their errno).
    static Result<RbdBlockDevice> open(const std::string& pool, const std::string& image,
                                       RbdOptions options = {});

    RbdBlockDevice(RbdBlockDevice&&) noexcept;
    RbdBlockDevice& operator=(RbdBlockDevice&&) noexcept;
    ~RbdBlockDevice();

    std::uint64_t size() const;
    Status read(std::uint64_t off, std::span<std::byte> dst);
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua);
    Status flush();
    Status write_batch(std::span<const WriteRequest> requests);

    const std::string& name() const;  // "rbd:pool/image"
    unsigned queue_depth() const;

private:
    struct Image;  // the cluster handle, the io context, the image and a mutex
    explicit RbdBlockDevice(std::unique_ptr<Image> image);
    std::unique_ptr<Image> image_;
};
static_assert(BatchBlockDevice<RbdBlockDevice>);

}  // namespace pcache
