// NbdBlockDevice: a BlockDevice on an NBD server, through libnbd.
//
//  * open(uri): an NBD URI as qemu and nbdcopy spell it: nbd://HOST[:PORT]/EXPORT,
//    nbd+unix:///EXPORT?socket=PATH (TLS variants are libnbd's: nbds://...). The size is the
//    server's export size, rounded down to whole 512-byte sectors;
//  * flush() is NBD_CMD_FLUSH; write(.., fua = true) is NBD_CMD_WRITE with NBD_CMD_FLAG_FUA, or a
//    write followed by a flush when the server does not offer FUA;
//  * write_batch() puts up to queue_depth writes in flight at once (libnbd aio commands) and
//    waits for all of them: the writeback path (BatchBlockDevice);
//  * an error the server returns keeps its errno ("... : No space left on device (server
//    errno)"); ENOSPC maps to Errc::no_space, everything else to Errc::io;
//  * every call waits at most timeout_ms without any reply from the server; then, or when the
//    connection drops, the call fails with Errc::io ("connection lost"), the connection is
//    closed (no request can outlive the caller's buffers), and the next call reconnects once.
// Write-back use (NbdOptions::require_flush, the default) refuses a server without FLUSH or a
// read-only export at open, with the reason: without FLUSH nothing written back could be made
// durable before dirty_tail passes it.
// Thread safety: one connection, guarded by a mutex; concurrent calls are serialised.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "pcache/block_device.hpp"
#include "pcache/result.hpp"

namespace pcache {

struct NbdOptions {
    // Open for reading only (pcache status/check): a read-only export is accepted, FLUSH is not
    // required, and write() / flush() fail with Errc::invalid_argument.
    bool read_only = false;
    // Refuse a server that does not offer FLUSH (write-back needs it). Ignored when read_only.
    bool require_flush = true;
    // Requests in flight at once in write_batch (1..1024).
    unsigned queue_depth = 32;
    // Longest wait for any reply (or for the connection to come up) before the connection is
    // declared lost.
    unsigned timeout_ms = 30000;
};

class NbdBlockDevice {
public:
    // Errors: Errc::invalid_argument (not an NBD URI, bad option), Errc::unsupported (server
    // without FLUSH, read-only export, libnbd without URI support), Errc::io (cannot connect).
    static Result<NbdBlockDevice> open(const std::string& uri, NbdOptions options = {});

    NbdBlockDevice(NbdBlockDevice&&) noexcept;
    NbdBlockDevice& operator=(NbdBlockDevice&&) noexcept;
    ~NbdBlockDevice();

    std::uint64_t size() const;
    Status read(std::uint64_t off, std::span<std::byte> dst);
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua);
    Status flush();
    Status write_batch(std::span<const WriteRequest> requests);

    const std::string& uri() const;
    bool can_fua() const;
    unsigned queue_depth() const;

private:
    struct Conn;  // the libnbd handle, its mutex and the server's properties
    explicit NbdBlockDevice(std::unique_ptr<Conn> conn);
    std::unique_ptr<Conn> conn_;
};
static_assert(BatchBlockDevice<NbdBlockDevice>);

}  // namespace pcache
