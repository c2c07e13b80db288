// NbdBlockDevice: every call becomes a list of libnbd aio commands, kept up to queue_depth in
// flight and driven by nbd_poll with a timeout until each has completed or failed.
#include "pcache/blockdev/nbd_block_device.hpp"

#include <libnbd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <vector>

namespace pcache {
namespace {

enum class OpKind { read, write, flush };

struct Op {
    OpKind kind = OpKind::read;
    std::uint64_t offset_bytes = 0;
    std::byte* buf = nullptr;  // written into for reads; only read from for writes
    std::size_t len_bytes = 0;
    bool fua = false;
    bool done = false;
    int error = 0;  // the server's errno (or libnbd's, for a request it refused)
    std::size_t* completions = nullptr;  // run()'s counter, bumped by the completion callback
};

// libnbd refuses requests above 64 MiB; servers often advertise less. Longer requests are split.
constexpr std::uint64_t kRequestBytesMax = 32ull << 20;

const char* op_name(OpKind k) {
    return k == OpKind::read ? "NBD read" : k == OpKind::write ? "NBD write" : "NBD flush";
}

int on_complete(void* user_data, int* error) {
    auto* op = static_cast<Op*>(user_data);
    op->done = true;
    op->error = *error;
    ++*op->completions;
    return 1;  // retire the command: no nbd_aio_command_completed needed
}

std::string nbd_error_text() {
    const char* e = nbd_get_error();
    return e ? e : "unknown libnbd error";
}

}  // namespace

struct NbdBlockDevice::Conn {
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;
    Conn(std::string u, NbdOptions o) : uri(std::move(u)), opts(o) {}
    ~Conn() { nbd_close(h); }

    Status connect();
    Status ensure_connected();
    Status run(std::span<Op> ops);
    Status lost(const std::string& why);
    Status op_error(const Op& op, std::size_t index, std::size_t n) const;
    void split(OpKind kind, std::uint64_t off, std::byte* buf, std::size_t len, bool fua,
               std::vector<Op>& out) const;

    std::string uri;
    NbdOptions opts;
    nbd_handle* h = nullptr;
    std::uint64_t size_bytes = 0;
    std::uint64_t request_bytes_max = kRequestBytesMax;
    bool fua = false;
    std::mutex mu;
};

// Connects (or reconnects) with the timeout, and checks the export is usable as asked.
Status NbdBlockDevice::Conn::connect() {
    nbd_close(h);
    h = nbd_create();
    if (!h) return {Errc::io, "nbd_create: " + nbd_error_text()};
    if (nbd_supports_uri(h) != 1)
        return {Errc::unsupported, "this libnbd was built without NBD URI support"};
    const std::string where = "NBD server '" + uri + "'";
    if (nbd_aio_connect_uri(h, uri.c_str()) == -1)
        return {nbd_get_errno() == EINVAL ? Errc::invalid_argument : Errc::io,
                where + ": " + nbd_error_text()};
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(opts.timeout_ms);
    while (nbd_aio_is_connecting(h) == 1 || nbd_aio_is_negotiating(h) == 1 ||
           nbd_aio_is_created(h) == 1) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (left <= 0)
            return {Errc::io, where + ": no answer within " + std::to_string(opts.timeout_ms) +
                                  " ms while connecting"};
        if (nbd_poll(h, static_cast<int>(std::min<long long>(left, 1000))) == -1) break;
    }
    if (nbd_aio_is_ready(h) != 1)
        return {Errc::io, where + ": cannot connect: " + nbd_error_text()};
    const std::int64_t size = nbd_get_size(h);
    if (size < 0) return {Errc::io, where + ": export size: " + nbd_error_text()};
    const std::uint64_t sectors = static_cast<std::uint64_t>(size) / kBlockSectorBytes;
    if (size_bytes != 0 && sectors * kBlockSectorBytes != size_bytes)
        return {Errc::io, where + ": the export changed size on reconnect (" +
                              std::to_string(size_bytes) + " -> " + std::to_string(size) + " B)"};
    size_bytes = sectors * kBlockSectorBytes;
    if (const std::int64_t m = nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM); m >= 4096)
        request_bytes_max =
            std::min<std::uint64_t>(kRequestBytesMax, std::uint64_t(m) / 4096 * 4096);
    fua = nbd_can_fua(h) == 1;
    if (!opts.read_only) {
        if (nbd_is_read_only(h) == 1)
            return {Errc::unsupported, where +
                                           ": the export is read-only (a backing device must "
                                           "be writable)"};
        if (opts.require_flush && nbd_can_flush(h) != 1)
            return {Errc::unsupported,
                    where +
                        ": the server does not support FLUSH (NBD_CMD_FLUSH): pcache "
                        "cannot make written-back data durable before it forgets it, so "
                        "it refuses this server as a write-back backing device"};
    }
    return {};
}

