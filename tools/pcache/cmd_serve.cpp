// pcache serve: exposes a pcache device (pmem file + backing device) to unmodified programs.
//
//   pcache serve --pmem P --backing B --fuse DIR     FUSE file DIR/pcache (losetup it)
//   pcache serve --pmem P --backing B --nbd SOCK     exec nbdkit with the pcache plugin
//   pcache serve --memory 256M --fuse DIR            the FUSE front end over memory (ceiling)
//
// The FUSE front end runs in this process: background writeback/GC threads, SIGINT/SIGTERM/
// SIGHUP end the loop, and the cache is closed (every kset persisted, backing flushed) before
// the exit. After a SIGKILL the next start replays the key log: every write acknowledged before
// the last completed flush (fsync) or with FUA is there. The NBD front end is the nbdkit plugin
// (tools/nbdkit/); this command only builds its command line. See docs/serve.md.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "fuse/fuse_frontend.hpp"
#include "pcache/cli.hpp"
#include "pcache/commands.hpp"
#include "serve/cache_backend.hpp"
#include "serve/serve_args.hpp"

namespace {

namespace po = boost::program_options;
using namespace pcache;
using namespace pcache::tool;

// Integer options, checked by the one typed parser (cli.hpp) when the command line is parsed.
struct Numbers {
    std::optional<unsigned> ksets, threads, nbd_port, writeback_qd;
};
Numbers g_num;

constexpr const char* kSynopsis =
    "--pmem FILE --backing FILE (--fuse DIR | --nbd SOCKET | --nbd-port PORT) [options]\n"
    "       pcache serve --memory SIZE --fuse DIR   (front-end ceiling, nothing persistent)";

int say(const std::string& msg, int code) {
    std::fprintf(stderr, "pcache serve: %s\n", msg.c_str());
    return code;
}
int fail(const Status& s) { return say(s.message(), exit_for(s.code())); }
int usage(const std::string& msg) { return say(msg + " (see pcache serve --help)", kExitUsage); }

// Where the nbdkit plugin is: $PCACHE_NBDKIT_PLUGIN, next to this executable (build tree), or
// the installed plugin directory.
std::string find_plugin() {
    if (const char* env = std::getenv("PCACHE_NBDKIT_PLUGIN")) return env;
    std::vector<char> self(4096);
    const ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size() - 1);
    if (n > 0) {
        std::string dir(self.data(), static_cast<std::size_t>(n));
        dir.resize(dir.rfind('/') + 1);
        const std::string here = dir + "nbdkit-pcache-plugin.so";
        if (::access(here.c_str(), R_OK) == 0) return here;
    }
#ifdef PCACHE_NBDKIT_PLUGIN_INSTALLED
    return PCACHE_NBDKIT_PLUGIN_INSTALLED;
#else
    return "pcache";  // nbdkit's own plugin directory
#endif
}

// nbdkit cannot listen on a path that exists: a socket left by a server that died (SIGKILL,
// power loss) would stop every restart with "Address already in use". A socket nobody listens
// on (connect: ECONNREFUSED) is removed; a live one, or anything that is not a socket, is
// refused and left alone.
int clear_stale_socket(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return kExitOk;
        return say("--nbd '" + path + "': " + std::strerror(errno), kExitIo);
    }
    if (!S_ISSOCK(st.st_mode))
        return say("--nbd '" + path + "' exists and is not a socket: refusing to replace it",
                   kExitProblems);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        return usage("--nbd '" + path + "': longer than a Unix socket path can be (" +
                     std::to_string(sizeof addr.sun_path - 1) + " bytes)");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return say(std::string("socket: ") + std::strerror(errno), kExitIo);
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    const int err = errno;
    ::close(fd);
    if (rc == 0)
        return say("--nbd '" + path + "': a server is listening on it already (is this cache " +
                       "served twice?); stop it or choose another socket",
                   kExitProblems);
    if (err != ECONNREFUSED)
        return say("--nbd '" + path +
                       "': cannot tell whether a server listens on it: " + std::strerror(err),
                   kExitIo);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return say("--nbd '" + path + "': cannot remove the stale socket: " + std::strerror(errno),
                   kExitIo);
    say("removed the stale socket '" + path + "' (no server listened on it)", 0);
    return kExitOk;
}

