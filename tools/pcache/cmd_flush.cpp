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
    opts.add_options()("writeback-qd", po::value<unsigned>()->default_value(32),
                       "writes in flight during writeback (1..1024)");
    po::variables_map vm;
    if (int rc =
            parse_args(cmd, "--pmem PATH --backing SPEC [--segment-size BYTES] [--writeback-qd N]",
                       opts, nullptr, args, vm);
        rc >= 0)
        return rc;
    const unsigned qd = vm["writeback-qd"].as<unsigned>();
    if (qd == 0 || qd > 1024) return usage_error(cmd, "--writeback-qd: expected 1..1024");
    LiveCache live;
    if (int rc = open_existing(cmd, vm, live, qd); rc >= 0) return rc;
    RealCache& cache = *live.cache;
    const std::uint64_t total = cache.dirty_bytes();
    const auto start = std::chrono::steady_clock::now();
    Status s;
    {
        Runtime<RealCache> rt(cache);
        if (Status rs = rt.start(); !rs.ok()) return fail(cmd, rs);
        ProgressBar bar("flush");
        s = rt.flush_all([&](const FlushProgress& p) {
            bar.update(total, p.dirty_bytes_left, p.rate_bytes_per_s);
        });
        rt.stop();
        // The cache is clean: an error the background threads met on the way (a transient
        // backing-device error that writeback then got past) is reported, not a failure.
        if (Status bg = rt.last_error(); s.ok() && !bg.ok())
            say(cmd, "note: background work met an error and recovered: " + bg.message());
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
