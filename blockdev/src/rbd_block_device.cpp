// RbdBlockDevice: every call becomes a list of rbd aio commands, kept up to queue_depth in
// flight; completions arrive on librbd's threads and are counted under a mutex.
#include "pcache/blockdev/rbd_block_device.hpp"

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

namespace pcache {
namespace {

enum class OpKind { read, write, flush };

struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t completed = 0;
};

struct Op {
    OpKind kind = OpKind::read;
    std::uint64_t offset_bytes = 0;
    std::byte* buf = nullptr;
    std::size_t len_bytes = 0;
    int error = 0;  // positive errno
    Waiter* waiter = nullptr;
};

const char* op_name(OpKind k) {
    return k == OpKind::read ? "RBD read" : k == OpKind::write ? "RBD write" : "RBD flush";
}

void on_complete(rbd_completion_t c, void* arg) {
    auto* op = static_cast<Op*>(arg);
    const ssize_t r = rbd_aio_get_return_value(c);
    rbd_aio_release(c);
    if (r < 0)
        op->error = static_cast<int>(-r);
    else if (op->kind == OpKind::read && static_cast<std::size_t>(r) != op->len_bytes)
        op->error = EIO;  // short read inside the image: never happens on a healthy cluster
    Waiter* w = op->waiter;
    std::lock_guard g(w->mu);
    ++w->completed;
    w->cv.notify_one();
}

Status rados_error(const std::string& what, int r) {
    const int e = r < 0 ? -r : r;
    return {e == ENOENT   ? Errc::not_found
            : e == ENOSPC ? Errc::no_space
                          : Errc::io,
            what + ": " + std::strerror(e) + " (errno " + std::to_string(e) + ")"};
}

}  // namespace

struct RbdBlockDevice::Image {
    Image() = default;
    Image(const Image&) = delete;
    Image& operator=(const Image&) = delete;
    ~Image() {
        if (image) rbd_close(image);
        if (io) rados_ioctx_destroy(io);
        if (cluster) rados_shutdown(cluster);
    }
    Status run(std::span<Op> ops);

    rados_t cluster = nullptr;
    rados_ioctx_t io = nullptr;
    rbd_image_t image = nullptr;
    std::string name;
    RbdOptions opts;
    std::uint64_t size_bytes = 0;
    std::mutex mu;
};

// Caller holds mu. Returns once every command of `ops` has completed (librbd's op timeouts
// bound the wait).
Status RbdBlockDevice::Image::run(std::span<Op> ops) {
    Waiter w;
    std::size_t next = 0, submitted = 0;
    std::unique_lock lock(w.mu);
    while (w.completed < submitted || next < ops.size()) {
        while (next < ops.size() && submitted - w.completed < opts.queue_depth) {
            Op& op = ops[next++];
            op.waiter = &w;
            rbd_completion_t c = nullptr;
            int r = rbd_aio_create_completion(&op, on_complete, &c);
            if (r == 0) {
                lock.unlock();  // the completion may run at once, on another thread
                switch (op.kind) {
                    case OpKind::read:
                        r = rbd_aio_read(image, op.offset_bytes, op.len_bytes,
                                         reinterpret_cast<char*>(op.buf), c);
                        break;
                    case OpKind::write:
                        r = rbd_aio_write(image, op.offset_bytes, op.len_bytes,
                                          reinterpret_cast<const char*>(op.buf), c);
                        break;
                    case OpKind::flush:
                        r = rbd_aio_flush(image, c);
                        break;
                }
                lock.lock();
                if (r < 0) rbd_aio_release(c);
            }
            if (r < 0)
                op.error = -r;  // refused before it was queued: no completion will come
            else
                ++submitted;
        }
        if (w.completed < submitted) w.cv.wait(lock);
    }
    for (std::size_t i = 0; i < ops.size(); ++i)
        if (ops[i].error)
            return rados_error(std::string(op_name(ops[i].kind)) +
                                   (ops.size() > 1 ? " #" + std::to_string(i) : "") + " of '" +
                                   name + "' at " + std::to_string(ops[i].offset_bytes),
                               ops[i].error);
    return {};
}

