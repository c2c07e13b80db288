// The FUSE front end (see the header for the request mapping).
#define FUSE_USE_VERSION 312
#include "fuse/fuse_frontend.hpp"

#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace pcache::serve {

namespace {

// Stop signals: the first ends the loop (the caller then closes the cache), later ones only
// say so. The handlers stay installed until the process exits, so a second Ctrl-C during the
// close cannot kill it half-way; installed with sigaction, they also replace the SIG_IGN that
// a script's `cmd &` gives a background job for SIGINT.
std::atomic<fuse_session*> g_session{nullptr};
std::atomic<int> g_stop_signal{0};

void write_stderr(const char* text) {
    const ssize_t n = ::write(STDERR_FILENO, text, std::strlen(text));
    (void)n;
}

void on_stop_signal(int sig) {
    int expected = 0;
    if (!g_stop_signal.compare_exchange_strong(expected, sig)) {
        write_stderr(
            "pcache serve: already stopping: closing the cache cleanly (SIGKILL would leave a "
            "log to replay at the next start)\n");
        return;
    }
    write_stderr(sig == SIGHUP    ? "pcache serve: SIGHUP: stopping\n"
                 : sig == SIGTERM ? "pcache serve: SIGTERM: stopping\n"
                                  : "pcache serve: SIGINT: stopping\n");
    if (fuse_session* se = g_session.load()) fuse_session_exit(se);
}

constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
constexpr fuse_ino_t kFileIno = 2;
constexpr double kAttrTimeoutS = 3600;  // nothing about the file ever changes but its bytes

struct Context {
    Backend* backend;
    std::string file_name;
    uid_t uid;
    gid_t gid;
};

Context& ctx(fuse_req_t req) { return *static_cast<Context*>(fuse_req_userdata(req)); }

struct stat attr_of(const Context& c, fuse_ino_t ino) {
    struct stat st {};
    st.st_ino = ino;
    st.st_uid = c.uid;
    st.st_gid = c.gid;
    if (ino == kRootIno) {
        st.st_mode = S_IFDIR | 0755;
        st.st_nlink = 2;
    } else {
        st.st_mode = S_IFREG | 0600;
        st.st_nlink = 1;
        st.st_size = static_cast<off_t>(c.backend->size_bytes());
        st.st_blksize = 4096;
        st.st_blocks = st.st_size / 512;
    }
    return st;
}

// An error from the backend: logged (the client only sees EIO) and answered.
void reply_status(fuse_req_t req, const char* op, const Status& s) {
    if (s.ok()) {
        fuse_reply_err(req, 0);
        return;
    }
    std::fprintf(stderr, "pcache serve: %s failed: %s\n", op, s.to_string().c_str());
    fuse_reply_err(req, s.code() == Errc::invalid_argument ? EINVAL : EIO);
}

void op_init(void* /*userdata*/, fuse_conn_info* conn) {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // acknowledged writes must be in the backend
    if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
    conn->max_write = 1u << 20;
    conn->max_readahead = 0;
    conn->max_background = 128;  // the loop driver queues up to 128 requests
    conn->congestion_threshold = 96;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    const Context& c = ctx(req);
    if (parent != kRootIno || c.file_name != name) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    fuse_entry_param e{};
    e.ino = kFileIno;
    e.attr = attr_of(c, kFileIno);
    e.attr_timeout = kAttrTimeoutS;
    e.entry_timeout = kAttrTimeoutS;
    fuse_reply_entry(req, &e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
    if (ino != kRootIno && ino != kFileIno) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    const struct stat st = attr_of(ctx(req), ino);
    fuse_reply_attr(req, &st, kAttrTimeoutS);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* /*fi*/) {
    const Context& c = ctx(req);
    if (ino == kFileIno && (to_set & FUSE_SET_ATTR_SIZE) &&
        static_cast<std::uint64_t>(attr->st_size) != c.backend->size_bytes()) {
        fuse_reply_err(req, EINVAL);  // a device does not change size
        return;
    }
    const struct stat st = attr_of(c, ino);  // ownership and times are fixed; accept and ignore
    fuse_reply_attr(req, &st, kAttrTimeoutS);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
    if (ino != kRootIno) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    const Context& c = ctx(req);
    std::vector<char> buf(size);
    std::size_t used = 0;
    const char* names[] = {".", "..", c.file_name.c_str()};
    const fuse_ino_t inos[] = {kRootIno, kRootIno, kFileIno};
    for (off_t i = off; i < 3; ++i) {
        struct stat st = attr_of(c, inos[i]);
        const std::size_t n =
            fuse_add_direntry(req, buf.data() + used, size - used, names[i], &st, i + 1);
        if (n > size - used) break;
        used += n;
    }
    fuse_reply_buf(req, buf.data(), used);
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    if (ino != kFileIno) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    fi->keep_cache = 0;
    fuse_reply_open(req, fi);
}

void op_read(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* /*fi*/) {
    Backend& b = *ctx(req).backend;
    const std::uint64_t dev = b.size_bytes(), at = static_cast<std::uint64_t>(off);
    const std::size_t n =
        at >= dev ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(size, dev - at));
    thread_local std::vector<std::byte> buf;
    if (buf.size() < n) buf.resize(n);
    if (n) {
        Status s = b.read(at, std::span(buf).first(n));
        if (!s.ok()) return reply_status(req, "read", s);
    }
    fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), n);
}

