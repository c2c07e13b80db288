// pcache bench: runs the engine benchmark suite (bench/engine_bench.cpp) against the hardware
// bound. The suite is its own binary, pcache_bench, so the tool does not link Google Benchmark:
// this command finds it (PCACHE_BENCH_BINARY, then next to this executable, then ../bench in a
// build tree, then ../libexec/pcache) and execs it with the options translated.
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include "pcache/commands.hpp"

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;

std::string find_bench_binary() {
    if (const char* env = std::getenv("PCACHE_BENCH_BINARY"); env && *env) return env;
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (ec) return {};
    const fs::path dir = self.parent_path();
    for (const fs::path& p : {dir / "pcache_bench", dir.parent_path() / "bench" / "pcache_bench",
                              dir.parent_path() / "libexec" / "pcache" / "pcache_bench"}) {
        if (::access(p.c_str(), X_OK) == 0) return p.string();
    }
    return {};
}

int run_bench(const std::vector<std::string>& args) {
    po::options_description desc(
        "usage: pcache bench [--quick] [--dax PATH] [--filter REGEX] [--json FILE] [-- "
        "BENCHMARK_ARGS...]\n"
        "Runs the engine benchmarks, each with its ratio to the hardware bound measured in the "
        "same run\n"
        "(docs/PERFORMANCE.md). Options");
    bool quick = false;
    std::string dax, filter, json;
    desc.add_options()("help,h", "this help")("quick", po::bool_switch(&quick),
                                              "a short run: few iterations, no 1 M-key replay")(
        "dax", po::value(&dax),
        "also benchmark this device-DAX path (/dev/daxX.Y); its contents are lost")(
        "filter", po::value(&filter), "only benchmarks whose name matches this regex")(
        "json", po::value(&json), "also write the results as JSON to this file");
    std::vector<std::string> ours = args, passthrough;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--") {
            ours.assign(args.begin(), args.begin() + static_cast<std::ptrdiff_t>(i));
            passthrough.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 1, args.end());
            break;
        }
    }
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(ours).options(desc).run(), vm);
        po::notify(vm);
    } catch (const po::error& e) {
        std::fprintf(stderr, "pcache bench: %s\n", e.what());
        return pcache::tool::kExitUsage;
    }
    if (vm.count("help")) {
        std::cout << desc << '\n';
        return pcache::tool::kExitOk;
    }
    if (!filter.empty()) {
        // Google Benchmark compiles the filter as an extended regex (a leading '-' negates it)
        // and, when it does not compile, prints an error but still exits 0.
        try {
            std::regex re(filter[0] == '-' ? filter.substr(1) : filter, std::regex::extended);
        } catch (const std::regex_error& e) {
            std::fprintf(stderr, "pcache bench: --filter \"%s\": not a regular expression (%s)\n",
                         filter.c_str(), e.what());
            return pcache::tool::kExitUsage;
        }
    }
    const std::string bin = find_bench_binary();
    if (bin.empty()) {
        std::fprintf(stderr,
                     "pcache bench: cannot find the pcache_bench binary (expected next to pcache, "
                     "in ../bench or ../libexec/pcache; or set PCACHE_BENCH_BINARY)\n");
        return pcache::tool::kExitProblems;
    }
    std::vector<std::string> argv_s{bin};
    if (quick) {
        argv_s.push_back("--quick");
        argv_s.push_back("--benchmark_min_time=0.05");
    }
    if (!dax.empty()) argv_s.push_back("--dax=" + dax);
    if (!filter.empty()) argv_s.push_back("--benchmark_filter=" + filter);
    if (!json.empty()) {
        argv_s.push_back("--benchmark_out=" + json);
        argv_s.push_back("--benchmark_out_format=json");
    }
    argv_s.insert(argv_s.end(), passthrough.begin(), passthrough.end());
    std::vector<char*> argv;
    for (std::string& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::fflush(nullptr);
    ::execv(bin.c_str(), argv.data());
    std::fprintf(stderr, "pcache bench: cannot run %s: %s\n", bin.c_str(), std::strerror(errno));
    return pcache::tool::kExitProblems;
}

}  // namespace

PCACHE_COMMAND(bench, "run the benchmark suite against the hardware bound (--quick)", run_bench);
