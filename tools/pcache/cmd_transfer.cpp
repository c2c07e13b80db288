// pcache export / pcache import: the logical device (the backing device as seen through the
// cache, dirty data included) to a file or stdout, and a file or stdin into the cache, like
// `rbd export` / `rbd import`. Both load the cache (locks, checks: engine.hpp); import writes
// through the cache with background writeback running (a full cache waits for room), then
// flushes so every imported byte is durable before the exit. A progress bar is drawn on stderr
// when it is a terminal.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "pcache/engine.hpp"
#include "pcache/runtime.hpp"

namespace pcache::tool {
namespace {

constexpr std::size_t kChunk = 1 << 20;

double rate_since(std::chrono::steady_clock::time_point start, std::uint64_t bytes) {
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return s > 0 ? double(bytes) / s : 0.0;
}

// Writes all of `buf` to `fd`; false with errno on failure.
bool write_all(int fd, const std::byte* p, std::size_t n) {
    while (n) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w, n -= static_cast<std::size_t>(w);
    }
    return true;
}

// Reads up to `n` bytes (fewer only at end of input); -1 with errno on failure.
ssize_t read_full(int fd, std::byte* p, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
        const ssize_t r = ::read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += static_cast<std::size_t>(r);
    }
    return static_cast<ssize_t>(got);
}

void add_transfer_options(po::options_description& opts) {
    add_image_options(opts, true);
    add_force_backing_option(opts);
}

int run_export(const std::vector<std::string>& args) {
    const char* cmd = "export";
    po::options_description opts("options");
    add_transfer_options(opts);
    opts.add_options()("output,o", po::value<std::string>()->required(),
                       "file to create with the device's bytes, or - for stdout")(
        "force", "overwrite the output file if it exists");
    po::variables_map vm;
    if (int rc =
            parse_args(cmd, "--pmem PATH --backing PATH --output FILE|-", opts, nullptr, args, vm);
        rc >= 0)
        return rc;
    const std::string out_path = vm["output"].as<std::string>();
    const bool to_stdout = out_path == "-";
    if (to_stdout && ::isatty(STDOUT_FILENO))
        return usage_error(cmd, "--output -: stdout is a terminal (redirect it to a file)");
    struct stat st {};
    if (!to_stdout && ::stat(out_path.c_str(), &st) == 0 && !vm.count("force")) {
        say(cmd, "output '" + out_path + "' exists: refusing to overwrite it (--force does)");
        return kExitProblems;
    }
    LiveCache live;
    if (int rc = open_existing(cmd, vm, live); rc >= 0) return rc;
    RealCache& cache = *live.cache;
    const int fd = to_stdout
                       ? STDOUT_FILENO
                       : ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        say(cmd, "output '" + out_path + "': " + std::strerror(errno));
        return kExitIo;
    }
    const std::uint64_t total = cache.backing_bytes();
    std::vector<std::byte> buf(kChunk);
    ProgressBar bar("export");
    const auto start = std::chrono::steady_clock::now();
    for (std::uint64_t off = 0; off < total;) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, total - off));
        if (Status s = cache.read(off, std::span(buf).first(n)); !s.ok()) return fail(cmd, s);
        if (!write_all(fd, buf.data(), n)) {
            say(cmd, "writing '" + out_path + "': " + std::strerror(errno));
            return kExitIo;
        }
        off += n;
        bar.update(total, total - off, rate_since(start, off));
    }
    if (!to_stdout && (::fsync(fd) != 0 || ::close(fd) != 0)) {
        say(cmd, "closing '" + out_path + "': " + std::strerror(errno));
        return kExitIo;
    }
    bar.finish();
    if (Status s = cache.close(); !s.ok()) return fail(cmd, s);
    say(cmd, "exported " + std::to_string(total) + " B (" + human_bytes(double(total)) + ")");
    return kExitOk;
}

