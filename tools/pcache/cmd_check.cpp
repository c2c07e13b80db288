// pcache check: validates every structure of a cache image without writing to it.
//
// Superblock, both copies of cache_info, key_tail and dirty_tail, the segment chain with both
// copies of every segment_info and seg_gen, then every kset and key from key_tail to the end of
// the log (bounds of dm-pcache-format.md 9.4/9.5, invariants of section 11, and the data CRC of
// every live key when the cache has DATA_CRC). Exit 0: clean; 1: problems found; 2: usage;
// 3: I/O error. An older metadata copy that fails its CRC is a warning, not a problem: a crash
// during an update legitimately leaves one; a slot never written (all zero) is not reported.
#include <cstdio>

#include "pcache/inspect_image.hpp"
#include "pcache/json.hpp"

namespace pcache::tool {
namespace {

template <format::MetaRecord T>
void older_copy_warnings(const inspect::Pair<T>& p, const std::string& name,
                         std::vector<std::string>& out) {
    for (const auto& c : p.copies)
        if (!c.newest && !c.never_written && !c.error.empty())
            out.push_back(name + " (older copy): " + c.error);
}

std::vector<std::string> warnings_of(const inspect::Header& h) {
    std::vector<std::string> w;
    older_copy_warnings(h.info, "cache_info", w);
    older_copy_warnings(h.key_tail, "key_tail", w);
    older_copy_warnings(h.dirty_tail, "dirty_tail", w);
    for (const auto& s : h.segments) {
        const std::string name = "cache segment " + std::to_string(s.cache_seg_id);
        older_copy_warnings(s.info, name + " segment_info", w);
        older_copy_warnings(s.gen, name + " seg_gen", w);
        if (!s.gen.newest_slot)
            w.push_back(name + ": no valid seg_gen copy (generation taken as 0)");
    }
    return w;
}

int run_check(const std::vector<std::string>& args) {
    const char* cmd = "check";
    po::options_description opts("options");
    add_image_options(opts, false);
    opts.add_options()("format", po::value<std::string>()->default_value("text"), "text or json")(
        "no-data-crc", "do not read cached data to verify key data CRCs (DATA_CRC caches)");
    po::variables_map vm;
    if (int rc =
            parse_args(cmd, "--pmem PATH [--backing PATH] [--format text|json] [--no-data-crc]",
                       opts, nullptr, args, vm);
        rc >= 0)
        return rc;
    const std::string fmt = vm["format"].as<std::string>();
    if (fmt != "text" && fmt != "json")
        return usage_error(cmd, "--format \"" + fmt + "\": expected text or json");
    Inspected img;
    if (int rc = open_and_inspect(cmd, vm, img); rc >= 0) return rc;
    const inspect::Header& h = img.header;
    inspect::Problems problems = h.problems;
    if (h.state != inspect::State::cache) problems.add(not_a_cache(img.pmem->path(), h));
    inspect::LogSummary log;
    if (h.walkable()) {
        auto walked = inspect::walk_log(
            *img.pmem, h, inspect::WalkOptions{img.backing_bytes, !vm.count("no-data-crc")},
            [](const inspect::KsetEvent&) {});
        if (!walked.ok()) return fail(cmd, walked.status());
        log = std::move(*walked);
        for (const auto& p : log.problems.list) problems.add(p);
        problems.count += log.problems.count - log.problems.list.size();
    }
    const auto warnings = warnings_of(h);
    if (fmt == "json") {
        JsonWriter j(stdout);
        j.object()
            .num("schema", 1)
            .str("state", inspect::state_name(h.state))
            .boolean("clean", problems.empty());
        j.num("problem_count", problems.count).array("problems");
        for (const auto& p : problems.list) j.str(nullptr, p);
        j.end().array("warnings");
        for (const auto& w : warnings) j.str(nullptr, w);
        j.end().num("segments", h.segments.size()).num("ksets", log.ksets).num("keys", log.keys);
        j.num("stale_keys", log.stale_keys).num("dirty_bytes", log.dirty_bytes);
        j.num("data_crc_errors", log.data_crc_errors).end();
    } else {
        for (const auto& p : problems.list) std::printf("problem: %s\n", p.c_str());
        if (problems.count > problems.list.size())
            std::printf("problem: ... and %llu more\n",
                        static_cast<unsigned long long>(problems.count - problems.list.size()));
        for (const auto& w : warnings) std::printf("warning: %s\n", w.c_str());
        std::printf("%s: %s; %zu segments, %llu ksets, %llu keys (%llu stale), %llu dirty bytes\n",
                    img.pmem->path().c_str(),
                    problems.empty() ? "no problems"
                                     : (std::to_string(problems.count) + " problem(s)").c_str(),
                    h.segments.size(), static_cast<unsigned long long>(log.ksets),
                    static_cast<unsigned long long>(log.keys),
                    static_cast<unsigned long long>(log.stale_keys),
                    static_cast<unsigned long long>(log.dirty_bytes));
    }
    return problems.empty() ? kExitOk : kExitProblems;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(check,
               "validate every structure and kset of a cache (read-only; exit 0 clean, 1 problems)",
               pcache::tool::run_check);
