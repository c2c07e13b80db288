// nbdkit-pcache-plugin.so: a pcache device as an NBD export.
//
//   nbdkit -U SOCK ./nbdkit-pcache-plugin.so pmem=FILE backing=SPEC [data_crc=on|off]
//          [format=on] [segment_size=16M] [ksets=N] [writeback_qd=N]
// SPEC: a path, an NBD URI or rbd:POOL/IMAGE (pcache/blockdev/backing.hpp).
//
// Mapping: NBD_CMD_READ/WRITE -> backend read/write (NBD_CMD_FLAG_FUA -> a FUA write, served
// natively), NBD_CMD_FLUSH -> backend flush (every kset buffer closed), WRITE_ZEROES -> nbdkit's
// emulation by writes. can_multi_conn is true: a flush on any connection persists the writes
// acknowledged on all of them (the cache has one set of kset buffers).
// Lifecycle: the devices are opened in get_ready (errors end nbdkit before it listens), the
// background threads start in after_fork (nbdkit may daemonise in between), and cleanup stops
// them and closes the cache, which nbdkit runs on SIGINT/SIGTERM after the last connection.
// After a SIGKILL the next start replays the key log. Thread model: parallel.
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>

#include "serve/cache_backend.hpp"
#include "serve/serve_args.hpp"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

