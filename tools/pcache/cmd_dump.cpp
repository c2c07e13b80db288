// pcache dump: the whole image as JSON (schema 1), read-only.
//
// Superblock; both copies of cache_info, key_tail, dirty_tail, and of every segment's
// segment_info and seg_gen, each with its verdicts (crc_ok, valid, newest); the log positions;
// the segment chain; every kset from key_tail to the end with its keys. Logs can hold a million
// keys: --keys and --ksets bound what is printed (totals are always given).
#include <cstdio>

#include "pcache/inspect_image.hpp"
#include "pcache/json.hpp"

namespace pcache::tool {
namespace {

using namespace pcache::format;

void fields(JsonWriter& j, const CacheInfo& r) {
    j.num("seg_id", r.seg_id).num("n_segs", r.n_segs).hex("flags", r.flags);
    j.boolean("data_crc", r.flags & kCacheFlagDataCrc)
        .boolean("init_done", r.flags & kCacheFlagInitDone);
    j.num("cache_mode", cache_mode_of(r.flags)).num("gc_percent", gc_percent_of(r.flags));
}
void fields(JsonWriter& j, const CachePos& r) {
    j.num("cache_seg_id", r.cache_seg_id).num("seg_off_bytes", r.seg_off);
}
void fields(JsonWriter& j, const SegmentInfo& r) {
    j.hex("flags", r.flags).boolean("has_next", r.flags & kSegInfoFlagHasNext);
    j.num("type", (r.flags & kSegInfoTypeMask) >> kSegInfoTypeShift).num("next_seg", r.next_seg);
}
void fields(JsonWriter& j, const SegGen& r) { j.num("gen", r.gen); }

template <MetaRecord T>
void copies(JsonWriter& j, const char* key, const inspect::Pair<T>& p) {
    j.array(key);
    for (unsigned i = 0; i < p.copies.size(); ++i) {
        const auto& c = p.copies[i];
        j.object()
            .num("slot", i)
            .num("offset_bytes", c.offset_bytes)
            .hex("crc", c.record.header.crc);
        j.boolean("crc_ok", c.crc_ok)
            .boolean("valid", c.crc_ok && c.error.empty())
            .boolean("newest", c.newest);
        j.boolean("never_written", c.never_written);
        if (!c.error.empty()) j.str("error", c.error);
        j.num("seq", c.record.header.seq);
        fields(j, c.record);
        j.end();
    }
    j.end();
}

void pos(JsonWriter& j, const char* key, inspect::Pos p) {
    j.object(key).num("cache_seg_id", p.seg).num("seg_off_bytes", p.off).end();
}

struct Limits {
    std::uint64_t keys, ksets;
};

int run_dump(const std::vector<std::string>& args) {
    const char* cmd = "dump";
    po::options_description opts("options");
    add_image_options(opts, false);
    opts.add_options()("keys", po::value<std::string>()->default_value("1000"),
                       "print at most this many keys in total (a count or \"all\")")(
        "ksets", po::value<std::string>()->default_value("10000"),
        "print at most this many ksets (a count or \"all\")");
    po::variables_map vm;
    if (int rc = parse_args(cmd, "--pmem PATH [--backing PATH] [--keys N|all] [--ksets N|all]",
                            opts, nullptr, args, vm);
        rc >= 0)
        return rc;
    auto keys_max = parse_count(vm["keys"].as<std::string>(), "--keys");
    auto ksets_max = parse_count(vm["ksets"].as<std::string>(), "--ksets");
    if (!keys_max.ok()) return usage_error(cmd, keys_max.status().message());
    if (!ksets_max.ok()) return usage_error(cmd, ksets_max.status().message());
    Inspected img;
    if (int rc = open_and_inspect(cmd, vm, img); rc >= 0) return rc;
    const inspect::Header& h = img.header;

    JsonWriter j(stdout);
    j.object().num("schema", 1).str("path", img.pmem->path()).num("device_bytes", h.device_bytes);
    j.num("segment_size_bytes", h.geometry.segment_bytes)
        .str("state", inspect::state_name(h.state));
    if (!h.state_reason.empty()) j.str("state_reason", h.state_reason);
    j.object("superblock").num("offset_bytes", kSuperblockOffsetBytes).hex("crc", h.sb.crc);
    j.hex("flags", h.sb.flags).hex("magic", h.sb.magic).num("seg_num", h.sb.seg_num).end();
    const bool formatted =
        h.state == inspect::State::cache || h.state == inspect::State::unfinished;
    if (formatted) copies(j, "cache_info", h.info);
    if (h.state == inspect::State::cache) {
        copies(j, "key_tail", h.key_tail);
        copies(j, "dirty_tail", h.dirty_tail);
        j.array("segments");
        for (const auto& s : h.segments) {
            j.object().num("cache_seg_id", s.cache_seg_id).num("phys_seg_id", s.phys_seg_id);
            j.num("offset_bytes", s.offset_bytes).num("gen", s.gen_value);
            copies(j, "segment_info", s.info);
            copies(j, "seg_gen", s.gen);
            j.end();
        }
        j.end();
    }
    inspect::LogSummary log;
    std::uint64_t keys_printed = 0, ksets_printed = 0;
    if (h.walkable()) {
        j.array("ksets");
        auto visit = [&](const inspect::KsetEvent& ev) {
            if (ksets_printed >= ksets_max.value()) return;
            ++ksets_printed;
            j.object().str("pos", ev.pos.str()).num("offset_bytes", ev.offset_bytes);
            j.str("kind", ev.kind == KsetKind::last ? "last" : "normal");
            if (ev.kind == KsetKind::last) {
                j.num("next_cache_seg_id", ev.next_cache_seg_id).end();
                return;
            }
            j.num("key_num", ev.key_num).boolean("written_back", ev.written_back).array("keys");
            for (const auto& kv : ev.keys) {
                if (keys_printed >= keys_max.value()) break;
                ++keys_printed;
                const KeyOnMedia& k = kv.key;
                j.object()
                    .num("offset_bytes", kv.offset_bytes)
                    .num("off_bytes", k.off)
                    .num("len_bytes", k.len);
                j.hex("flags", k.flags)
                    .num("cache_seg_id", k.cache_seg_id)
                    .num("cache_seg_off_bytes", k.cache_seg_off);
                j.num("seg_gen", k.seg_gen).hex("data_crc", k.data_crc);
                j.boolean("valid", kv.valid).boolean("stale", kv.stale).boolean("dirty", kv.dirty);
                if (kv.data_crc_ok) j.boolean("data_crc_ok", *kv.data_crc_ok);
                j.end();
            }
            j.end().end();
        };
        auto walked =
            inspect::walk_log(*img.pmem, h, inspect::WalkOptions{img.backing_bytes, false}, visit);
        j.end();
        if (!walked.ok()) {
            j.end();
            return fail(cmd, walked.status());
        }
        log = std::move(*walked);
        j.object("positions");
        pos(j, "key_tail", h.key_tail_pos());
        pos(j, "dirty_tail", h.dirty_tail_pos());
        pos(j, "key_head", log.key_head);
        j.str("log_end_reason", log.end_reason).end();
        j.num("ksets_total", log.ksets).num("ksets_printed", ksets_printed);
        j.num("keys_total", log.keys)
            .num("keys_printed", keys_printed)
            .num("stale_keys", log.stale_keys);
        j.num("dirty_bytes", log.dirty_bytes).num("segs_used", log.segs_used);
        j.str("status_line", inspect::status_line(h, log));
    }
    j.array("problems");
    for (const auto& p : h.problems.list) j.str(nullptr, p);
    for (const auto& p : log.problems.list) j.str(nullptr, p);
    const std::uint64_t problems = h.problems.count + log.problems.count;
    j.end().num("problem_count", problems).end();
    // The JSON is for reading; the diagnostic and the exit code say it is not a usable cache.
    if (h.state != inspect::State::cache) {
        say(cmd, not_a_cache(img.pmem->path(), h));
        return kExitProblems;
    }
    if (problems) {
        say(cmd,
            std::to_string(problems) + " problem(s), listed in \"problems\" (run pcache check)");
        return kExitProblems;
    }
    return kExitOk;
}

}  // namespace
}  // namespace pcache::tool

PCACHE_COMMAND(dump,
               "print superblock, metadata copies, segments, ksets and keys as JSON (read-only)",
               pcache::tool::run_dump);
