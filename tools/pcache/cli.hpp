// Helpers shared by the subcommands: option parsing with the documented exit codes, byte-size
// arguments, error reporting, and the progress bar. Exit codes live in commands.hpp.
#pragma once

#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "pcache/commands.hpp"
#include "pcache/format/geometry.hpp"
#include "pcache/result.hpp"
#include "serve/serve_args.hpp"

namespace pcache::tool {

namespace po = boost::program_options;

// Prints "pcache <cmd>: <message>" on stderr.
inline void say(const char* cmd, const std::string& message) {
    std::fprintf(stderr, "pcache %s: %s\n", cmd, message.c_str());
}

// Exit code for an error: I/O errors and missing files are 3, everything else was refused (1).
inline int exit_for(Errc code) {
    return code == Errc::io || code == Errc::not_found ? kExitIo : kExitProblems;
}
inline int fail(const char* cmd, const Status& s) {
    say(cmd, s.message());
    return exit_for(s.code());
}
inline int usage_error(const char* cmd, const std::string& message) {
    say(cmd, message + " (see pcache " + std::string(cmd) + " --help)");
    return kExitUsage;
}

// Parses `args` against `opts` (plus --help) and `hidden` (internal: positional words). Returns -1
// to go on, or the exit code to return: 0 after printing help on stdout, kExitUsage after a
// diagnostic on stderr.
inline int parse_args(const char* cmd, const char* synopsis, po::options_description& opts,
                      const po::positional_options_description* positional,
                      const std::vector<std::string>& args, po::variables_map& vm,
                      const po::options_description* hidden = nullptr) {
    opts.add_options()("help,h", "print this help");
    try {
        po::options_description all;
        all.add(opts);
        if (hidden) all.add(*hidden);  // parsed, never shown in --help
        po::command_line_parser parser(args);
        parser.options(all);
        if (positional)
            parser.positional(*positional);
        else
            parser.positional(po::positional_options_description{});
        po::store(parser.run(), vm);
        if (vm.count("help")) {
            std::printf("usage: pcache %s %s\n\n", cmd, synopsis);
            std::ostringstream text;
            opts.print(text);
            std::fputs(text.str().c_str(), stdout);
            return kExitOk;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        return usage_error(cmd, e.what());
    }
    return -1;
}

// One typed parser for every integer option: decimal digits only (no sign: "-1" is refused, not
// wrapped), within [lo, hi], else a usage error naming the option and the range. The help shows
// the default when the variable holds one.
template <class T>
T parse_integer_or_throw(const std::string& text, T lo, T hi, const std::string& name) {
    const auto bad = [&] {
        return po::error("--" + name + " \"" + text + "\": expected an integer in " +
                         std::to_string(lo) + ".." + std::to_string(hi));
    };
    if (text.empty() || text.size() > 20 ||
        text.find_first_not_of("0123456789") != std::string::npos)
        throw bad();
    unsigned long long v = 0;
    for (char c : text) {
        if (v > (~0ull - 9) / 10) throw bad();
        v = v * 10 + static_cast<unsigned long long>(c - '0');
    }
    if (v < static_cast<unsigned long long>(lo) || v > static_cast<unsigned long long>(hi))
        throw bad();
    return static_cast<T>(v);
}
template <class T>
po::typed_value<std::string>* integer(T* out, T lo, T hi, const std::string& name,
                                      bool show_default = true) {
    auto* v = po::value<std::string>()->notifier([out, lo, hi, name](const std::string& text) {
        *out = parse_integer_or_throw(text, lo, hi, name);
    });
    if (show_default) v->default_value(std::to_string(*out));
    return v;
}
// The same for an option without a default: `out` is set only when the option is given.
template <class T>
po::typed_value<std::string>* integer(std::optional<T>* out, T lo, T hi, const std::string& name) {
    return po::value<std::string>()->notifier([out, lo, hi, name](const std::string& text) {
        *out = parse_integer_or_throw(text, lo, hi, name);
    });
}

// A byte count: decimal digits with an optional binary suffix K, M, G, T (or KiB, MiB, GiB, TiB).
// One parser for every front end (serve/serve_args.hpp).
inline Result<std::uint64_t> parse_bytes(const std::string& text, const char* what) {
    return serve::parse_size(text, what);
}

// A decimal count, or "all" (returned as UINT64_MAX).
inline Result<std::uint64_t> parse_count(const std::string& text, const char* what) {
    if (text == "all") return UINT64_MAX;
    if (text.empty() || text.size() > 18 ||
        text.find_first_not_of("0123456789") != std::string::npos)
        return Status(Errc::invalid_argument,
                      std::string(what) + " \"" + text + "\": expected a decimal count or \"all\"");
    return std::stoull(text);
}

// --segment-size: the geometry (16 MiB kernel segments by default).
inline void add_geometry_option(po::options_description& opts) {
    opts.add_options()("segment-size", po::value<std::string>()->default_value("16M"),
                       "segment size in bytes (16M = kernel geometry; smaller sizes make "
                       "pcache-only images that must always be opened with the same size)");
}
inline Result<format::Geometry> geometry_from(const po::variables_map& vm) {
    auto b = parse_bytes(vm["segment-size"].as<std::string>(), "--segment-size");
    if (!b.ok()) return b.status();
    format::Geometry g{*b};
    PCACHE_TRY(g.validate());
    return g;
}

// 16M, 256K, 4096: a size as --segment-size accepts it back.
inline std::string human_bytes_exact(std::uint64_t b) {
    if (b && b % (1ull << 30) == 0) return std::to_string(b >> 30) + "G";
    if (b && b % (1ull << 20) == 0) return std::to_string(b >> 20) + "M";
    if (b && b % (1ull << 10) == 0) return std::to_string(b >> 10) + "K";
    return std::to_string(b);
}

inline std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

// One-line progress on stderr, only when stderr is a terminal; at most 10 updates a second.
class ProgressBar {
public:
    explicit ProgressBar(const char* what) : what_(what), tty_(::isatty(STDERR_FILENO) == 1) {}
    ~ProgressBar() { finish(); }
    void update(std::uint64_t total_bytes, std::uint64_t left_bytes, double rate_bytes_per_s) {
        if (!tty_) return;
        const auto now = std::chrono::steady_clock::now();
        if (shown_ && now - last_ < std::chrono::milliseconds(100)) return;
        last_ = now;
        shown_ = true;
        const double frac = total_bytes ? 1.0 - double(left_bytes) / double(total_bytes) : 1.0;
        const int width = 30, filled = static_cast<int>(frac * width + 0.5);
        std::string bar(filled, '#');
        bar.resize(width, '.');
        std::string eta =
            rate_bytes_per_s > 0
                ? std::to_string(static_cast<long long>(left_bytes / rate_bytes_per_s)) + " s"
                : "?";
        std::fprintf(stderr, "\r%s [%s] %s left, %s/s, ETA %s   ", what_, bar.c_str(),
                     human_bytes(double(left_bytes)).c_str(), human_bytes(rate_bytes_per_s).c_str(),
                     eta.c_str());
        std::fflush(stderr);
    }
    void finish() {
        if (shown_) std::fputc('\n', stderr);
        shown_ = false;
    }

private:
    const char* what_;
    bool tty_;
    bool shown_ = false;
    std::chrono::steady_clock::time_point last_{};
};

}  // namespace pcache::tool
