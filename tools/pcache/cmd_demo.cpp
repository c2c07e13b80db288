// pcache demo: the built-in default job (the README's first command).
//
// Creates a 1 GiB sparse pmem file (kernel geometry) and a 256 MiB sparse backing file under
// --dir (/dev/shm), opens the cache through Pmem2Device + FileBlockDevice, and runs a small
// verified workload against an in-memory model: random writes, read back, flush, reopen (replay)
// and verify, write back until clean and verify the backing file itself. Prints the status line
// and the counters; removes its files unless --keep.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "pcache/engine.hpp"
#include "pcache/runtime.hpp"

namespace pcache::tool {
namespace {

constexpr std::uint64_t kPmemBytes = 1ull << 30;
constexpr std::uint64_t kBackingBytes = 256ull << 20;
constexpr std::uint64_t kRegionBytes = 32ull << 20;  // the part the workload writes and checks
constexpr std::uint64_t kFreeBytesMin = 256ull
                                        << 20;  // pmem pages touched + backing written, with margin
constexpr unsigned kWrites = 1500;
constexpr std::uint64_t kSeed = 42;

// Compares the whole region, read through `read(off, span)`, with the model.
template <class ReadFn>
Status verify(const char* stage, const std::vector<std::byte>& model, ReadFn&& read) {
    std::vector<std::byte> buf(1 << 20);
    for (std::uint64_t off = 0; off < model.size(); off += buf.size()) {
        PCACHE_TRY(read(off, std::span<std::byte>(buf)).with_context(stage));
        if (std::memcmp(buf.data(), model.data() + off, buf.size()) != 0) {
            std::uint64_t i = 0;
            while (buf[i] == model[off + i]) ++i;
            return {Errc::corrupt, std::string(stage) + ": byte " + std::to_string(off + i) +
                                       " differs from what was written"};
        }
    }
    return {};
}

Status workload(Runtime<RealCache>& rt, RealCache& cache, std::vector<std::byte>& model) {
    std::mt19937_64 rng(kSeed);
    std::vector<std::byte> data;
    std::uint64_t bytes = 0;
    for (unsigned i = 0; i < kWrites; ++i) {
        const std::uint64_t len = 4096 * (1 + rng() % 16);
        const std::uint64_t off = 4096 * (rng() % ((kRegionBytes - len) / 4096 + 1));
        data.resize(len);
        for (auto& b : data) b = static_cast<std::byte>(rng());
        PCACHE_TRY(rt.write_blocking(off, data, {.fua = i % 100 == 99}).status);
        std::memcpy(model.data() + off, data.data(), len);
        bytes += len;
        if (i % 250 == 249) PCACHE_TRY(rt.flush_blocking());
    }
    say("demo", "wrote " + std::to_string(kWrites) + " extents, " + human_bytes(double(bytes)) +
                    " (seed " + std::to_string(kSeed) + ")");
    PCACHE_TRY(verify("read back", model,
                      [&](std::uint64_t o, std::span<std::byte> b) { return cache.read(o, b); }));
    say("demo", "read back " + human_bytes(double(kRegionBytes)) + ": matches");
    return rt.flush_blocking();
}

Status create_sparse(const std::string& path, std::uint64_t bytes) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return {Errc::io, "cannot create '" + path + "': " + std::strerror(errno)};
    const int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
    const int err = errno;
    ::close(fd);
    if (rc != 0)
        return {Errc::io, "cannot size '" + path + "' to " + std::to_string(bytes) +
                              " B: " + std::strerror(err)};
    return {};
}

// The counters of both opens, side by side: the workload the user just watched (first open:
// writes, hits, ksets) and the reopen (replay, verify, writeback until clean).
void print_counters(const CacheCounters& run, const CacheCounters& reopen) {
    std::vector<std::pair<std::string, std::uint64_t>> first;
    for_each_counter(run, [&](const char* name, std::uint64_t v) { first.emplace_back(name, v); });
    std::printf("%-26s %14s %18s\n", "counter", "workload", "reopen+writeback");
    std::size_t i = 0;
    for_each_counter(reopen, [&](const char* name, std::uint64_t v) {
        const std::uint64_t w = i < first.size() ? first[i].second : 0;
        ++i;
        std::printf("%-26s %14llu %18llu\n", name, static_cast<unsigned long long>(w),
                    static_cast<unsigned long long>(v));
    });
}

Status run_demo_files(const std::string& pmem_path, const std::string& backing_path) {
    PCACHE_TRY(create_sparse(pmem_path, kPmemBytes));
    PCACHE_TRY(create_sparse(backing_path, kBackingBytes));
    std::vector<std::byte> model(kRegionBytes);
    CacheCounters run_counters;
    CacheOptions opts;  // kernel geometry, data_crc off, like a default dm table line
    {
        LiveCache live;
        if (open_live("demo", pmem_path, backing_path, opts, live, OpenMode::format) >= 0)
            return {Errc::io, "formatting the new cache failed"};
        say("demo", "formatted " + pmem_path + ": " + live.cache->status_line());
        Runtime<RealCache> rt(*live.cache);
        PCACHE_TRY(rt.start());
        PCACHE_TRY(workload(rt, *live.cache, model));
        rt.stop();
        PCACHE_TRY(live.cache->close());
        run_counters = live.cache->counters();
    }
    LiveCache live;
    if (open_live("demo", pmem_path, backing_path, opts, live) >= 0)
        return {Errc::io, "reopening the cache failed"};
    RealCache& cache = *live.cache;
    say("demo", "reopened: replayed " + std::to_string(cache.counters().replay_keys) + " keys, " +
                    human_bytes(double(cache.dirty_bytes())) + " dirty");
    PCACHE_TRY(verify("after reopen", model,
                      [&](std::uint64_t o, std::span<std::byte> b) { return cache.read(o, b); }));
    {
        Runtime<RealCache> rt(cache);
        PCACHE_TRY(rt.start());
        PCACHE_TRY(rt.flush_all());
        rt.stop();
        PCACHE_TRY(rt.last_error());
    }
    if (!cache.is_clean()) return {Errc::corrupt, "flush_all returned but the cache is not clean"};
    PCACHE_TRY(cache.close());
    PCACHE_TRY(
        verify("backing file after writeback", model,
               [&](std::uint64_t o, std::span<std::byte> b) { return live.backing->read(o, b); }));
    say("demo", "written back until clean; the backing file matches");
    std::printf("%s\n", cache.status_line().c_str());
    print_counters(run_counters, cache.counters());
    return {};
}

int run_demo(const std::vector<std::string>& args) {
    const char* cmd = "demo";
    po::options_description opts("options");
    opts.add_options()("dir", po::value<std::string>()->default_value("/dev/shm"),
                       "directory for the pmem and backing files (tmpfs: /dev/shm)")(
        "keep", "keep the files afterwards (their paths are printed)");
    po::variables_map vm;
    if (int rc = parse_args(cmd, "[--dir DIR] [--keep]", opts, nullptr, args, vm); rc >= 0)
        return rc;
    const std::string dir = vm["dir"].as<std::string>();
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        say(cmd, "directory '" + dir +
                     "' does not exist (pass --dir DIR, a tmpfs such as /dev/shm is best)");
        return kExitIo;
    }
    struct statvfs vfs {};
    if (::statvfs(dir.c_str(), &vfs) != 0)
        return fail(cmd, {Errc::io, "statvfs '" + dir + "': " + std::strerror(errno)});
    const std::uint64_t free_bytes = std::uint64_t(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < kFreeBytesMin) {
        say(cmd, "'" + dir + "' has " + human_bytes(double(free_bytes)) + " free, the demo needs " +
                     human_bytes(double(kFreeBytesMin)) + " (pass --dir DIR elsewhere)");
        return kExitProblems;
    }
    const std::string base = dir + "/pcache-demo-" + std::to_string(::getpid());
    const std::string pmem_path = base + ".pmem", backing_path = base + ".backing";
    Status s = run_demo_files(pmem_path, backing_path);
    if (vm.count("keep")) {
        say(cmd, "kept " + pmem_path + " and " + backing_path);
    } else {
        ::unlink(pmem_path.c_str());
        ::unlink(backing_path.c_str());
    }
    if (!s.ok()) return fail(cmd, s);
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(demo, "run the built-in demo: a verified workload on a cache under /dev/shm",
               pcache::tool::run_demo);
