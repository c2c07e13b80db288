// Running the pcache binary (or any command line) from the CLI tests: exit code, stdout, stderr.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "temp_dir.hpp"

namespace pcache::testutil {

struct Outcome {
    int rc = -1;  // the exit code; -1 when killed by a signal
    std::string out, err;
};

// A whole file's bytes ("" when it cannot be opened).
inline std::string slurp(const std::string& path) {
    std::string out;
    if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
        char buf[1 << 16];
        for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
        std::fclose(f);
    }
    return out;
}

// Runs `cmd` (shell words) with its stdout and stderr captured in files of `dir`.
inline Outcome run_captured(const std::string& cmd, const TempDir& dir) {
    const std::string o = dir.file("stdout"), e = dir.file("stderr");
    const int st = std::system((cmd + " >" + o + " 2>" + e).c_str());
    Outcome r;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(o);
    r.err = slurp(e);
    return r;
}

}  // namespace pcache::testutil
