// pcache flush: writes every dirty byte back to the backing device, until the cache is clean.
// Background writeback and GC run on the Runtime's threads meanwhile; a progress bar (bytes
// left, rate, ETA) is drawn on stderr when it is a terminal. Prints the final status line.
#include <chrono>
#include <cstdio>

#include "pcache/engine.hpp"
#include "pcache/runtime.hpp"

namespace pcache::tool {
namespace {

int run_flush(const std::vector<std::string>& args) {
    const char* cmd = "flush";
    po::options_description opts("options");
    add_image_options(opts, true);
    add_force_backing_option(opts);
    po::variables_map vm;
    if (int rc = parse_args(cmd, "--pmem PATH --backing PATH [--segment-size BYTES]", opts, nullptr,
                            args, vm);
        rc >= 0)
        return rc;
    LiveCache live;
    if (int rc = open_existing(cmd, vm, live); rc >= 0) return rc;
    RealCache& cache = *live.cache;
    const std::uint64_t total = cache.dirty_bytes();
    const auto start = std::chrono::steady_clock::now();
    Status s;
    {
        Runtime<RealCache> rt(cache);
        rt.start();
        ProgressBar bar("flush");
        s = rt.flush_all([&](const FlushProgress& p) {
            bar.update(total, p.dirty_bytes_left, p.rate_bytes_per_s);
        });
        rt.stop();
        if (s.ok()) s = rt.last_error();
    }
    if (!s.ok()) return fail(cmd, s);
    if (Status c = cache.close(); !c.ok()) return fail(cmd, c);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    say(cmd, "clean: wrote back " + std::to_string(total) + " B in " + std::to_string(secs) + " s");
    std::printf("%s\n", cache.status_line().c_str());
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(flush, "write back all dirty data until the cache is clean (progress on a terminal)",
               pcache::tool::run_flush);