Status NbdBlockDevice::Conn::ensure_connected() {
    if (h && nbd_aio_is_ready(h) == 1) return {};
    if (Status s = connect(); !s.ok()) {
        nbd_close(h);
        h = nullptr;
        return s.with_context("reconnecting after a lost connection");
    }
    return {};
}

// Closes the connection: libnbd drops every command still queued, so none outlives the
// caller's buffers. The next call reconnects.
Status NbdBlockDevice::Conn::lost(const std::string& why) {
    nbd_close(h);
    h = nullptr;
    return {Errc::io, "NBD server '" + uri + "': connection lost (" + why +
                          "); requests in flight failed, the next request reconnects"};
}

void NbdBlockDevice::Conn::split(OpKind kind, std::uint64_t off, std::byte* buf, std::size_t len,
                                 bool with_fua, std::vector<Op>& out) const {
    for (std::size_t done = 0; done < len;) {
        const std::size_t n = std::min<std::size_t>(len - done, request_bytes_max);
        out.push_back(Op{kind, off + done, buf + done, n, with_fua && fua});
        done += n;
    }
}

Status NbdBlockDevice::Conn::op_error(const Op& op, std::size_t index, std::size_t n) const {
    const std::string where = std::string(op_name(op.kind)) +
                              (n > 1 ? " #" + std::to_string(index) : "") + " of '" + uri +
                              "' at " + std::to_string(op.offset_bytes);
    return {op.error == ENOSPC ? Errc::no_space : Errc::io, where + ": " + std::strerror(op.error) +
                                                                " (server errno " +
                                                                std::to_string(op.error) + ")"};
}

// Caller holds mu. Returns once no command of `ops` is queued in libnbd any more.
Status NbdBlockDevice::Conn::run(std::span<Op> ops) {
    PCACHE_TRY(ensure_connected());
    const unsigned depth = std::max(1u, opts.queue_depth);
    std::size_t next = 0, in_flight = 0, completed = 0, callbacks = 0;
    auto last_progress = std::chrono::steady_clock::now();
    while (completed < ops.size()) {
        while (next < ops.size() && in_flight < depth) {
            Op& op = ops[next];
            op.completions = &callbacks;
            const nbd_completion_callback cb{
                .callback = on_complete, .user_data = &op, .free = nullptr};
            const std::uint32_t flags = op.fua ? LIBNBD_CMD_FLAG_FUA : 0;
            std::int64_t cookie = -1;
            switch (op.kind) {
                case OpKind::read:
                    cookie = nbd_aio_pread(h, op.buf, op.len_bytes, op.offset_bytes, cb, 0);
                    break;
                case OpKind::write:
                    cookie = nbd_aio_pwrite(h, op.buf, op.len_bytes, op.offset_bytes, cb, flags);
                    break;
                case OpKind::flush:
                    cookie = nbd_aio_flush(h, cb, 0);
                    break;
            }
            if (cookie == -1) {
                if (nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1)
                    return lost(nbd_error_text());
                op.done = true;  // refused by libnbd before it reached the server
                op.error = nbd_get_errno() ? nbd_get_errno() : EIO;
                ++completed;
                ++callbacks;
            } else {
                ++in_flight;
            }
            ++next;
        }
        // A callback may already have run while a command was being queued.
        const auto reconcile = [&] {
            if (callbacks > completed) last_progress = std::chrono::steady_clock::now();
            in_flight -= callbacks - completed;
            completed = callbacks;
        };
        reconcile();
        if (in_flight == 0) continue;
        const auto left = std::chrono::milliseconds(opts.timeout_ms) -
                          std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - last_progress);
        if (left.count() <= 0)
            return lost("no reply within " + std::to_string(opts.timeout_ms) + " ms");
        if (nbd_poll(h, static_cast<int>(std::min<long long>(left.count(), 1000))) == -1)
            return lost(nbd_error_text());
        reconcile();
        if (nbd_aio_is_dead(h) == 1 || nbd_aio_is_closed(h) == 1) {
            if (completed < ops.size()) return lost(nbd_error_text());
        }
    }
    for (std::size_t i = 0; i < ops.size(); ++i) {
        if (ops[i].error == 0) continue;
        if (ops[i].error == ENOTCONN || ops[i].error == ESHUTDOWN || ops[i].error == ECONNRESET)
            return lost(std::strerror(ops[i].error));
        return op_error(ops[i], i, ops.size());
    }
    return {};
}

