// Read-only inspection of a cache device image: every structure decoded, nothing written.
//
// Cache::open writes cache_info (as the kernel does at table load), so tools that must not
// modify an image (status, check, dump, and format before it decides to overwrite) use this
// instead. It only calls `read` on an ImageReader and decodes with the pure decoders of
// format/codec.hpp. Two stages:
//   read_header()  superblock, both copies of cache_info, key_tail and dirty_tail, and the
//                  segment chain with both copies of every segment_info and seg_gen;
//   walk_log()     the key log from key_tail to its end, through the engine's walker
//                  (format/log_walk.hpp: the bounds of dm-pcache-format.md 9.4/9.5), with the
//                  single-image invariants of section 11, reporting each kset to a visitor (so
//                  a million keys need no memory).
// What is wrong with the image goes into `problems` (each says what was expected, what was
// found and where); only a failed read is an error (Errc::io). Every walk is bounded: the chain
// by n_segs, the key log by the walker, problems by kProblemsMax.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "pcache/crc32c.hpp"
#include "pcache/format/codec.hpp"
#include "pcache/format/log_walk.hpp"
#include "pcache/result.hpp"

namespace pcache::inspect {

// What the inspector reads through: a size and a bounds-checked copy (PmemDevice satisfies it).
template <class R>
concept ImageReader = requires(const R& r, std::uint64_t off, std::span<std::byte> dst) {
    { r.size() } -> std::convertible_to<std::uint64_t>;
    { r.read(off, dst) } -> std::same_as<Status>;
};

inline constexpr std::size_t kProblemsMax = 1000;  // recorded; more are only counted

struct Problems {
    std::vector<std::string> list;
    std::uint64_t count = 0;
    void add(std::string what) {
        if (list.size() < kProblemsMax) list.push_back(std::move(what));
        ++count;
    }
    bool empty() const { return count == 0; }
};

// A log position: cache segment id and byte offset in its data area.
using Pos = LogPos;

// One copy of a duplicated record, with its verdicts.
template <format::MetaRecord T>
struct Copy {
    std::uint64_t offset_bytes = 0;
    T record{};  // the bytes as found, valid or not
    bool crc_ok = false;
    bool newest = false;         // the copy a loader selects (newest CRC-valid, ties to slot 0)
    bool never_written = false;  // all bytes zero: the slot has not been used yet
    std::string error;           // why the CRC or the semantic check failed (empty when valid)
};

template <format::MetaRecord T>
struct Pair {
    std::array<Copy<T>, format::kMetaIndexMax> copies{};
    std::optional<unsigned> newest_slot;
    const T* latest() const { return newest_slot ? &copies[*newest_slot].record : nullptr; }
};

struct Segment {
    std::uint32_t cache_seg_id = 0;
    std::uint32_t phys_seg_id = 0;
    std::uint64_t offset_bytes = 0;
    Pair<format::SegmentInfo> info;
    Pair<format::SegGen> gen;
    std::uint64_t gen_value = 0;  // newest valid seg_gen, 0 without one (as loaders do)
};

enum class State {
    too_small,       // the device cannot even hold a superblock
    blank,           // superblock magic is 0: never formatted
    foreign,         // something else lives here (wrong magic)
    bad_superblock,  // pcache magic, but CRC, flags or seg_num are wrong
    unfinished,      // valid superblock, no valid cache_info: a format that never completed
    cache,           // a cache: see problems for what is wrong inside it
};
inline const char* state_name(State s) {
    switch (s) {
        case State::too_small:
            return "too_small";
        case State::blank:
            return "blank";
        case State::foreign:
            return "foreign";
        case State::bad_superblock:
            return "bad_superblock";
        case State::unfinished:
            return "unfinished";
        case State::cache:
            return "cache";
    }
    return "?";
}

struct Header {
    std::uint64_t device_bytes = 0;
    format::Geometry geometry;
    State state = State::blank;
    std::string state_reason;  // for every state but cache: what was found
    format::Superblock sb{};   // as found
    Pair<format::CacheInfo> info;
    Pair<format::CachePos> key_tail, dirty_tail;
    std::vector<Segment> segments;  // chain order, as far as it could be walked
    bool chain_ok = false;          // all n_segs segments loaded
    bool tails_ok = false;          // both tails have a valid newest copy
    Problems problems;