int run_import(const std::vector<std::string>& args) {
    const char* cmd = "import";
    po::options_description opts("options");
    add_transfer_options(opts);
    opts.add_options()("input,i", po::value<std::string>()->required(),
                       "file whose bytes are written from offset 0, or - for stdin");
    po::variables_map vm;
    if (int rc =
            parse_args(cmd, "--pmem PATH --backing PATH --input FILE|-", opts, nullptr, args, vm);
        rc >= 0)
        return rc;
    const std::string in_path = vm["input"].as<std::string>();
    const bool from_stdin = in_path == "-";
    const int fd = from_stdin ? STDIN_FILENO : ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        say(cmd, "input '" + in_path + "': " + std::strerror(errno));
        return kExitIo;
    }
    std::uint64_t in_bytes = 0;  // known for regular files: checked before anything is written
    struct stat st {};
    if (!from_stdin && ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        in_bytes = static_cast<std::uint64_t>(st.st_size);
    {  // before the cache is loaded (loading writes cache_info)
        auto b = ImageFile::open(vm["backing"].as<std::string>(), "backing");
        if (b.ok() && in_bytes > b->size()) {
            say(cmd, "input '" + in_path + "' is " + std::to_string(in_bytes) +
                         " B, larger than the device (" + std::to_string(b->size()) +
                         " B): nothing was written");
            return kExitProblems;
        }
    }
    LiveCache live;
    if (int rc = open_existing(cmd, vm, live); rc >= 0) return rc;
    RealCache& cache = *live.cache;
    const std::uint64_t dev_bytes = cache.backing_bytes();
    std::vector<std::byte> buf(kChunk);
    std::uint64_t off = 0;
    Status s;
    {
        Runtime<RealCache> rt(cache);
        if (Status rs = rt.start(); !rs.ok()) return fail(cmd, rs);
        ProgressBar bar("import");
        const auto start = std::chrono::steady_clock::now();
        for (;;) {
            const ssize_t n = read_full(fd, buf.data(), buf.size());
            if (n < 0) {
                rt.stop();
                say(cmd, "reading '" + in_path + "': " + std::strerror(errno));
                return kExitIo;
            }
            if (n == 0) break;
            std::size_t len = static_cast<std::size_t>(n);
            if (off + len > dev_bytes) {
                s = Status(Errc::invalid_argument,
                           "input '" + in_path + "' is larger than the device (" +
                               std::to_string(dev_bytes) + " B): the first " + std::to_string(off) +
                               " B were imported");
                break;
            }
            if (len % format::kSectorBytes) {  // a partial last sector keeps the device's bytes
                const std::size_t whole = len / format::kSectorBytes * format::kSectorBytes;
                std::array<std::byte, format::kSectorBytes> sector{};
                s = cache.read(off + whole, sector);
                if (!s.ok()) break;
                std::memcpy(sector.data(), buf.data() + whole, len - whole);
                std::memcpy(buf.data() + whole, sector.data(), sector.size());
                len = whole + format::kSectorBytes;
            }
            s = rt.write_blocking(off, std::span(buf).first(len)).status;
            if (!s.ok()) break;
            off += static_cast<std::uint64_t>(n);
            bar.update(in_bytes ? in_bytes : off, in_bytes ? in_bytes - off : 0,
                       rate_since(start, off));
            if (static_cast<std::size_t>(n) < buf.size()) break;
        }
        if (s.ok()) s = rt.flush_blocking();
        rt.stop();
        if (s.ok()) s = rt.last_error();
    }
    if (!from_stdin) ::close(fd);
    if (!s.ok()) return fail(cmd, s);
    if (Status c = cache.close(); !c.ok()) return fail(cmd, c);
    say(cmd, "imported " + std::to_string(off) + " B (" + human_bytes(double(off)) +
                 "), durable in the cache (pcache flush writes it back)");
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(export, "copy the device, read through the cache, to a file or stdout",
               pcache::tool::run_export);
PCACHE_COMMAND(import, "copy a file or stdin into the device through the cache",
               pcache::tool::run_import);
