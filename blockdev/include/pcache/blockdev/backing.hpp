// The backing device named on a command line: a file, a block device, an NBD export or a Ceph
// RBD image, behind one interface (BackingDevice), opened by ONE function (open_backing).
//
// Spellings (BackingSpec, docs/cli.md):
//   /path/to/file or /dev/sdX            a file or block device (pread/pwrite, io_uring batches)
//   nbd://HOST[:PORT][/EXPORT]           NBD over TCP       (nbds://...: with TLS, as libnbd)
//   nbd+unix:///[EXPORT]?socket=PATH     NBD on a Unix socket (nbds+unix://...)
//   rbd:POOL/IMAGE[:conf=PATH][:id=USER] a Ceph RBD image; IMAGE@SNAP is refused (read-only)
// Anything else that contains "://" is refused (a typo never becomes a file name).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "pcache/block_device.hpp"
#include "pcache/result.hpp"

namespace pcache {

// A BlockDevice behind a virtual interface, so that one Cache type serves every kind of
// backing device. write_batch is always there: devices without concurrent requests do the
// writes one after the other.
class BackingDevice {
public:
    virtual ~BackingDevice() = default;
    virtual std::uint64_t size() const = 0;
    virtual Status read(std::uint64_t off, std::span<std::byte> dst) = 0;
    virtual Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) = 0;
    virtual Status flush() = 0;
    virtual Status write_batch(std::span<const WriteRequest> requests) = 0;
    // "file '/x'", "NBD 'nbd+unix:///?socket=/s'", "RBD 'rbd:pool/img'": for messages.
    virtual std::string describe() const = 0;
};
static_assert(BatchBlockDevice<BackingDevice>);

struct BackingSpec {
    enum class Kind { file, nbd, rbd };
    Kind kind = Kind::file;
    std::string text;      // as given
    std::string path;      // file: the path; nbd: the URI
    std::string pool;      // rbd
    std::string image;     // rbd
    std::string rbd_conf;  // rbd: conf=PATH
    std::string rbd_id;    // rbd: id=USER
};

// Parses a --backing value. Errors: Errc::invalid_argument with what is wrong.
Result<BackingSpec> parse_backing_spec(const std::string& text);

struct BackingOpenOptions {
    // Only size() and read() will be used (pcache status/check): opened read-only, and an NBD
    // server without FLUSH is accepted.
    bool read_only = false;
    // Requests in flight at once in write_batch (writeback): NBD, RBD and io_uring.
    unsigned queue_depth = 32;
    // Network devices: longest wait for a reply before the request fails.
    unsigned timeout_ms = 30000;
};

// Parses `spec` and opens the device. Errors: the device's, with the spec in the message;
// Errc::unsupported for a kind this build lacks (libnbd or librbd not found at build time).
Result<std::unique_ptr<BackingDevice>> open_backing(const std::string& spec,
                                                    const BackingOpenOptions& options = {});

}  // namespace pcache
