// The one walker of the key log [cache_key.c: cache_replay, and every other reader of the log].
//
// Replay, writeback, GC, the invariant checker and the read-only inspector all read the same
// chain of ksets: from a tail, kset after kset inside a segment's data area, hopping to the next
// kset segment through a LAST kset, until an end marker (or a caller-given position such as
// key_head). This file is that walk, once. Each caller keeps only what it does with a kset
// (a visitor) and reads through a LogSource, so the engine walks its PmemDevice and the
// inspector a raw image without a Cache.
//
// Bounds (dm-pcache-format.md 9.4, 9.5; the kernel fixed six unbounded walks in 2026): every
// position is checked against n_segs and the data area before it is read; at most
// log_ksets_max() ksets per walk (more than the cache can hold is a cycle); a LAST kset never
// leads back to a kset segment of the same walk and there are at most n_segs hops; a normal
// kset must leave room for a LAST kset after it (writers keep it, 5.5); a kset is read header
// first and then only the bytes its header claims, never past the data area nor kKsetBytesMax.
// Nothing read from media is trusted: everything impossible ends the walk with Errc::corrupt.
//
// The first position without a complete, CRC-valid kset ends the log: the normal end marker, or
// a kset torn by a crash while it was being written (WalkEnd::end_reason says which). A walk
// with an `until` position (key_head, dirty_tail) must reach it: an end marker before it is
// corrupt, since everything before `until` was durable.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pcache/format/codec.hpp"
#include "pcache/mutation.hpp"
#include "pcache/result.hpp"

