// pcache format: creates a new, empty cache on a pmem file or device.
//
// Everything is decided before the first write, from a read-only inspection: a device that
// already holds a pcache cache, or anything else that is not blank, is refused unless --force,
// and then the dirty bytes that will be lost are reported. The new cache is written through
// Cache::format (with force_format when --force) and closed cleanly.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "pcache/engine.hpp"

namespace pcache::tool {
namespace {

// Dirty bytes of an existing cache, as text for the warning ("unknown (...)" if unreadable).
std::string dirty_text(const ImageFile& f, const inspect::Header& h) {
    if (!h.walkable()) return "an unknown amount of dirty data (its metadata is damaged)";
    auto log = inspect::walk_log(f, h, inspect::WalkOptions{}, [](const inspect::KsetEvent&) {});
    if (!log.ok()) return "an unknown amount of dirty data (" + log.status().message() + ")";
    const std::uint64_t n = log->dirty_bytes;
    std::string s = std::to_string(n) + " B" +
                    (n >= 1024 ? " (" + human_bytes(double(n)) + ")" : "") +
                    " of dirty data not yet written back";
    if (!log->problems.empty()) s = "at least " + s + " (the log is damaged)";
    return s;
}

// Read-only decision, for the diagnostics (Cache::format refuses the same devices without
// force_format). Returns -1 to go on, or an exit code.
int decide(const char* cmd, const std::string& path, const format::Geometry& geo, bool force) {
    auto f = ImageFile::open(path, "pmem");
    if (!f.ok()) return fail(cmd, f.status());
    if (f->size() < geo.device_bytes_min()) {
        say(cmd, "pmem '" + path + "' is " + std::to_string(f->size()) +
                     " B, smaller than the minimum of " + std::to_string(geo.device_bytes_min()) +
                     " B for " + (geo.is_kernel() ? "kernel geometry" : "this segment size"));
        return kExitProblems;
    }
    auto h = inspect::read_header(*f, geo);
    if (!h.ok()) return fail(cmd, h.status());
    switch (h->state) {
        case inspect::State::blank:
        case inspect::State::unfinished:
            return -1;
        case inspect::State::cache: {
            const std::string what = "pmem '" + path + "' holds a pcache cache (" +
                                     std::to_string(h->n_segs()) + " segments) with " +
                                     dirty_text(*f, *h);
            if (!force) {
                say(cmd, what + ": refusing to overwrite it (--force discards it)");
                return kExitProblems;
            }
            say(cmd, what + ": --force given, discarding it");
            return -1;
        }
        default:
            if (!force) {
                say(cmd, "pmem '" + path + "' is not blank and holds no pcache cache (" +
                             h->state_reason +
                             "): refusing to overwrite it (--force overwrites it)");
                return kExitProblems;
            }
            say(cmd, "pmem '" + path + "' holds no pcache cache (" + h->state_reason +
                         "): --force given, overwriting it");
            return -1;
    }
}

int run_format(const std::vector<std::string>& args) {
    const char* cmd = "format";
    po::options_description opts("options");
    opts.add_options()("pmem", po::value<std::string>()->required(),
                       "cache device: pmem file or device")(
        "backing", po::value<std::string>()->required(),
        "backing device (must exist): a path, nbd://HOST:PORT/EXPORT, "
        "nbd+unix:///EXPORT?socket=PATH or rbd:POOL/IMAGE")(
        "create-size-pmem", po::value<std::string>(),
        "create the pmem file with this size if it does not exist (e.g. 1G; allocated, not "
        "sparse)")("data-crc", "keep a CRC of every cached extent (data_crc true)")(
        "force", "overwrite an existing cache (losing its dirty data) or a non-blank device");
    add_force_backing_option(opts);
    add_geometry_option(opts);
    po::variables_map vm;
    if (int rc = parse_args(cmd,
                            "--pmem PATH --backing PATH [--create-size-pmem BYTES] [--data-crc] "
                            "[--segment-size BYTES] [--force]",
                            opts, nullptr, args, vm);
        rc >= 0)
        return rc;
    auto geo = geometry_from(vm);
    if (!geo.ok()) return usage_error(cmd, geo.status().message());
    const std::string pmem_path = vm["pmem"].as<std::string>(),
                      backing_path = vm["backing"].as<std::string>();
    std::uint64_t create_bytes = 0;
    if (vm.count("create-size-pmem")) {
        auto b = parse_bytes(vm["create-size-pmem"].as<std::string>(), "--create-size-pmem");
        if (!b.ok()) return usage_error(cmd, b.status().message());
        if (*b < geo->device_bytes_min() || *b % 4096 != 0)
            return usage_error(cmd, "--create-size-pmem " + std::to_string(*b) +
                                        ": expected a multiple of 4096 of at least " +
                                        std::to_string(geo->device_bytes_min()) + " B");
        create_bytes = *b;
    }
    // Backing first: it must exist and be usable before anything is created or written.
    auto backing = open_backing(backing_path);
    if (!backing.ok()) return fail(cmd, backing.status());
    if ((*backing)->size() == 0 || (*backing)->size() % format::kSectorBytes != 0) {
        say(cmd, "backing '" + backing_path + "' is " + std::to_string((*backing)->size()) +
                     " B: expected a non-zero multiple of 512 B");
        return kExitProblems;
    }
    struct stat st {};
    const bool exists = ::stat(pmem_path.c_str(), &st) == 0;
    const bool force = vm.count("force") > 0;
    serve::GuardOptions go;
    go.new_cache = true;
    go.force_backing = vm.count("force-backing") > 0;
    go.force_pmem = force;
    serve::DeviceGuard locks;  // held until the cache is closed
    if (exists) {
        if (create_bytes) say(cmd, "pmem '" + pmem_path + "' exists: --create-size-pmem ignored");
        if (int rc = guard(cmd, pmem_path, backing_path, go, locks); rc >= 0) return rc;
        if (int rc = decide(cmd, pmem_path, *geo, force); rc >= 0) return rc;
    } else if (!create_bytes) {
        say(cmd,
            "pmem '" + pmem_path + "': No such file or directory (--create-size-pmem creates it)");
        return kExitIo;
    }
    auto pmem = Pmem2Device::open(pmem_path, Pmem2OpenOptions{!exists, exists ? 0 : create_bytes});
    if (!pmem.ok()) return fail(cmd, pmem.status());
    if (!exists) {
        if (int rc = guard(cmd, pmem_path, backing_path, go, locks); rc >= 0) {
            ::unlink(pmem_path.c_str());
            return rc;
        }
    }
    auto cleanup_fail = [&](const Status& s) {
        if (!exists) ::unlink(pmem_path.c_str());
        return fail(cmd, s);
    };
    CacheOptions copts;
    copts.geometry = *geo;
    copts.data_crc = vm.count("data-crc") > 0;
    copts.force_format = force;
    copts.log = [cmd](const std::string& line) { say(cmd, line); };
    auto cache = RealCache::format(std::make_shared<Pmem2Device>(std::move(*pmem)),
                                   std::shared_ptr<BackingDevice>(std::move(*backing)), copts);
    if (!cache.ok()) return cleanup_fail(cache.status());
    if (Status s = (*cache)->close(); !s.ok()) return fail(cmd, s);
    std::printf("%s\n", (*cache)->status_line().c_str());
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(format, "create an empty cache (refuses to overwrite one unless --force)",
               pcache::tool::run_format);
