// UringBlockDevice: one io_uring; every call becomes a list of operations that are submitted
// up to queue_depth at a time and reaped until each has completed or failed.
#include "pcache/blockdev/uring_block_device.hpp"

#include <liburing.h>
#include <sys/uio.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "aligned_buffer.hpp"

namespace pcache {
namespace {

enum class OpKind { read, write, fsync };

struct Op {
    OpKind kind = OpKind::read;
    std::uint64_t offset_bytes = 0;
    std::byte* buf = nullptr;  // written into for reads; only read from for writes
    std::size_t len_bytes = 0;
    bool fua = false;
    std::size_t done_bytes = 0;
    int error = 0;  // errno; kEof for a read or write that made no progress
    unsigned retries = 0;
};
constexpr int kEof = -1;
// EINTR/EAGAIN completions are resubmitted at most this often before they count as errors.
constexpr unsigned kRetriesMax = 1000;
// One SQE moves at most this much; longer requests continue as "short" transfers.
constexpr std::size_t kSqeBytesMax = std::size_t{1} << 30;

const char* op_name(OpKind k) {
    return k == OpKind::read ? "block read" : k == OpKind::write ? "block write" : "block flush";
}

}  // namespace

struct UringBlockDevice::Ring {
    explicit Ring(BackingFile f) : file(std::move(f)) {}
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring() {
        if (initialised) io_uring_queue_exit(&ring);
    }

    Status run(std::span<Op> ops);
    void prepare(io_uring_sqe* sqe, const Op& op, std::size_t index) const;
    void complete(Op& op, int res, std::vector<std::size_t>& pending, std::size_t index) const;
    Status first_error(std::span<const Op> ops) const;

    BackingFile file;
    io_uring ring{};
    bool initialised = false;
    unsigned depth = 0;
    // Set when the ring itself failed (not one request): operations may still be queued in it,
    // so nothing more is submitted.
    std::string broken;
    std::mutex mu;
};

void UringBlockDevice::Ring::prepare(io_uring_sqe* sqe, const Op& op, std::size_t index) const {
    const std::size_t n = std::min(op.len_bytes - op.done_bytes, kSqeBytesMax);
    const std::uint64_t at = op.offset_bytes + op.done_bytes;
    switch (op.kind) {
        case OpKind::read:
            io_uring_prep_read(sqe, file.fd(), op.buf + op.done_bytes, static_cast<unsigned>(n),
                               at);
            break;
        case OpKind::write:
            io_uring_prep_write(sqe, file.fd(), op.buf + op.done_bytes, static_cast<unsigned>(n),
                                at);
            if (op.fua) sqe->rw_flags = RWF_DSYNC;  // per-write O_DSYNC: the kernel's REQ_FUA path
            break;
        case OpKind::fsync:
            io_uring_prep_fsync(sqe, file.fd(), IORING_FSYNC_DATASYNC);
            break;
    }
    io_uring_sqe_set_data64(sqe, index);
}

void UringBlockDevice::Ring::complete(Op& op, int res, std::vector<std::size_t>& pending,
                                      std::size_t index) const {
    if (res == -EINTR || res == -EAGAIN) {
        if (++op.retries <= kRetriesMax)
            pending.push_back(index);
        else
            op.error = -res;
        return;
    }
    if (res < 0) {
        op.error = -res;
        return;
    }
    if (op.kind == OpKind::fsync) return;
    if (res == 0) {
        op.error = kEof;
        return;
    }
    op.done_bytes += static_cast<std::size_t>(res);
    assert(op.done_bytes <= op.len_bytes);
    if (op.done_bytes < op.len_bytes) pending.push_back(index);  // short transfer: continue
}

// Caller holds mu. Returns once no operation is in the kernel any more.
Status UringBlockDevice::Ring::run(std::span<Op> ops) {
    if (!broken.empty()) return {Errc::io, broken};
    std::vector<std::size_t> pending;  // stack of op indices to (re)submit, lowest index on top
    pending.reserve(ops.size());
    for (std::size_t i = ops.size(); i-- > 0;)
        if (ops[i].kind == OpKind::fsync || ops[i].len_bytes > 0) pending.push_back(i);
    unsigned in_flight = 0;
    unsigned failed_submits = 0;  // consecutive EINTR/EAGAIN/EBUSY from the submit itself
    while (!pending.empty() || in_flight > 0) {
        while (!pending.empty() && in_flight < depth) {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            if (sqe == nullptr) break;
            prepare(sqe, ops[pending.back()], pending.back());
            pending.pop_back();
            ++in_flight;
        }
        const int rc = io_uring_submit_and_wait(&ring, 1);
        const bool transient = rc == -EINTR || rc == -EAGAIN || rc == -EBUSY;
        failed_submits = transient ? failed_submits + 1 : 0;
        if ((rc < 0 && !transient) || failed_submits > kRetriesMax) {
            broken = "io_uring on '" + file.path() + "' failed: " + std::strerror(-rc) +
                     "; the device must be reopened";
            // Tearing the ring down cancels what it still holds, so no request outlives the
            // buffers of this call.
            io_uring_queue_exit(&ring);
            initialised = false;
            return {Errc::io, broken};
        }
        io_uring_cqe* cqe = nullptr;
        while (in_flight > 0 && io_uring_peek_cqe(&ring, &cqe) == 0) {
            const auto index = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
            assert(index < ops.size());
            complete(ops[index], cqe->res, pending, index);
            io_uring_cqe_seen(&ring, cqe);
            --in_flight;
        }
    }
    return first_error(ops);
}

Status UringBlockDevice::Ring::first_error(std::span<const Op> ops) const {
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const Op& op = ops[i];
        if (op.error == 0) continue;
        const std::string where =
            std::string(op_name(op.kind)) + (ops.size() > 1 ? " #" + std::to_string(i) : "") +
            " of '" + file.path() + "' at " + std::to_string(op.offset_bytes + op.done_bytes);
        if (op.error == kEof)
            return {Errc::io, where + ": no progress (end of file: was it truncated?)"};
        return {op.error == ENOSPC ? Errc::no_space : Errc::io,
                where + ": " + std::strerror(op.error)};
    }
    return {};
}