int exec_nbdkit(const po::variables_map& vm) {
    std::vector<std::string> a = {"nbdkit", "--foreground"};
    if (vm.count("nbd"))
        a.insert(a.end(), {"--unix", vm["nbd"].as<std::string>()});
    else
        a.insert(a.end(), {"--ipaddr", vm["nbd-address"].as<std::string>(), "--port",
                           std::to_string(*g_num.nbd_port)});
    if (g_num.threads) a.insert(a.end(), {"--threads", std::to_string(*g_num.threads)});
    a.push_back(find_plugin());
    a.push_back("pmem=" + vm["pmem"].as<std::string>());
    a.push_back("backing=" + vm["backing"].as<std::string>());
    if (vm.count("data-crc")) a.push_back("data_crc=" + vm["data-crc"].as<std::string>());
    if (vm.count("format")) a.push_back("format=on");
    if (vm.count("force-backing")) a.push_back("force_backing=on");
    a.push_back("segment_size=" + vm["segment-size"].as<std::string>());
    if (g_num.ksets) a.push_back("ksets=" + std::to_string(*g_num.ksets));
    if (g_num.writeback_qd) a.push_back("writeback_qd=" + std::to_string(*g_num.writeback_qd));
    if (vm.count("nbd")) {
        a.push_back("socket=" + vm["nbd"].as<std::string>());
        a.push_back("announce=nbd+unix:///?socket=" + vm["nbd"].as<std::string>());
    } else {
        const std::string& ip = vm["nbd-address"].as<std::string>();
        const std::string host = ip.find(':') == std::string::npos ? ip : "[" + ip + "]";
        a.push_back("announce=nbd://" + host + ":" + std::to_string(*g_num.nbd_port));
    }
    std::string line;
    for (const auto& s : a) line += (line.empty() ? "" : " ") + s;
    if (vm.count("dry-run")) {
        std::printf("%s\n", line.c_str());
        return kExitOk;
    }
    if (vm.count("nbd"))
        if (const int rc = clear_stale_socket(vm["nbd"].as<std::string>()); rc != kExitOk)
            return rc;
    std::fprintf(stderr, "pcache serve: exec %s\n", line.c_str());
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execvp("nbdkit", argv.data());
    return say(std::string("cannot run nbdkit: ") + std::strerror(errno) +
                   " (install the nbdkit package, or run the line above yourself)",
               kExitIo);
}

Result<serve::ServeOptions> serve_options(const po::variables_map& vm) {
    serve::ServeOptions o;
    o.pmem_path = vm["pmem"].as<std::string>();
    o.backing_path = vm["backing"].as<std::string>();
    o.format = vm.count("format") > 0;
    o.force_backing = vm.count("force-backing") > 0;
    if (vm.count("data-crc")) {
        auto c = serve::parse_switch(vm["data-crc"].as<std::string>(), "--data-crc");
        if (!c.ok()) return c.status();
        o.data_crc = *c;
    }
    auto seg = serve::parse_size(vm["segment-size"].as<std::string>(), "--segment-size");
    if (!seg.ok()) return seg.status();
    o.geometry = format::Geometry{*seg};
    PCACHE_TRY(o.geometry.validate());
    if (g_num.ksets) o.n_ksets = *g_num.ksets;
    if (g_num.writeback_qd) o.writeback_queue_depth = *g_num.writeback_qd;
    return o;
}

serve::FuseOptions fuse_options(const po::variables_map& vm) {
    serve::FuseOptions f;
    f.mountpoint = vm["fuse"].as<std::string>();
    f.file_name = vm["name"].as<std::string>();
    if (g_num.threads) f.max_threads = *g_num.threads;
    f.allow_other = vm.count("allow-other") > 0;
    f.debug = vm.count("debug") > 0;
    return f;
}

int serve_memory(const po::variables_map& vm) {
    auto size = serve::parse_size(vm["memory"].as<std::string>(), "--memory");
    if (!size.ok()) return usage(size.status().message());
    if (*size == 0 || *size % 512)
        return usage("--memory: expected a non-zero multiple of 512 bytes");
    const auto ram = static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
                     static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    if (*size > ram / 2)
        return usage("--memory " + vm["memory"].as<std::string>() + ": more than half of this " +
                     "machine's memory (" + human_bytes(double(ram)) + ")");
    serve::MemoryBackend mem(*size);
    Status s = serve::serve_fuse(mem, fuse_options(vm));
    return s.ok() ? kExitOk : fail(s);
}

