// pcache status: the cache's dm status line, computed read-only from the image.
//
// Default output is exactly the kernel's `dmsetup status` fields (positional, append-only);
// --format table prints one named value per line, --format json a schema-1 object whose keys
// carry their units. The image is never written (see inspect.hpp).
#include <cstdio>

#include "pcache/inspect_image.hpp"
#include "pcache/json.hpp"

namespace pcache::tool {
namespace {

void print_json(const inspect::Header& h, const inspect::LogSummary& log, std::uint64_t problems) {
    JsonWriter j(stdout);
    const auto pos = [&](const char* key, inspect::Pos p) {
        j.object(key).num("cache_seg_id", p.seg).num("seg_off_bytes", p.off).end();
    };
    j.object().num("schema", 1).str("status_line", inspect::status_line(h, log));
    j.num("sb_flags", h.sb.flags).num("seg_num", h.sb.seg_num).num("cache_segs", h.n_segs());
    j.num("segs_used", log.segs_used).num("gc_percent", h.gc_percent());
    j.num("cache_flags", h.cache_flags()).boolean("data_crc", h.data_crc());
    j.boolean("init_done", (h.cache_flags() & format::kCacheFlagInitDone) != 0);
    pos("key_head", log.key_head);
    pos("dirty_tail", h.dirty_tail_pos());
    pos("key_tail", h.key_tail_pos());
    j.num("segment_size_bytes", h.geometry.segment_bytes).num("cache_device_bytes", h.device_bytes);
    j.num("cache_data_bytes", std::uint64_t(h.n_segs()) * h.geometry.seg_data_bytes());
    j.num("dirty_bytes", log.dirty_bytes).num("dirty_keys", log.dirty_keys);
    j.num("cached_clean_bytes", log.clean_bytes_cached);
    j.num("ksets", log.ksets).num("keys", log.keys).num("stale_keys", log.stale_keys);
    j.boolean("clean", log.dirty_bytes == 0 && log.key_head == h.dirty_tail_pos());
    j.num("problems", problems).end();
}

void print_table(const inspect::Header& h, const inspect::LogSummary& log, std::uint64_t problems) {
    const auto row = [](const char* name, const std::string& v) {
        std::printf("%-22s %s\n", name, v.c_str());
    };
    const auto n = [](std::uint64_t v) { return std::to_string(v); };
    row("sb_flags", format::hex(h.sb.flags));
    row("seg_num", n(h.sb.seg_num));
    row("cache_segs", n(h.n_segs()));
    row("segs_used", n(log.segs_used));
    row("gc_percent", n(h.gc_percent()));
    row("cache_flags", format::hex(h.cache_flags()));
    row("data_crc", h.data_crc() ? "true" : "false");
    row("key_head", log.key_head.str());
    row("dirty_tail", h.dirty_tail_pos().str());
    row("key_tail", h.key_tail_pos().str());
    row("segment_size_bytes", n(h.geometry.segment_bytes));
    row("cache_data_bytes", n(std::uint64_t(h.n_segs()) * h.geometry.seg_data_bytes()));
    row("dirty_bytes", n(log.dirty_bytes));
    row("cached_clean_bytes", n(log.clean_bytes_cached));
    row("ksets", n(log.ksets));
    row("keys", n(log.keys));
    row("problems", n(problems));
}

int run_status(const std::vector<std::string>& args) {
    const char* cmd = "status";
    po::options_description opts("options");
    add_image_options(opts, false);
    opts.add_options()("format", po::value<std::string>()->default_value("line"),
                       "line (the dm status line), table or json");
    po::variables_map vm;
    if (int rc = parse_args(cmd, "--pmem PATH [--backing PATH] [--format line|table|json]", opts,
                            nullptr, args, vm);
        rc >= 0)
        return rc;
    const std::string fmt = vm["format"].as<std::string>();
    if (fmt != "line" && fmt != "table" && fmt != "json")
        return usage_error(cmd, "--format \"" + fmt + "\": expected line, table or json");
    Inspected img;
    if (int rc = open_and_inspect(cmd, vm, img); rc >= 0) return rc;
    if (int rc = require_loadable(cmd, img); rc >= 0) return rc;
    const inspect::Header& h = img.header;
    auto log = inspect::walk_log(*img.pmem, h, inspect::WalkOptions{img.backing_bytes, false},
                                 [](const inspect::KsetEvent&) {});
    if (!log.ok()) return fail(cmd, log.status());
    const std::uint64_t problems = h.problems.count + log->problems.count;
    if (fmt == "json")
        print_json(h, *log, problems);
    else if (fmt == "table")
        print_table(h, *log, problems);
    else
        std::printf("%s\n", inspect::status_line(h, *log).c_str());
    if (problems) {
        say(cmd, std::to_string(problems) +
                     " problem(s) found (a load would refuse this cache): "
                     "run pcache check");
        return kExitProblems;
    }
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(status, "print the cache's status line (read-only; --format table|json)",
               pcache::tool::run_status);