    std::uint32_t n_segs() const { return info.latest() ? info.latest()->n_segs : 0; }
    std::uint32_t cache_flags() const { return info.latest() ? info.latest()->flags : 0; }
    bool data_crc() const { return (cache_flags() & format::kCacheFlagDataCrc) != 0; }
    std::uint32_t gc_percent() const { return format::gc_percent_of(cache_flags()); }
    // The log can be walked: a cache with its chain and both tails.
    bool walkable() const { return state == State::cache && chain_ok && tails_ok; }
    Pos key_tail_pos() const { return pos_of(key_tail); }
    Pos dirty_tail_pos() const { return pos_of(dirty_tail); }

private:
    static Pos pos_of(const Pair<format::CachePos>& p) {
        const auto* r = p.latest();
        return r ? Pos{r->cache_seg_id, r->seg_off} : Pos{};
    }
};

namespace detail {

template <ImageReader R, format::MetaRecord T, class Validate>
Status read_pair(const R& r, std::uint64_t slot0, std::uint64_t stride, Pair<T>& out,
                 Validate&& validate) {
    std::array<std::array<std::byte, sizeof(T)>, format::kMetaIndexMax> raw{};
    for (unsigned i = 0; i < format::kMetaIndexMax; ++i) {
        Copy<T>& c = out.copies[i];
        c.offset_bytes = slot0 + stride * i;
        PCACHE_TRY(r.read(c.offset_bytes, raw[i]));
        c.record = format::load<T>(raw[i]);
        auto d = format::decode_meta<T>(raw[i], c.offset_bytes);
        c.crc_ok = d.ok();
        c.never_written = true;
        for (std::byte b : raw[i]) c.never_written = c.never_written && b == std::byte{0};
        if (!d.ok()) c.error = d.status().message();
    }
    auto best = format::select_latest<T>(raw[0], out.copies[0].offset_bytes, raw[1],
                                         out.copies[1].offset_bytes);
    if (best) {
        out.newest_slot = best->slot;
        out.copies[best->slot].newest = true;
    }
    for (auto& c : out.copies)
        if (c.crc_ok)
            if (Status s = validate(c.record, c.offset_bytes); !s.ok()) c.error = s.message();
    return {};
}

inline std::string where(std::uint64_t off) { return "device offset " + std::to_string(off); }

}  // namespace detail

// Reads and checks the superblock, cache_info, tails and segment chain. Errors: Errc::io only.
template <ImageReader R>
Result<Header> read_header(const R& r, format::Geometry geo) {
    using namespace format;
    Header h;
    h.device_bytes = r.size();
    h.geometry = geo;
    if (h.device_bytes < kSegmentsOffsetBytes) {
        h.state = State::too_small;
        h.state_reason = "device of " + std::to_string(h.device_bytes) + " B is smaller than the " +
                         std::to_string(kSegmentsOffsetBytes) + " B of pcache metadata";
        return h;
    }
    std::array<std::byte, kSuperblockBytes> sb_raw{};
    PCACHE_TRY(r.read(kSuperblockOffsetBytes, sb_raw));
    h.sb = load<Superblock>(sb_raw);
    auto sb = decode_superblock(sb_raw, h.device_bytes, geo);
    if (!sb.ok()) {
        h.state = sb.code() == Errc::not_found     ? State::blank
                  : h.sb.magic != kSuperblockMagic ? State::foreign
                                                   : State::bad_superblock;
        h.state_reason = sb.status().message();
        return h;
    }
    const std::uint32_t seg_num = sb->seg_num;
    PCACHE_TRY(detail::read_pair(r, kCacheInfoOffsetBytes, kCacheInfoSlotStrideBytes, h.info,
                                 [&](const CacheInfo& ci, std::uint64_t at) {
                                     return validate_cache_info(ci, seg_num, at);
                                 }));
    const CacheInfo* ci = h.info.latest();
    if (!ci) {
        h.state = State::unfinished;
        h.state_reason = "superblock is valid but neither cache_info copy (" +
                         detail::where(kCacheInfoOffsetBytes) + ", " +
                         detail::where(kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes) +
                         ") has a valid CRC: a format that never completed";
        return h;
    }
    h.state = State::cache;
    if (const auto& c = h.info.copies[*h.info.newest_slot]; !c.error.empty()) {
        h.problems.add(c.error);
        return h;  // n_segs or seg_id cannot be trusted: stop here
    }
    if (ci->n_segs != seg_num)
        h.problems.add("cache_info.n_segs: " + std::to_string(ci->n_segs) + ", expected seg_num " +
                       std::to_string(seg_num) + " (every formatter uses the whole device)");
    if (!(ci->flags & kCacheFlagInitDone))
        h.problems.add("cache_info.flags: INIT_DONE (0x2) is not set in the newest copy");
    const std::uint64_t data_bytes = geo.seg_data_bytes();
    for (const auto& [pair_, addr_, name_] :
         {std::tuple{&h.key_tail, kKeyTailOffsetBytes, "key_tail"},
          std::tuple{&h.dirty_tail, kDirtyTailOffsetBytes, "dirty_tail"}}) {
        Pair<CachePos>* pair = pair_;  // plain copies: clang 14 cannot capture bindings
        const std::uint64_t addr = addr_;
        const char* name = name_;
        PCACHE_TRY(detail::read_pair(r, addr, kPosSlotStrideBytes, *pair,
                                     [&](const CachePos& p, std::uint64_t at) {
                                         return validate_pos(p, ci->n_segs, data_bytes, name, at);
                                     }));
        if (!pair->newest_slot)
            h.problems.add(std::string("no valid ") + name + " copy at " + detail::where(addr) +
                           " or " + detail::where(addr + kPosSlotStrideBytes));
        else if (const auto& c = pair->copies[*pair->newest_slot]; !c.error.empty())
            h.problems.add(c.error);
    }
    h.tails_ok = h.key_tail.newest_slot && h.dirty_tail.newest_slot &&
                 h.key_tail.copies[*h.key_tail.newest_slot].error.empty() &&
                 h.dirty_tail.copies[*h.dirty_tail.newest_slot].error.empty();
    // The chain: n_segs distinct physical segments from cache_info.seg_id (bounded by n_segs).
    std::vector<bool> seen(seg_num, false);
    std::uint32_t phys = ci->seg_id;
    for (std::uint32_t i = 0; i < ci->n_segs; ++i) {
        if (seen[phys]) {
            h.problems.add("segment chain visits physical segment " + std::to_string(phys) +
                           " twice (at cache segment " + std::to_string(i) + ")");
            return h;
        }
        seen[phys] = true;
        Segment s;
        s.cache_seg_id = i;
        s.phys_seg_id = phys;
        s.offset_bytes = geo.segment_offset(phys);
        PCACHE_TRY(detail::read_pair(r, s.offset_bytes, kSegInfoSlotStrideBytes, s.info,
                                     [&](const SegmentInfo& si, std::uint64_t at) {
                                         return validate_segment_info(si, seg_num, at);
                                     }));
        PCACHE_TRY(detail::read_pair(r, s.offset_bytes + kSegCtrlOffsetBytes,
                                     kSegGenSlotStrideBytes, s.gen,
                                     [](const SegGen&, std::uint64_t) { return Status(); }));
        if (const SegGen* g = s.gen.latest()) s.gen_value = g->gen;
        const SegmentInfo* si = s.info.latest();
        const std::string name = "cache segment " + std::to_string(i) + " (physical " +
                                 std::to_string(phys) + ", " + detail::where(s.offset_bytes) + ")";
        h.segments.push_back(s);
        if (!si) {
            h.problems.add(name + ": no segment_info copy has a valid CRC");
            return h;
        }
        if (const auto& c = s.info.copies[*s.info.newest_slot]; !c.error.empty()) {
            h.problems.add(name + ": " + c.error);
            return h;
        }
        if (i + 1 == ci->n_segs) break;
        if (!(si->flags & kSegInfoFlagHasNext)) {
            h.problems.add(name + ": the chain ends here (no HAS_NEXT) but cache_info.n_segs is " +
                           std::to_string(ci->n_segs));
            return h;
        }
        phys = si->next_seg;
    }
    h.chain_ok = true;
    return h;
}

// ---- the key log ------------------------------------------------------------------------

struct KeyView {
    format::KeyOnMedia key{};
    std::uint64_t offset_bytes = 0;   // device offset of the key
    bool valid = true;                // passed validate_key (and the backing bound)
    bool stale = false;               // seg_gen < the segment's generation
    bool dirty = false;               // flags 0 and at or after dirty_tail: not yet written back
    std::optional<bool> data_crc_ok;  // checked when WalkOptions::verify_data_crc and DATA_CRC
};

struct KsetEvent {
    Pos pos;
    std::uint64_t offset_bytes = 0;
    format::KsetKind kind = format::KsetKind::normal;  // normal or last
    std::uint32_t key_num = 0;
    std::uint32_t next_cache_seg_id = 0;  // LAST only
    bool written_back = false;            // before dirty_tail
    std::span<const KeyView> keys;
};

struct WalkOptions {
    std::uint64_t backing_bytes = 0;  // 0: unknown, keys are not checked against it
    bool verify_data_crc = false;     // read each live key's data and check its CRC
};

struct LogSummary {
    Pos key_head;            // where the log ends (what a load recovers)
    std::string end_reason;  // why key_head ends the log
    bool complete = false;   // the walk reached the end without a fatal problem
    bool reached_dirty_tail = false;
    std::uint64_t ksets = 0, last_ksets = 0, keys = 0, stale_keys = 0;
    std::uint64_t dirty_keys = 0, dirty_bytes = 0;  // not yet written back
    std::uint64_t clean_bytes_cached = 0;           // live keys already on the backing device
    std::uint64_t data_crc_errors = 0;
    std::uint32_t segs_used = 0;                   // as a load marks them (status field 4)
    std::vector<bool> kset_segment, data_segment;  // by cache segment id
    Problems problems;
};

template <ImageReader R>
Status check_key(const R& r, const Header& h, const WalkOptions& opt, LogSummary& out, KeyView& kv,
                 std::vector<std::byte>& data);

namespace detail {

// The image's key log as the walker reads it (format/log_walk.hpp). Needs h.walkable().
template <ImageReader R>
struct ImageLog {
    const R& r;
    const Header& h;
    std::uint32_t n_segs() const { return h.n_segs(); }
    std::uint64_t seg_data_bytes() const { return h.geometry.seg_data_bytes(); }
    std::uint64_t log_addr(Pos p) const {
        return h.geometry.data_offset(h.segments[p.seg].phys_seg_id) + p.off;
    }
    Status read(std::uint64_t off, std::span<std::byte> dst) const { return r.read(off, dst); }
};

}  // namespace detail

// Walks the key log from key_tail. Precondition: h.walkable(). Errors: those of the reader
// (Errc::io); what the walker finds impossible (Errc::corrupt) is a problem that ends the walk.
template <ImageReader R, class Visitor>
Result<LogSummary> walk_log(const R& r, const Header& h, const WalkOptions& opt, Visitor&& visit) {
    LogSummary out;
    if (!h.walkable()) {
        out.problems.add("the key log cannot be walked: the header has problems");
        return out;
    }
    const std::uint32_t n_segs = h.n_segs();
    out.kset_segment.assign(n_segs, false);
    out.data_segment.assign(n_segs, false);
    out.kset_segment[h.key_tail_pos().seg] = true;
    std::vector<std::byte> data;
    std::vector<KeyView> keys;
    const WalkSpec spec{.from = h.key_tail_pos(), .mark = h.dirty_tail_pos()};
    auto walked = pcache::walk_log(
        detail::ImageLog<R>{r, h}, spec, [&](const KsetAt& at) -> Result<WalkStep> {
            const format::KsetView& v = at.view;
            ++out.ksets;
            out.reached_dirty_tail = at.past_mark;
            KsetEvent ev{at.pos, at.addr, v.kind, v.key_num(), 0, !at.past_mark, {}};
            if (v.kind == format::KsetKind::last) {
                ev.next_cache_seg_id = at.next.seg;
                ++out.last_ksets;
                out.kset_segment[at.next.seg] = true;
                visit(ev);
                return WalkStep::next;
            }
            keys.clear();
            for (std::uint32_t i = 0; i < v.key_num(); ++i) {
                KeyView kv;
                kv.key = v.key(i);
                kv.offset_bytes = at.addr + format::kset_bytes(i);
                PCACHE_TRY(check_key(r, h, opt, out, kv, data));
                keys.push_back(kv);
            }
            ev.keys = keys;
            visit(ev);
            return WalkStep::next;
        });
    if (!walked.ok()) {
        if (walked.code() != Errc::corrupt) return walked.status();
        out.problems.add(walked.status().message());
        return out;
    }
    out.key_head = walked->pos;
    out.end_reason = walked->end_reason;
    out.complete = true;
    out.reached_dirty_tail = walked->mark_reached;
    if (!out.reached_dirty_tail)
        out.problems.add("key log ends at " + out.key_head.str() + " before reaching dirty_tail " +
                         h.dirty_tail_pos().str() +
                         " (a kset in the middle is corrupt, or dirty_tail is "
                         "not on a kset boundary)");
    for (std::uint32_t s = 0; s < n_segs; ++s) {
        if (out.kset_segment[s] && out.data_segment[s])
            out.problems.add("cache segment " + std::to_string(s) +
                             " holds both ksets of the live log and live cached data");
        if (out.kset_segment[s] || out.data_segment[s]) ++out.segs_used;
    }
    return out;
}

// One key of a CRC-valid kset (section 11, invariants 6 and 8).
template <ImageReader R>
Status check_key(const R& r, const Header& h, const WalkOptions& opt, LogSummary& out, KeyView& kv,
                 std::vector<std::byte>& data) {
    using namespace format;
    const KeyOnMedia& k = kv.key;
    ++out.keys;
    if (Status s = validate_key(k, h.n_segs(), h.geometry.seg_data_bytes(), kv.offset_bytes);
        !s.ok()) {
        kv.valid = false;
        out.problems.add(s.message());
        return {};
    }
    if (opt.backing_bytes != 0 && k.off + k.len > opt.backing_bytes) {
        kv.valid = false;
        out.problems.add("key at " + detail::where(kv.offset_bytes) + ": backing range [" +
                         std::to_string(k.off) + ", +" + std::to_string(k.len) +
                         ") ends beyond the backing device (" + std::to_string(opt.backing_bytes) +
                         " B): wrong or truncated backing device?");
        return {};
    }
    const std::uint64_t gen = h.segments[k.cache_seg_id].gen_value;
    if (k.seg_gen > gen)
        out.problems.add("key.seg_gen at " + detail::where(kv.offset_bytes + 24) + ": " +
                         std::to_string(k.seg_gen) + " is newer than cache segment " +
                         std::to_string(k.cache_seg_id) + "'s generation " + std::to_string(gen));
    kv.stale = k.seg_gen < gen;
    kv.dirty = out.reached_dirty_tail && !(k.flags & kKeyFlagClean);
    if (kv.dirty) {
        ++out.dirty_keys;
        out.dirty_bytes += k.len;
    }
    if (kv.stale) {
        ++out.stale_keys;
        if (kv.dirty)
            out.problems.add("dirty key at " + detail::where(kv.offset_bytes) +
                             " is stale (seg_gen " + std::to_string(k.seg_gen) + " < " +
                             std::to_string(gen) +
                             "): its data was lost before it was written back");
        return {};
    }
    out.data_segment[k.cache_seg_id] = true;
    if (!kv.dirty) out.clean_bytes_cached += k.len;
    if (opt.verify_data_crc && h.data_crc()) {
        data.resize(k.len);
        const std::uint64_t at =
            h.geometry.data_offset(h.segments[k.cache_seg_id].phys_seg_id) + k.cache_seg_off;
        PCACHE_TRY(r.read(at, data));
        const std::uint32_t c = crc::kcrc(data.data(), data.size());
        kv.data_crc_ok = c == k.data_crc;
        if (c != k.data_crc) {
            ++out.data_crc_errors;
            out.problems.add("key at " + detail::where(kv.offset_bytes) + ": data CRC stored " +
                             hex(k.data_crc) + ", computed " + hex(c) + " over " +
                             std::to_string(k.len) + " B at " + detail::where(at));
        }
    }
    return {};
}

// The kernel's status line for this image as a load would report it (dm-pcache-format.md
// 10.2): "%x %u %u %u %u %x %u:%u %u:%u %u:%u". Precondition: h.walkable().
inline std::string status_line(const Header& h, const LogSummary& log) {
    char buf[160];
    const Pos dt = h.dirty_tail_pos(), kt = h.key_tail_pos();
    std::snprintf(buf, sizeof buf, "%x %u %u %u %u %x %u:%u %u:%u %u:%u", h.sb.flags, h.sb.seg_num,
                  h.n_segs(), log.segs_used, h.gc_percent(), h.cache_flags(), log.key_head.seg,
                  log.key_head.off, dt.seg, dt.off, kt.seg, kt.off);
    return buf;
}

}  // namespace pcache::inspect
