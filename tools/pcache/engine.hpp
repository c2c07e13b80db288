// Opening a live cache on real devices (Pmem2Device + a BackingDevice: file, NBD or RBD, see
// pcache/blockdev/backing.hpp) for the commands that operate on it (message, flush, import,
// export, demo). Cache::open never formats (a blank device is refused); the commands still
// read the image first (inspect_image.hpp) to say precisely what is wrong with one that is not
// a cache, and to take its geometry and data_crc setting.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "pcache/blockdev/backing.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/inspect_image.hpp"
#include "pcache/pmem/pmem2_device.hpp"
#include "serve/device_guard.hpp"

namespace pcache::tool {

using RealCache = Cache<Pmem2Device, BackingDevice>;

// The device locks and the cache, which owns its devices (shared with `pmem` and `backing`).
// The cache closes itself when destroyed (errors go to the command's diagnostics).
struct LiveCache {
    serve::DeviceGuard guard;  // first member: the locks outlive the devices and the cache
    std::shared_ptr<Pmem2Device> pmem;
    std::shared_ptr<BackingDevice> backing;
    std::unique_ptr<RealCache> cache;
};

enum class OpenMode { open, format };

// Opens the devices and the cache (Cache::open, or Cache::format for a new one). Returns -1 or
// an exit code after a diagnostic.
inline int open_live(const char* cmd, const std::string& pmem_path, const std::string& backing_path,
                     const CacheOptions& options, LiveCache& out, OpenMode mode = OpenMode::open) {
    auto p = Pmem2Device::open(pmem_path);
    if (!p.ok()) return fail(cmd, p.status());
    out.pmem = std::make_shared<Pmem2Device>(std::move(*p));
    BackingOpenOptions bo;
    bo.queue_depth = options.writeback_queue_depth;
    auto b = open_backing(backing_path, bo);
    if (!b.ok()) return fail(cmd, b.status());
    out.backing = std::shared_ptr<BackingDevice>(std::move(*b));
    CacheOptions opts = options;
    opts.clock_ns = [] {
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::steady_clock::now().time_since_epoch())
                                              .count());
    };
    const bool tty = ::isatty(STDERR_FILENO) == 1;
    if (tty && !opts.replay_progress)
        opts.replay_progress = [cmd](std::uint64_t ksets, std::uint64_t keys) {
            std::fprintf(stderr, "\rpcache %s: replaying the key log: %llu ksets, %llu keys   ",
                         cmd, static_cast<unsigned long long>(ksets),
                         static_cast<unsigned long long>(keys));
        };
    if (!opts.log) opts.log = [cmd](const std::string& line) { say(cmd, line); };
    auto c = mode == OpenMode::format ? RealCache::format(out.pmem, out.backing, opts)
                                      : RealCache::open(out.pmem, out.backing, opts);
    if (tty && c.ok() && (*c)->counters().replay_ksets >= 256) std::fputc('\n', stderr);
    if (!c.ok()) return fail(cmd, c.status());
    out.cache = std::move(*c);
    return -1;
}

// --force-backing, for the commands that load a cache.
inline void add_force_backing_option(po::options_description& opts) {
    opts.add_options()("force-backing",
                       "use a backing device that holds a pcache superblock (or, for a new cache, "
                       "any signature libblkid recognises)");
}

// Locks and checks the devices (serve/device_guard.hpp) for a command that loads a cache.
// Returns -1 or an exit code after a diagnostic.
inline int guard(const char* cmd, const std::string& pmem_path, const std::string& backing_path,
                 const serve::GuardOptions& o, serve::DeviceGuard& out) {
    auto g = serve::guard_devices(pmem_path, backing_path, o,
                                  [cmd](const std::string& line) { say(cmd, line); });
    if (!g.ok()) return fail(cmd, g.status());
    out = std::move(*g);
    return -1;
}

// For commands that operate on an existing cache: locks the devices, checks read-only that
// --pmem holds a loadable cache, then opens it with the image's own data_crc setting.
inline int open_existing(const char* cmd, const po::variables_map& vm, LiveCache& out,
                         std::uint32_t writeback_queue_depth = 32) {
    serve::GuardOptions go;
    go.force_backing = vm.count("force-backing") > 0;
    if (int rc = guard(cmd, vm["pmem"].as<std::string>(), vm["backing"].as<std::string>(), go,
                       out.guard);
        rc >= 0)
        return rc;
    Inspected img;
    if (int rc = open_and_inspect(cmd, vm, img); rc >= 0) return rc;
    if (int rc = require_loadable(cmd, img); rc >= 0) return rc;
    const inspect::Header& h = img.header;
    CacheOptions opts;
    opts.geometry = h.geometry;
    opts.data_crc = h.data_crc();
    opts.writeback_queue_depth = writeback_queue_depth;
    opts.log = [cmd](const std::string& line) { say(cmd, line); };  // lost dirty data
    img.pmem.reset();
    return open_live(cmd, vm["pmem"].as<std::string>(), vm["backing"].as<std::string>(), opts, out);
}

}  // namespace pcache::tool