Result<NbdBlockDevice> NbdBlockDevice::open(const std::string& uri, NbdOptions options) {
    if (options.queue_depth == 0 || options.queue_depth > 1024)
        return {Errc::invalid_argument, "NBD queue depth must be in [1, 1024], found " +
                                            std::to_string(options.queue_depth)};
    if (options.timeout_ms == 0)
        return {Errc::invalid_argument, "NBD timeout must be at least 1 ms"};
    auto conn = std::make_unique<Conn>(uri, options);
    if (Status s = conn->connect(); !s.ok()) return s;
    if (conn->size_bytes == 0)
        return {Errc::invalid_argument, "NBD server '" + uri + "': the export is empty"};
    return NbdBlockDevice(std::move(conn));
}

NbdBlockDevice::NbdBlockDevice(std::unique_ptr<Conn> conn) : conn_(std::move(conn)) {}
NbdBlockDevice::NbdBlockDevice(NbdBlockDevice&&) noexcept = default;
NbdBlockDevice& NbdBlockDevice::operator=(NbdBlockDevice&&) noexcept = default;
NbdBlockDevice::~NbdBlockDevice() = default;

std::uint64_t NbdBlockDevice::size() const { return conn_->size_bytes; }
const std::string& NbdBlockDevice::uri() const { return conn_->uri; }
bool NbdBlockDevice::can_fua() const { return conn_->fua; }
unsigned NbdBlockDevice::queue_depth() const { return conn_->opts.queue_depth; }

Status NbdBlockDevice::read(std::uint64_t off, std::span<std::byte> dst) {
    PCACHE_TRY(check_block_io("NBD read", off, dst.size(), size()));
    if (dst.empty()) return {};
    std::vector<Op> ops;
    conn_->split(OpKind::read, off, dst.data(), dst.size(), false, ops);
    std::lock_guard lock(conn_->mu);
    return conn_->run(ops);
}

Status NbdBlockDevice::write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
    const WriteRequest request{off, src, fua};
    return write_batch({&request, 1});
}

Status NbdBlockDevice::write_batch(std::span<const WriteRequest> requests) {
    if (conn_->opts.read_only)
        return {Errc::invalid_argument, "NBD server '" + uri() + "' was opened read-only"};
    bool any_fua = false;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const WriteRequest& r = requests[i];
        if (Status s = check_block_io("NBD write", r.offset_bytes, r.bytes.size(), size()); !s)
            return requests.size() > 1 ? s.with_context("batch request #" + std::to_string(i)) : s;
        any_fua = any_fua || r.fua;
    }
    std::vector<Op> ops;
    for (const WriteRequest& r : requests)
        // libnbd only reads from a write's buffer; Op has one pointer type for both kinds.
        conn_->split(OpKind::write, r.offset_bytes, const_cast<std::byte*>(r.bytes.data()),
                     r.bytes.size(), r.fua, ops);
    std::lock_guard lock(conn_->mu);
    PCACHE_TRY(conn_->run(ops));
    if (any_fua && !conn_->fua) {  // no FUA on this server: a flush makes the writes durable
        Op op{OpKind::flush};
        return conn_->run({&op, 1});
    }
    return {};
}

Status NbdBlockDevice::flush() {
    if (conn_->opts.read_only)
        return {Errc::invalid_argument, "NBD server '" + uri() + "' was opened read-only"};
    Op op{OpKind::flush};
    std::lock_guard lock(conn_->mu);
    return conn_->run({&op, 1});
}

}  // namespace pcache