namespace pcache {

// A position in the key log: cache segment id and offset in its data area.
struct LogPos {
    std::uint32_t seg = 0;
    std::uint32_t off = 0;
    bool operator==(const LogPos&) const = default;
    std::string str() const { return std::to_string(seg) + ":" + std::to_string(off); }
};

// Where the log continues after the valid kset `v` at `pos`: the next cache segment's start for
// a LAST kset, the byte after the kset otherwise.
inline LogPos log_pos_after(LogPos pos, const format::KsetView& v) {
    if (v.kind == format::KsetKind::last) return LogPos{v.next_cache_seg_id(), 0};
    return LogPos{pos.seg, pos.off + static_cast<std::uint32_t>(v.size_bytes())};
}

// The most ksets a log of n_segs segments can hold: more in one walk means a cycle.
inline std::uint64_t log_ksets_max(std::uint32_t n_segs, std::uint64_t seg_data_bytes) {
    return std::uint64_t(n_segs) * (seg_data_bytes / format::kset_bytes(1) + 1);
}

// What the walker reads through: the cache's shape and a bounds-checked copy from the device.
// log_addr is only called with seg < n_segs() and off <= seg_data_bytes().
template <class S>
concept LogSource = requires(const S& s, LogPos p, std::uint64_t off, std::span<std::byte> dst) {
    { s.n_segs() } -> std::convertible_to<std::uint32_t>;
    { s.seg_data_bytes() } -> std::convertible_to<std::uint64_t>;
    { s.log_addr(p) } -> std::convertible_to<std::uint64_t>;  // device offset of a position
    { s.read(off, dst) } -> std::same_as<Status>;
};

// An optional log position. Not std::optional: g++ 12 at -O1 (the sanitizer builds) warns that
// a disengaged std::optional's payload "may be used uninitialized" where it is only read
// after the engaged check (GCC bug 80635), and the build treats warnings as errors.
struct MaybePos {
    bool set = false;
    LogPos pos{};
    MaybePos() = default;
    MaybePos(LogPos p) : set(true), pos(p) {}  // NOLINT: implicit, as std::optional's
    explicit operator bool() const { return set; }
    const LogPos& operator*() const { return pos; }
    const LogPos* operator->() const { return &pos; }
};

struct WalkSpec {
    LogPos from{};     // a tail
    MaybePos until{};  // the walk ends on reaching it (not read); must be reached
    const char* until_name = "key_head";
    MaybePos mark{};  // KsetAt::past_mark / WalkEnd::mark_reached (dirty_tail)
};

// One decoded kset, handed to the visitor. `view` (normal or last, never end) and its bytes
// live until the visitor returns.
struct KsetAt {
    LogPos pos;
    std::uint64_t addr;  // device offset of the kset
    const format::KsetView& view;
    LogPos next;     // where the log continues
    bool past_mark;  // pos is at or after WalkSpec::mark
};

// The visitor's answer: go on to `next`, or end the walk there (this kset is done).
enum class WalkStep { next, stop };

struct WalkEnd {
    LogPos pos;                 // where the walk ended: end marker, `until`, or after a stop
    bool end_marker = false;    // the log ends at pos (only without `until`)
    std::string end_reason;     // why pos holds no kset (end_marker)
    bool mark_reached = false;  // WalkSpec::mark was at or before pos
    std::uint64_t ksets = 0;    // visited (normal and LAST)
};

namespace detail {

inline Status log_corrupt(LogPos pos, std::uint64_t addr, const std::string& what) {
    return {Errc::corrupt,
            "kset at " + pos.str() + " (device offset " + std::to_string(addr) + "): " + what};
}

// The bytes of the kset at `pos`: its header, then as many bytes as the header says the kset
// holds (never past the data area, never more than kKsetBytesMax). Reading only those bytes
// keeps writeback and GC, which read ksets below key_head, off the bytes a concurrent kset close
// is writing at key_head.
template <LogSource S>
Status read_kset_window(const S& src, LogPos pos, std::uint64_t addr, std::vector<std::byte>& buf) {
    const std::uint64_t avail =
        std::min<std::uint64_t>(format::kKsetBytesMax, src.seg_data_bytes() - pos.off);
    buf.resize(std::min<std::uint64_t>(avail, format::kKsetHeaderBytes));
    PCACHE_TRY(src.read(addr, buf));
    if (buf.size() < format::kKsetHeaderBytes) return {};
    const auto h = format::load<format::KsetHeader>(buf);
    if (h.magic != format::kKsetMagic || (h.flags & format::kKsetFlagLast) ||
        h.key_num_or_next > format::kKsetKeysMax)
        return {};
    buf.resize(std::min(avail, format::kset_bytes(h.key_num_or_next)));
    return src.read(addr + format::kKsetHeaderBytes,
                    std::span(buf).subspan(format::kKsetHeaderBytes));
}

}  // namespace detail

// Walks the key log from spec.from, calling `visit(const KsetAt&) -> Result<WalkStep>` for every
// kset. Errors: Errc::corrupt when the log on media is impossible (the message says what and
// where); any other error comes from the source's read or from the visitor, unchanged.
template <LogSource S, class Visit>
Result<WalkEnd> walk_log(const S& src, const WalkSpec& spec, Visit&& visit) {
    const std::uint32_t n_segs = src.n_segs();
    const std::uint64_t data_bytes = src.seg_data_bytes();
    const std::uint64_t ksets_max = log_ksets_max(n_segs, data_bytes);
    WalkEnd end;
    LogPos pos = spec.from;
    std::vector<bool> kset_segs;  // filled at the first LAST kset: most walks never hop
    std::uint32_t hops = 0;
    std::uint64_t steps = 0;
    std::vector<std::byte> buf;
    for (;;) {
        if (pos.seg >= n_segs || pos.off > data_bytes)
            return Status{Errc::corrupt, "key log position " + pos.str() +
                                             " is outside the cache (" + std::to_string(n_segs) +
                                             " segments of " + std::to_string(data_bytes) +
                                             " B of data)"};
        if (spec.mark && pos == *spec.mark) end.mark_reached = true;
        if (spec.until && pos == *spec.until) break;
        if (++steps > ksets_max && !mutant(11))  // M11: no bound on the kset chain walk
            return Status{Errc::corrupt, "key log: more than " + std::to_string(ksets_max) +
                                             " ksets from " + spec.from.str() +
                                             ", more than the cache can hold (a cycle?)"};
        const std::uint64_t addr = src.log_addr(pos);
        PCACHE_TRY(detail::read_kset_window(src, pos, addr, buf));
        auto v = format::decode_kset(buf, n_segs, addr);
        if (!v.ok()) return v.status();
        if (v->kind == format::KsetKind::end) {
            if (spec.until)
                return detail::log_corrupt(pos, addr,
                                           "no valid kset (" + v->end_reason + ") although " +
                                               spec.until_name + " " + spec.until->str() +
                                               " is further: the key log ends early");
            end.end_marker = true;
            end.end_reason = std::move(v->end_reason);
            break;
        }
        // Every writer keeps room for a LAST kset after a normal one (5.5). Accepting a kset
        // that leaves less would put key_head there, and the next segment switch would write
        // its LAST kset past the data area, over the next segment's segment_info.
        if (v->kind == format::KsetKind::normal &&
            pos.off + v->size_bytes() + format::kKsetHeaderBytes > data_bytes)
            return detail::log_corrupt(pos, addr,
                                       std::to_string(v->size_bytes()) +
                                           " B leave no room for a LAST kset before the end of "
                                           "the segment's data area");
        const LogPos next = log_pos_after(pos, *v);
        ++end.ksets;
        Result<WalkStep> step = visit(KsetAt{pos, addr, *v, next, end.mark_reached});
        if (!step.ok()) return step.status();
        if (v->kind == format::KsetKind::last) {
            if (kset_segs.empty()) {
                kset_segs.assign(n_segs, false);
                kset_segs[spec.from.seg] = true;
            }
            if ((++hops > n_segs || kset_segs[next.seg]) && !mutant(11))
                return detail::log_corrupt(pos, addr,
                                           "LAST kset leads back to kset segment " +
                                               std::to_string(next.seg) +
                                               " (cycle in the kset chain)");
            kset_segs[next.seg] = true;
        }
        pos = next;
        if (*step == WalkStep::stop) break;
    }
    end.pos = pos;
    return end;
}

}  // namespace pcache