Result<RbdBlockDevice> RbdBlockDevice::open(const std::string& pool, const std::string& image,
                                            RbdOptions options) {
    if (options.queue_depth == 0 || options.queue_depth > 1024)
        return {Errc::invalid_argument, "RBD queue depth must be in [1, 1024], found " +
                                            std::to_string(options.queue_depth)};
    if (pool.empty() || image.empty())
        return {Errc::invalid_argument, "RBD: expected a pool and an image name"};
    auto img = std::make_unique<Image>();
    img->name = "rbd:" + pool + "/" + image;
    img->opts = options;
    const std::string& name = img->name;
    if (int r = rados_create(&img->cluster, options.id.empty() ? nullptr : options.id.c_str());
        r < 0)
        return rados_error(name + ": rados_create", r);
    if (int r = rados_conf_read_file(img->cluster,
                                     options.conf.empty() ? nullptr : options.conf.c_str());
        r < 0)
        return rados_error(
            name + ": reading the Ceph configuration '" +
                (options.conf.empty() ? std::string("default search path") : options.conf) + "'",
            r);
    if (int r = rados_conf_parse_env(img->cluster, nullptr); r < 0)
        return rados_error(name + ": $CEPH_ARGS", r);
    const std::string secs = std::to_string((options.timeout_ms + 999) / 1000);
    for (const char* key : {"rados_osd_op_timeout", "rados_mon_op_timeout", "client_mount_timeout"})
        if (int r = rados_conf_set(img->cluster, key, secs.c_str()); r < 0)
            return rados_error(name + ": setting " + key, r);
    if (int r = rados_conf_set(img->cluster, "rbd_cache", "false"); r < 0)
        return rados_error(name + ": setting rbd_cache", r);
    if (int r = rados_connect(img->cluster); r < 0)
        return rados_error(name + ": connecting to the Ceph cluster", r);
    if (int r = rados_ioctx_create(img->cluster, pool.c_str(), &img->io); r < 0)
        return rados_error(name + ": pool '" + pool + "'", r);
    const int r = options.read_only
                      ? rbd_open_read_only(img->io, image.c_str(), &img->image, nullptr)
                      : rbd_open(img->io, image.c_str(), &img->image, nullptr);
    if (r < 0) return rados_error(name + ": opening the image", r);
    std::uint64_t size = 0;
    if (int e = rbd_get_size(img->image, &size); e < 0) return rados_error(name + ": size", e);
    img->size_bytes = size / kBlockSectorBytes * kBlockSectorBytes;
    if (img->size_bytes == 0) return {Errc::invalid_argument, name + ": the image is empty"};
    return RbdBlockDevice(std::move(img));
}

RbdBlockDevice::RbdBlockDevice(std::unique_ptr<Image> image) : image_(std::move(image)) {}
RbdBlockDevice::RbdBlockDevice(RbdBlockDevice&&) noexcept = default;
RbdBlockDevice& RbdBlockDevice::operator=(RbdBlockDevice&&) noexcept = default;
RbdBlockDevice::~RbdBlockDevice() = default;

std::uint64_t RbdBlockDevice::size() const { return image_->size_bytes; }
const std::string& RbdBlockDevice::name() const { return image_->name; }
unsigned RbdBlockDevice::queue_depth() const { return image_->opts.queue_depth; }

Status RbdBlockDevice::read(std::uint64_t off, std::span<std::byte> dst) {
    PCACHE_TRY(check_block_io("RBD read", off, dst.size(), size()));
    if (dst.empty()) return {};
    Op op{OpKind::read, off, dst.data(), dst.size()};
    std::lock_guard lock(image_->mu);
    return image_->run({&op, 1});
}

Status RbdBlockDevice::write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
    const WriteRequest request{off, src, fua};
    return write_batch({&request, 1});
}

Status RbdBlockDevice::write_batch(std::span<const WriteRequest> requests) {
    if (image_->opts.read_only)
        return {Errc::invalid_argument, "'" + name() + "' was opened read-only"};
    bool any_fua = false;
    std::vector<Op> ops;
    ops.reserve(requests.size());
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const WriteRequest& r = requests[i];
        if (Status s = check_block_io("RBD write", r.offset_bytes, r.bytes.size(), size()); !s)
            return requests.size() > 1 ? s.with_context("batch request #" + std::to_string(i)) : s;
        any_fua = any_fua || r.fua;
        if (!r.bytes.empty())
            ops.push_back(Op{OpKind::write, r.offset_bytes, const_cast<std::byte*>(r.bytes.data()),
                             r.bytes.size()});
    }
    std::lock_guard lock(image_->mu);
    PCACHE_TRY(image_->run(ops));
    if (!any_fua) return {};
    Op op{OpKind::flush};
    return image_->run({&op, 1});
}

Status RbdBlockDevice::flush() {
    if (image_->opts.read_only)
        return {Errc::invalid_argument, "'" + name() + "' was opened read-only"};
    Op op{OpKind::flush};
    std::lock_guard lock(image_->mu);
    return image_->run({&op, 1});
}

}  // namespace pcache
