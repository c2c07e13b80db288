// pcache: create, inspect, check and operate pcache devices from the shell.
// Diagnostics go to stderr, data to stdout; exit codes in commands.hpp and docs/cli.md.
#include <cstdio>
#include <cstring>
#include <exception>

#include "pcache/commands.hpp"

namespace {

void usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: pcache <command> [options]   (pcache help <command> for its options)\n"
                 "       pcache --version\n\ncommands:\n");
    for (const auto& [name, cmd] : pcache::tool::registry())
        std::fprintf(out, "  %-10s %s\n", name.c_str(), cmd.summary);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return pcache::tool::kExitUsage;
    }
    auto& reg = pcache::tool::registry();
    if (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "-V")) {
        std::printf("pcache %s\n", PCACHE_VERSION);
        return pcache::tool::kExitOk;
    }
    if (!std::strcmp(argv[1], "help") && argc >= 3) {  // pcache help CMD: CMD --help
        auto it = reg.find(argv[2]);
        if (it == reg.end()) {
            std::fprintf(stderr, "pcache: unknown command '%s'\n", argv[2]);
            usage(stderr);
            return pcache::tool::kExitUsage;
        }
        return it->second.run({"--help"});
    }
    if (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
        !std::strcmp(argv[1], "help")) {
        usage(stdout);
        return pcache::tool::kExitOk;
    }
    auto it = reg.find(argv[1]);
    if (it == reg.end()) {
        std::fprintf(stderr, "pcache: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return pcache::tool::kExitUsage;
    }
    try {
        return it->second.run(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const std::exception& e) {  // the tool's edge: report, never crash
        std::fprintf(stderr, "pcache %s: %s\n", argv[1], e.what());
        return pcache::tool::kExitProblems;
    }
}
