// Always-on checks (docs/design.md "Always-on checks"; style.md rule 4, the first tier).
//
// Cheap invariants at the edges of each component stay on in release builds, so corruption is
// caught where it starts instead of three components later (TigerBeetle keeps its assertions in
// production). Two forms:
//
//   PCACHE_VERIFY(cond, what)        where the caller can still refuse cleanly: returns
//                                    Status{Errc::corrupt, "invariant violated: <what> (<cond>)
//                                    at file:line"} from the enclosing function (which returns
//                                    Status or Result<T>). Nothing has been changed yet.
//   PCACHE_VERIFY_FATAL(cond, what)  where the state is already inconsistent (a count about to
//                                    wrap, a buffer about to overflow) and no caller could
//                                    continue safely: prints the same line to stderr and aborts.
//
// `what` (a std::string expression) is evaluated only when the check fails. Expensive checks
// (whole-structure walks, O(n) scans) stay debug-only: assert() and Cache::check_invariants().
// PCACHE_VERIFY_OFF (CMake option, for measuring their cost only) compiles both out.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "pcache/result.hpp"

namespace pcache::detail {

// The failure paths, out of line and cold: a check costs its compare and a not-taken branch in
// the hot function, and the message (a lambda) is built only here. Code that builds strings
// inline in a hot function changes what the compiler inlines around it (measured: +10-30 % on
// read hits when the message was built in place).
inline std::string verify_message(const char* cond, const char* file, int line,
                                  const std::string& what) {
    return "invariant violated: " + what + " (" + cond + ") at " + file + ":" +
           std::to_string(line);
}

template <class What>
[[gnu::cold, gnu::noinline]] Status verify_failed(const char* cond, const char* file, int line,
                                                  const What& what) {
    return {Errc::corrupt, verify_message(cond, file, line, what())};
}

template <class What>
[[noreturn, gnu::cold, gnu::noinline]] void verify_abort(const char* cond, const char* file,
                                                         int line, const What& what) {
    std::fprintf(stderr, "pcache: %s\n", verify_message(cond, file, line, what()).c_str());
    std::fflush(stderr);
    std::abort();
}

}  // namespace pcache::detail

#ifdef PCACHE_VERIFY_OFF  // never evaluated, still compiled: no unused-variable warnings
#define PCACHE_VERIFY(cond, what) \
    do {                          \
        if (false) {              \
            (void)(cond);         \
            (void)(what);         \
        }                         \
    } while (0)
#define PCACHE_VERIFY_FATAL(cond, what) PCACHE_VERIFY(cond, what)
#else
#define PCACHE_VERIFY(cond, what)                                                          \
    do {                                                                                   \
        if (!(cond)) [[unlikely]]                                                          \
            return ::pcache::detail::verify_failed(#cond, __FILE__, __LINE__,              \
                                                   [&]() -> std::string { return what; }); \
    } while (0)
#define PCACHE_VERIFY_FATAL(cond, what)                                            \
    do {                                                                           \
        if (!(cond)) [[unlikely]]                                                  \
            ::pcache::detail::verify_abort(#cond, __FILE__, __LINE__,              \
                                           [&]() -> std::string { return what; }); \
    } while (0)
#endif