namespace {

using pcache::Status;
using pcache::serve::CacheBackend;

pcache::serve::ServeOptions g_options;
std::string g_segment_size = "16M";
std::unique_ptr<CacheBackend> g_backend;
std::string g_announce;  // announce=: where clients connect (pcache serve passes it)
std::string g_socket;    // socket=: the Unix socket to remove at exit (pcache serve passes it)

int error_out(const Status& s) {
    nbdkit_error("pcache: %s", s.to_string().c_str());
    nbdkit_set_error(s.code() == pcache::Errc::invalid_argument ? EINVAL : EIO);
    return -1;
}

int config(const char* key, const char* value) {
    const std::string k = key, v = value;
    if (k == "pmem")
        g_options.pmem_path = v;
    else if (k == "backing")
        g_options.backing_path = v;
    else if (k == "segment_size")
        g_segment_size = v;
    else if (k == "announce")
        g_announce = v;
    else if (k == "socket")
        g_socket = v;
    else if (k == "data_crc" || k == "format" || k == "force_backing") {
        auto b = pcache::serve::parse_switch(v, key);
        if (!b.ok()) return error_out(b.status());
        if (k == "format")
            g_options.format = *b;
        else if (k == "force_backing")
            g_options.force_backing = *b;
        else
            g_options.data_crc = *b;
    } else if (k == "ksets") {
        auto n = pcache::serve::parse_count(v, key, 1, 1024);
        if (!n.ok()) return error_out(n.status());
        g_options.n_ksets = *n;
    } else if (k == "writeback_qd") {
        auto n = pcache::serve::parse_count(v, key, 1, 1024);
        if (!n.ok()) return error_out(n.status());
        g_options.writeback_queue_depth = *n;
    } else {
        nbdkit_error(
            "pcache: unknown parameter '%s' (expected pmem, backing, data_crc, format, "
            "force_backing, segment_size, ksets, writeback_qd, announce, socket)",
            key);
        return -1;
    }
    return 0;
}

int config_complete() {
    if (g_options.pmem_path.empty() || g_options.backing_path.empty()) {
        nbdkit_error("pcache: pmem=FILE and backing=FILE are required");
        return -1;
    }
    auto seg = pcache::serve::parse_size(g_segment_size, "segment_size");
    if (!seg.ok()) return error_out(seg.status());
    g_options.geometry = pcache::format::Geometry{*seg};
    if (Status s = g_options.geometry.validate(); !s.ok()) return error_out(s);
    return 0;
}

int open_backend() {
    auto b = CacheBackend::open(g_options);
    if (!b.ok()) return error_out(b.status());
    g_backend = std::move(*b);
    // The same lines as the FUSE front end of pcache serve prints.
    if (g_backend->formatted_now())
        std::fprintf(stderr, "pcache serve: formatted a new cache on '%s'\n",
                     g_options.pmem_path.c_str());
    return 0;
}

// librados starts threads when it connects, and a fork keeps none of them: an RBD backing
// device is opened after nbdkit's fork (an error then still ends nbdkit, before it serves).
bool opens_after_fork() { return g_options.backing_path.rfind("rbd:", 0) == 0; }

int get_ready() { return opens_after_fork() ? 0 : open_backend(); }

int after_fork() {
    if (opens_after_fork())
        if (open_backend() != 0) return -1;
    g_backend->start();
    if (!g_announce.empty())
        std::fprintf(stderr, "pcache serve: serving %s as %s\n", g_backend->describe().c_str(),
                     g_announce.c_str());
    return 0;
}

void cleanup() {
    if (!g_backend) return;
    const Status closed = g_backend->close();
    if (!closed.ok())
        nbdkit_error("pcache: clean shutdown failed: %s", closed.to_string().c_str());
    else
        std::fprintf(stderr, "pcache serve: clean shutdown: %s\n",
                     g_backend->status_line().c_str());
    g_backend.reset();
    // nbdkit leaves its Unix socket behind; a stale one would make the next start fail.
    if (!g_socket.empty()) ::unlink(g_socket.c_str());
    // nbdkit exits 0 whatever cleanup found, and a plugin has no way to change that: a failed
    // shutdown (writeback still failing, a failed close) ends the process here with the tool's
    // exit code 1 (docs/serve.md), so scripts and service managers see it. Everything a later
    // start needs is on the devices already; nbdkit's own remaining teardown frees memory only
    // (pcache serve gives it no pid file).
    if (!closed.ok()) {
        std::fflush(stderr);
        ::_exit(1);
    }
}

void* open_handle(int /*readonly*/) { return g_backend.get(); }

int64_t get_size(void* h) {
    return static_cast<int64_t>(static_cast<CacheBackend*>(h)->size_bytes());
}
int can_flush(void*) { return 1; }
int can_fua(void*) { return NBDKIT_FUA_NATIVE; }
int can_multi_conn(void*) { return 1; }

int block_size(void*, uint32_t* minimum, uint32_t* preferred, uint32_t* maximum) {
    *minimum = 1;  // unaligned requests are widened to sectors by the backend
    *preferred = 4096;
    *maximum = 0xffffffff;
    return 0;
}

int plugin_pread(void* h, void* buf, uint32_t count, uint64_t offset, uint32_t /*flags*/) {
    Status s =
        static_cast<CacheBackend*>(h)->read(offset, std::span(static_cast<std::byte*>(buf), count));
    return s.ok() ? 0 : error_out(s);
}

int plugin_pwrite(void* h, const void* buf, uint32_t count, uint64_t offset, uint32_t flags) {
    const bool fua = (flags & NBDKIT_FLAG_FUA) != 0;
    Status s = static_cast<CacheBackend*>(h)->write(
        offset, std::span(static_cast<const std::byte*>(buf), count), fua);
    return s.ok() ? 0 : error_out(s);
}

int plugin_flush(void* h, uint32_t /*flags*/) {
    Status s = static_cast<CacheBackend*>(h)->flush();
    return s.ok() ? 0 : error_out(s);
}

nbdkit_plugin make_plugin() {
    nbdkit_plugin p{};
    p.name = "pcache";
    p.longname = "pcache: dm-pcache persistent-memory write-back cache";
    p.version = "0.1.0";
    p.description = "Serves a pcache device (pmem file + backing device) over NBD";
    p.config = config;
    p.config_complete = config_complete;
    p.config_help =
        "pmem=<FILE>          (required) cache device: pmem file or device-DAX\n"
        "backing=<SPEC>       (required) file, block device, NBD URI or rbd:POOL/IMAGE\n"
        "data_crc=on|off      per-key data CRC of a new cache (must match an existing one)\n"
        "format=on            format the cache device if it holds no cache\n"
        "segment_size=<SIZE>  segment size (16M, the kernel's, by default)\n"
        "ksets=<N>            kset buffers (default: one per CPU)\n"
        "writeback_qd=<N>     writes in flight during writeback (default 32)\n"
        "force_backing=on     use a backing that holds a pcache superblock or a signature\n"
        "announce=<TEXT>      print 'serving ... as TEXT' once ready (pcache serve sets it)\n"
        "socket=<PATH>        remove this Unix socket at exit (pcache serve sets it)";
    p.magic_config_key = "pmem";
    p.get_ready = get_ready;
    p.after_fork = after_fork;
    p.cleanup = cleanup;
    p.open = open_handle;
    p.get_size = get_size;
    p.can_flush = can_flush;
    p.can_fua = can_fua;
    p.can_multi_conn = can_multi_conn;
    p.block_size = block_size;
    p.pread = plugin_pread;
    p.pwrite = plugin_pwrite;
    p.flush = plugin_flush;
    return p;
}

nbdkit_plugin plugin = make_plugin();

}  // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