void op_write(fuse_req_t req, fuse_ino_t /*ino*/, const char* data, size_t size, off_t off,
              fuse_file_info* fi) {
    Backend& b = *ctx(req).backend;
    const std::uint64_t dev = b.size_bytes(), at = static_cast<std::uint64_t>(off);
    if (at > dev || size > dev - at) {
        fuse_reply_err(req, ENOSPC);  // past the end of the device
        return;
    }
    const bool fua = (fi->flags & O_DSYNC) != 0;  // O_SYNC includes O_DSYNC's bit
    Status s = b.write(at, std::span(reinterpret_cast<const std::byte*>(data), size), fua);
    if (!s.ok()) return reply_status(req, "write", s);
    fuse_reply_write(req, size);
}

void op_fsync(fuse_req_t req, fuse_ino_t /*ino*/, int /*datasync*/, fuse_file_info* /*fi*/) {
    reply_status(req, "fsync", ctx(req).backend->flush());
}

void op_flush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
    fuse_reply_err(req, 0);
}

fuse_lowlevel_ops make_ops() {
    fuse_lowlevel_ops ops{};
    ops.init = op_init;
    ops.lookup = op_lookup;
    ops.getattr = op_getattr;
    ops.setattr = op_setattr;
    ops.readdir = op_readdir;
    ops.open = op_open;
    ops.read = op_read;
    ops.write = op_write;
    ops.fsync = op_fsync;
    ops.flush = op_flush;
    return ops;
}

// Owns the session and its mount; tears them down in the right order on every path.
class Session {
public:
    explicit Session(fuse_session* se) : se_(se) {}
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() {
        g_session = nullptr;
        if (mounted_) fuse_session_unmount(se_);
        fuse_session_destroy(se_);
    }
    fuse_session* get() const { return se_; }
    bool mounted_ = false;

private:
    fuse_session* se_;
};

}  // namespace

void install_stop_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &sa, nullptr);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ::sigaction(SIGPIPE, &ign, nullptr);
}

bool stop_requested() { return g_stop_signal.load() != 0; }

Status serve_fuse(Backend& backend, const FuseOptions& options) {
    struct stat mp {};
    if (::stat(options.mountpoint.c_str(), &mp) != 0)
        return {Errc::invalid_argument,
                "mount point '" + options.mountpoint + "': " + std::strerror(errno)};
    if (!S_ISDIR(mp.st_mode))
        return {Errc::invalid_argument,
                "mount point '" + options.mountpoint + "': expected a directory"};

    std::string mount_opts = "fsname=pcache,subtype=pcache,default_permissions";
    if (options.allow_other) mount_opts += ",allow_other";
    std::vector<std::string> argv_s = {"pcache", "-o", mount_opts};
    if (options.debug) argv_s.push_back("-d");
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

    Context c{&backend, options.file_name, ::getuid(), ::getgid()};
    const fuse_lowlevel_ops ops = make_ops();
    fuse_session* raw = fuse_session_new(&args, &ops, sizeof ops, &c);
    if (!raw) return {Errc::io, "fuse_session_new failed (see libfuse's message above)"};
    Session se(raw);
    g_session = se.get();
    if (stop_requested()) return {};
    if (fuse_session_mount(se.get(), options.mountpoint.c_str()) != 0)
        return {Errc::io, "cannot mount FUSE on '" + options.mountpoint +
                              "' (is /dev/fuse there, and are you root or in the fuse group?)"};
    se.mounted_ = true;
    std::fprintf(stderr, "pcache serve: serving %s as %s/%s\n", backend.describe().c_str(),
                 options.mountpoint.c_str(), options.file_name.c_str());

    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, options.max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, options.max_threads);
    const int rc = fuse_session_loop_mt(se.get(), cfg);
    fuse_loop_cfg_destroy(cfg);
    // rc is the signal number after SIGINT/SIGTERM/SIGHUP: a requested, clean stop.
    if (rc < 0) return {Errc::io, std::string("FUSE loop failed: ") + std::strerror(-rc)};
    return {};
}

}  // namespace pcache::serve
