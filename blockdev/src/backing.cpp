// open_backing: the one place a --backing value is parsed and opened (see backing.hpp).
#include "pcache/blockdev/backing.hpp"

#include <optional>
#include <vector>

#include "pcache/blockdev/file_block_device.hpp"
#include "pcache/blockdev/uring_block_device.hpp"
#ifdef PCACHE_HAVE_NBD
#include "pcache/blockdev/nbd_block_device.hpp"
#endif
#ifdef PCACHE_HAVE_RBD
#include "pcache/blockdev/rbd_block_device.hpp"
#endif

namespace pcache {
namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// A file or block device: pread/pwrite for requests (concurrent callers never wait for each
// other), and a second descriptor with an io_uring for batches, when the kernel allows one.
class FileBacking final : public BackingDevice {
public:
    FileBacking(FileBlockDevice f, std::optional<UringBlockDevice> u)
        : file_(std::move(f)), uring_(std::move(u)) {}
    std::uint64_t size() const override { return file_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) override {
        return file_.read(off, dst);
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) override {
        return file_.write(off, src, fua);
    }
    Status flush() override { return file_.flush(); }
    Status write_batch(std::span<const WriteRequest> requests) override {
        if (uring_) return uring_->write_batch(requests);
        for (const WriteRequest& r : requests)
            PCACHE_TRY(file_.write(r.offset_bytes, r.bytes, r.fua));
        return {};
    }
    std::string describe() const override { return "file '" + file_.path() + "'"; }

private:
    FileBlockDevice file_;
    std::optional<UringBlockDevice> uring_;
};

// NbdBlockDevice and RbdBlockDevice as they are.
template <BatchBlockDevice D>
class NetBacking final : public BackingDevice {
public:
    NetBacking(D d, std::string what) : dev_(std::move(d)), what_(std::move(what)) {}
    std::uint64_t size() const override { return dev_.size(); }
    Status read(std::uint64_t off, std::span<std::byte> dst) override {
        return dev_.read(off, dst);
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) override {
        return dev_.write(off, src, fua);
    }
    Status flush() override { return dev_.flush(); }
    Status write_batch(std::span<const WriteRequest> requests) override {
        return dev_.write_batch(requests);
    }
    std::string describe() const override { return what_; }

private:
    D dev_;
    std::string what_;
};

Result<std::unique_ptr<BackingDevice>> open_file(const BackingSpec& spec,
                                                 const BackingOpenOptions& o) {
    BlockOpenOptions bo;
    bo.read_only = o.read_only;
    auto f = FileBlockDevice::open(spec.path, bo);
    if (!f.ok()) return f.status();
    std::optional<UringBlockDevice> uring;
    if (!o.read_only) {
        // Without io_uring (old kernel, seccomp) batches are written one request at a time.
        auto u = UringBlockDevice::open(spec.path, bo, o.queue_depth);
        if (u.ok())
            uring.emplace(std::move(*u));
        else if (u.status().code() != Errc::unsupported)
            return u.status();
    }
    return std::unique_ptr<BackingDevice>(new FileBacking(std::move(*f), std::move(uring)));
}

}  // namespace

Result<BackingSpec> parse_backing_spec(const std::string& text) {
    BackingSpec spec;
    spec.text = text;
    const auto bad = [&](const std::string& why) {
        return Status(Errc::invalid_argument, "backing '" + text + "': " + why);
    };
    if (text.empty()) return bad("empty (expected a path, an NBD URI or rbd:POOL/IMAGE)");
    for (const char* scheme :
         {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://", "nbds+vsock://"})
        if (starts_with(text, scheme)) {
            spec.kind = BackingSpec::Kind::nbd;
            spec.path = text;
            return spec;
        }
    if (starts_with(text, "rbd:")) {
        spec.kind = BackingSpec::Kind::rbd;
        std::vector<std::string> parts;
        std::size_t at = 4;
        for (std::size_t colon; (colon = text.find(':', at)) != std::string::npos; at = colon + 1)
            parts.push_back(text.substr(at, colon - at));
        parts.push_back(text.substr(at));
        const std::string& name = parts[0];
        const std::size_t slash = name.find('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == name.size() ||
            name.find('/', slash + 1) != std::string::npos)
            return bad("expected rbd:POOL/IMAGE[:conf=PATH][:id=USER]");
        spec.pool = name.substr(0, slash);
        spec.image = name.substr(slash + 1);
        if (spec.image.find('@') != std::string::npos)
            return bad("a snapshot (IMAGE@SNAP) is read-only; a backing device must be writable");
        for (std::size_t i = 1; i < parts.size(); ++i) {
            const std::string& p = parts[i];
            if (starts_with(p, "conf=") && p.size() > 5)
                spec.rbd_conf = p.substr(5);
            else if (starts_with(p, "id=") && p.size() > 3)
                spec.rbd_id = p.substr(3);
            else
                return bad("unknown RBD option '" + p + "' (expected conf=PATH or id=USER)");
        }
        return spec;
    }
    if (text.find("://") != std::string::npos)
        return bad(
            "unknown URI scheme (expected nbd://, nbd+unix://, nbds://, rbd:POOL/IMAGE "
            "or a path)");
    spec.path = text;
    return spec;
}

Result<std::unique_ptr<BackingDevice>> open_backing(const std::string& text,
                                                    const BackingOpenOptions& o) {
    auto spec = parse_backing_spec(text);
    if (!spec.ok()) return spec.status();
    switch (spec->kind) {
        case BackingSpec::Kind::file:
            return open_file(*spec, o);
        case BackingSpec::Kind::nbd: {
#ifdef PCACHE_HAVE_NBD
            NbdOptions no;
            no.read_only = o.read_only;
            no.queue_depth = o.queue_depth;
            no.timeout_ms = o.timeout_ms;
            auto d = NbdBlockDevice::open(spec->path, no);
            if (!d.ok()) return d.status();
            return std::unique_ptr<BackingDevice>(
                new NetBacking<NbdBlockDevice>(std::move(*d), "NBD '" + spec->path + "'"));
#else
            return Status(Errc::unsupported,
                          "backing '" + text + "': this pcache was built without libnbd");
#endif
        }
        case BackingSpec::Kind::rbd: {
#ifdef PCACHE_HAVE_RBD
            RbdOptions ro;
            ro.conf = spec->rbd_conf;
            ro.id = spec->rbd_id;
            ro.read_only = o.read_only;
            ro.queue_depth = o.queue_depth;
            ro.timeout_ms = o.timeout_ms;
            auto d = RbdBlockDevice::open(spec->pool, spec->image, ro);
            if (!d.ok()) return d.status();
            return std::unique_ptr<BackingDevice>(new NetBacking<RbdBlockDevice>(
                std::move(*d), "RBD 'rbd:" + spec->pool + "/" + spec->image + "'"));
#else
            return Status(Errc::unsupported,
                          "backing '" + text + "': this pcache was built without librbd");
#endif
        }
    }
    return Status(Errc::invalid_argument, "backing '" + text + "': unknown kind");
}

}  // namespace pcache
