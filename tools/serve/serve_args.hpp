// Parsing of the values `pcache serve` and the nbdkit plugin share (sizes, on/off), so both
// accept the same spellings and reject bad numbers with the same messages.
#pragma once

#include <cstdint>
#include <string>

#include "pcache/result.hpp"

namespace pcache::serve {

// Decimal digits with an optional binary suffix K, M, G, T (KiB, MiB, GiB, TiB).
inline Result<std::uint64_t> parse_size(const std::string& text, const char* what) {
    auto bad = [&](const std::string& why) {
        return Status(Errc::invalid_argument, std::string(what) + " \"" + text + "\": " + why);
    };
    std::size_t i = 0;
    std::uint64_t v = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        if (v > (UINT64_MAX - 9) / 10) return bad("too large");
        v = v * 10 + std::uint64_t(text[i] - '0');
    }
    if (i == 0) return bad("expected a number of bytes such as 4096, 64K, 256M or 1G");
    const std::string suffix = text.substr(i);
    unsigned shift = 0;
    if (suffix.empty())
        shift = 0;
    else if (suffix == "K" || suffix == "KiB" || suffix == "k")
        shift = 10;
    else if (suffix == "M" || suffix == "MiB")
        shift = 20;
    else if (suffix == "G" || suffix == "GiB")
        shift = 30;
    else if (suffix == "T" || suffix == "TiB")
        shift = 40;
    else
        return bad("unknown suffix \"" + suffix + "\", expected K, M, G or T (powers of 1024)");
    if (shift && v > (UINT64_MAX >> shift)) return bad("too large");
    return v << shift;
}

// on/off, true/false, yes/no, 1/0.
inline Result<bool> parse_switch(const std::string& text, const char* what) {
    if (text == "on" || text == "true" || text == "yes" || text == "1") return true;
    if (text == "off" || text == "false" || text == "no" || text == "0") return false;
    return Status(Errc::invalid_argument,
                  std::string(what) + " \"" + text + "\": expected on or off");
}

// A small decimal count in [lo, hi].
inline Result<std::uint32_t> parse_count(const std::string& text, const char* what,
                                         std::uint32_t lo, std::uint32_t hi) {
    if (text.empty() || text.size() > 9 ||
        text.find_first_not_of("0123456789") != std::string::npos)
        return Status(Errc::invalid_argument,
                      std::string(what) + " \"" + text + "\": expected a decimal number");
    const auto v = static_cast<std::uint32_t>(std::stoul(text));
    if (v < lo || v > hi)
        return Status(Errc::invalid_argument, std::string(what) + " " + text + ": expected " +
                                                  std::to_string(lo) + ".." + std::to_string(hi));
    return v;
}

}  // namespace pcache::serve