int serve_cache_fuse(const po::variables_map& vm) {
    auto o = serve_options(vm);
    if (!o.ok()) return usage(o.status().message());
    auto b = serve::CacheBackend::open(*o);
    if (!b.ok()) return fail(b.status());
    serve::CacheBackend& backend = **b;
    if (backend.formatted_now()) say("formatted a new cache on '" + o->pmem_path + "'", 0);
    backend.start();
    Status served = serve::serve_fuse(backend, fuse_options(vm));
    Status closed = backend.close();  // after the loop: no request is in flight any more
    if (!served.ok()) return fail(served);
    // A failed shutdown is exit 1 whatever the error (docs/serve.md), as the NBD front end's.
    if (!closed.ok()) return say("clean shutdown failed: " + closed.message(), kExitProblems);
    say("clean shutdown: " + backend.status_line(), 0);
    return kExitOk;
}

int run_serve(const std::vector<std::string>& args) {
    po::options_description opts("pcache serve options");
    opts.add_options()("help,h", "print this help")("pmem", po::value<std::string>(),
                                                    "cache device: pmem file or device-DAX")(
        "backing", po::value<std::string>(),
        "backing device: a path, nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=PATH or "
        "rbd:POOL/IMAGE[:conf=PATH][:id=USER]")("fuse", po::value<std::string>(),
                                                "serve as a FUSE file DIR/NAME (DIR must exist)")(
        "nbd", po::value<std::string>(), "serve over NBD on this Unix socket (runs nbdkit)")(
        "nbd-port", integer(&g_num.nbd_port, 1u, 65535u, "nbd-port"),
        "serve over NBD on this TCP port 1..65535 (runs nbdkit)")(
        "nbd-address", po::value<std::string>()->default_value("127.0.0.1"),
        "with --nbd-port: the address to listen on; NBD has no authentication, so the default "
        "is loopback only (0.0.0.0 or :: for every interface)")(
        "format", "format the cache device if it holds no cache (never overwrites one)")(
        "force-backing",
        "use a backing that holds a pcache superblock (or, with --format on a blank pmem, any "
        "signature libblkid recognises)")(
        "data-crc", po::value<std::string>(),
        "on|off: per-key data CRC for a new cache "
        "(an existing cache keeps its own; a mismatch is refused)")(
        "segment-size", po::value<std::string>()->default_value("16M"),
        "segment size (16M: kernel)")("ksets", integer(&g_num.ksets, 1u, 1024u, "ksets"),
                                      "kset buffers 1..1024 (default: one per CPU)")(
        "writeback-qd", integer(&g_num.writeback_qd, 1u, 1024u, "writeback-qd"),
        "writes in flight during writeback 1..1024 (default 32)")(
        "threads", integer(&g_num.threads, 1u, 1024u, "threads"),
        "front-end worker threads 1..1024 (default: FUSE 16, nbdkit its own)")(
        "name", po::value<std::string>()->default_value("pcache"), "FUSE: the file's name")(
        "allow-other", "FUSE: let other users open the file")(
        "debug", "FUSE: trace every request on stderr")(
        "memory", po::value<std::string>(), "serve SIZE bytes of memory instead of a cache")(
        "dry-run", "NBD: print the nbdkit command line instead of running it");
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(args).options(opts).positional({}).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        return usage(e.what());
    }
    if (vm.count("help")) {
        std::printf("usage: pcache serve %s\n\n", kSynopsis);
        std::ostringstream text;
        opts.print(text);
        std::fputs(text.str().c_str(), stdout);
        return kExitOk;
    }
    const int fronts = int(vm.count("fuse")) + int(vm.count("nbd")) + int(vm.count("nbd-port"));
    if (fronts != 1) return usage("expected exactly one of --fuse, --nbd, --nbd-port");
    if (!vm["nbd-address"].defaulted() && !vm.count("nbd-port"))
        return usage("--nbd-address goes with --nbd-port");
    if (vm.count("memory")) {
        if (!vm.count("fuse"))
            return usage("--memory works with --fuse (for NBD use nbdkit's memory plugin)");
        if (vm.count("pmem") || vm.count("backing"))
            return usage("--memory replaces --pmem and --backing");
        serve::install_stop_handlers();
        return serve_memory(vm);
    }
    if (!vm.count("pmem") || !vm.count("backing"))
        return usage("--pmem and --backing are required");
    if (vm.count("fuse")) {
        serve::install_stop_handlers();
        return serve_cache_fuse(vm);
    }
    auto o = serve_options(vm);  // validate here: nbdkit's own messages are less direct
    if (!o.ok()) return usage(o.status().message());
    return exec_nbdkit(vm);
}

}  // namespace

PCACHE_COMMAND(serve, "serve a cache to unmodified programs: a FUSE file or an NBD export",
               run_serve);
