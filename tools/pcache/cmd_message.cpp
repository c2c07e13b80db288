// pcache message: sends a dm message to a cache, as `dmsetup message` does. The only message
// the kernel knows is "gc_percent <0..90>". Opening the cache writes cache_info (as a table
// load does); the message then persists the new value in cache_info.
#include <cctype>
#include <cstdio>
#include <sstream>

#include "pcache/engine.hpp"

namespace pcache::tool {
namespace {

int run_message(const std::vector<std::string>& args) {
    const char* cmd = "message";
    po::options_description opts("options");
    add_image_options(opts, true);
    add_force_backing_option(opts);
    po::options_description hidden;
    hidden.add_options()("words", po::value<std::vector<std::string>>(), "the message");
    po::positional_options_description pos;
    pos.add("words", -1);
    po::variables_map vm;
    if (int rc = parse_args(cmd,
                            "--pmem PATH --backing PATH gc_percent N\n\n"
                            "The only message is \"gc_percent N\" (N in 0..90, default 70).",
                            opts, &pos, args, vm, &hidden);
        rc >= 0)
        return rc;
    if (!vm.count("words")) return usage_error(cmd, "no message given, expected \"gc_percent N\"");
    std::string text;
    for (const auto& w : vm["words"].as<std::vector<std::string>>())
        text += (text.empty() ? "" : " ") + w;
    // Validate before opening, so a bad message writes nothing (Cache::open writes cache_info).
    std::string key, value, extra;
    std::istringstream in(text);
    in >> key >> value >> extra;
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (key != "gc_percent" || !extra.empty())
        return usage_error(
            cmd, "message \"" + text + "\": expected \"gc_percent N\" (the only message)");
    if (value.empty() || value.size() > 9 ||
        value.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(value) > format::kGcPercentMax)
        return usage_error(cmd, "gc_percent \"" + value + "\": expected a decimal number 0..90");
    LiveCache live;
    if (int rc = open_existing(cmd, vm, live); rc >= 0) return rc;
    if (Status s = live.cache->message(text); !s.ok()) return fail(cmd, s);
    if (Status s = live.cache->close(); !s.ok()) return fail(cmd, s);
    std::printf("%s\n", live.cache->status_line().c_str());
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(message, "send a dm message to a cache (gc_percent N)", pcache::tool::run_message);