Result<UringBlockDevice> UringBlockDevice::open(const std::string& path, BlockOpenOptions options,
                                                unsigned queue_depth) {
    if (queue_depth == 0 || queue_depth > 4096)
        return {Errc::invalid_argument,
                "uring queue depth must be in [1, 4096], found " + std::to_string(queue_depth)};
    Result<BackingFile> file = BackingFile::open(path, options);
    if (!file) return file.status();
    auto ring = std::make_unique<Ring>(std::move(file).value());
    if (const int rc = io_uring_queue_init(queue_depth, &ring->ring, 0); rc < 0)
        return {rc == -ENOSYS || rc == -EPERM ? Errc::unsupported : Errc::io,
                "io_uring_queue_init(" + std::to_string(queue_depth) + ") for '" + path +
                    "': " + std::strerror(-rc)};
    ring->initialised = true;
    ring->depth = queue_depth;
    return UringBlockDevice(std::move(ring));
}

UringBlockDevice::UringBlockDevice(std::unique_ptr<Ring> ring) : ring_(std::move(ring)) {}
UringBlockDevice::UringBlockDevice(UringBlockDevice&&) noexcept = default;
UringBlockDevice& UringBlockDevice::operator=(UringBlockDevice&&) noexcept = default;
UringBlockDevice::~UringBlockDevice() = default;

std::uint64_t UringBlockDevice::size() const { return ring_->file.size(); }
bool UringBlockDevice::direct() const { return ring_->file.direct(); }
const std::string& UringBlockDevice::path() const { return ring_->file.path(); }
unsigned UringBlockDevice::queue_depth() const { return ring_->depth; }

Status UringBlockDevice::read(std::uint64_t off, std::span<std::byte> dst) {
    PCACHE_TRY(ring_->file.check_io("block read", off, dst.size()));
    detail::AlignedBuffer bounce;
    const bool bounced = !dst.empty() && !ring_->file.buffer_ok(dst.data());
    if (bounced) {
        bounce = detail::AlignedBuffer(dst.size(), ring_->file.direct_mem_align_bytes());
        if (!bounce.data()) return {Errc::no_space, "block read: cannot allocate a bounce buffer"};
    }
    Op op{OpKind::read, off, bounced ? bounce.data() : dst.data(), dst.size()};
    {
        std::lock_guard lock(ring_->mu);
        PCACHE_TRY(ring_->run({&op, 1}));
    }
    if (bounced) std::memcpy(dst.data(), bounce.data(), dst.size());
    return {};
}

Status UringBlockDevice::write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
    const WriteRequest request{off, src, fua};
    return write_batch({&request, 1});
}

Status UringBlockDevice::write_batch(std::span<const WriteRequest> requests) {
    // Validate everything first: a refused batch writes nothing.
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const WriteRequest& r = requests[i];
        if (Status s = ring_->file.check_io("block write", r.offset_bytes, r.bytes.size()); !s)
            return requests.size() > 1 ? s.with_context("batch request #" + std::to_string(i)) : s;
    }
    std::vector<Op> ops(requests.size());
    std::vector<detail::AlignedBuffer> bounces;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const WriteRequest& r = requests[i];
        // The kernel only reads from a write's buffer; Op has one pointer type for both kinds.
        auto* buf = const_cast<std::byte*>(r.bytes.data());
        if (!r.bytes.empty() && !ring_->file.buffer_ok(buf)) {
            bounces.emplace_back(r.bytes.size(), ring_->file.direct_mem_align_bytes());
            if (!bounces.back().data())
                return {Errc::no_space, "block write: cannot allocate a bounce buffer"};
            std::memcpy(bounces.back().data(), r.bytes.data(), r.bytes.size());
            buf = bounces.back().data();
        }
        ops[i] = Op{OpKind::write, r.offset_bytes, buf, r.bytes.size(), r.fua};
    }
    std::lock_guard lock(ring_->mu);
    return ring_->run(ops);
}

Status UringBlockDevice::flush() {
    Op op{OpKind::fsync};
    std::lock_guard lock(ring_->mu);
    return ring_->run({&op, 1});
}

}  // namespace pcache
