// Subcommand registry of the pcache tool. A subcommand is a file cmd_<name>.cpp that defines
//   static int run_<name>(const std::vector<std::string>& args);
//   PCACHE_COMMAND(name, "one-line summary", run_<name>);
// and parses its own arguments (Boost.Program_options). Exit codes are the tool's API and are
// documented once, here and in docs/cli.md.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace pcache::tool {

// Exit codes: never change their meaning.
inline constexpr int kExitOk = 0;  // success; for `check`: the cache is clean
inline constexpr int kExitProblems =
    1;  // `check` found problems; other commands: operation refused or failed
inline constexpr int kExitUsage = 2;  // bad command line
inline constexpr int kExitIo = 3;     // an I/O error on a device or file

using CommandFn = int (*)(const std::vector<std::string>& args);
struct Command {
    const char* summary;
    CommandFn run;
};

inline std::map<std::string, Command>& registry() {
    static std::map<std::string, Command> commands;
    return commands;
}

struct Registrar {
    Registrar(const char* name, const char* summary, CommandFn fn) {
        registry()[name] = Command{summary, fn};
    }
};

}  // namespace pcache::tool

#define PCACHE_COMMAND(name, summary, fn) \
    static const ::pcache::tool::Registrar pcache_registrar_##name(#name, summary, fn)
