// Formatting and opening a cache [cache_dev.c, cache.c]: Cache::format writes a new cache,
// Cache::open loads a valid one, Cache::open_read_only loads one into memory only.
//
// Load order (dm-pcache-format.md 9.1): superblock, newest valid cache_info, segment chain
// with each segment's newest segment_info and seg_gen, key_tail and dirty_tail, replay, then
// cache_info is rewritten with INIT_DONE. Every check runs before the first write, so a
// refused device is never modified.
#pragma once

#include <array>

#include "pcache/cache/cache.hpp"

namespace pcache {

// How many lanes (as asked, or one per CPU up to what the cache carries); the key log keeps
// room to close every lane's kset buffer (the key-log reserve). Sets opts_.n_lanes.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::check_ksets_fit(std::uint32_t segs) {
    // Lanes: as asked, or one per CPU up to what the cache can carry. Every lane's data head
    // may pin a segment while its CPU is idle, so writes progress (docs/design.md "Lanes")
    // only if the segments left to the log and one active head keep the reserve rule (A):
    // (segs - lanes - 1) x P >= lanes.
    auto lanes_fit = [&](std::uint64_t lanes) {
        return segs > lanes + 1 && (segs - lanes - 1) * std::uint64_t(per_seg_ksets_) >= lanes;
    };
    std::uint32_t lanes = opts_.n_lanes ? opts_.n_lanes : opts_.n_ksets;
    if (lanes == 0) {
        lanes = std::clamp<std::uint32_t>(cpu_count_of(pmem_), 1, kLanesMax);
        while (lanes > 1 && !lanes_fit(lanes)) --lanes;
    }
    if (segs != 0 && !lanes_fit(lanes))
        return {Errc::invalid_argument,
                std::to_string(lanes) + " lanes: " + std::to_string(lanes) +
                    " kset buffers and data heads need at least " +
                    std::to_string(lanes + 2 + (lanes - 1) / per_seg_ksets_) +
                    " cache segments (the key log keeps room to close every buffer while every "
                    "head holds one); this cache has " +
                    std::to_string(segs)};
    opts_.n_lanes = lanes;
    return {};
}

// Writes a new cache. Every refusal comes before the first write.
// The superblock as the cache device holds it (not_found: a blank device).
template <PmemDevice Pmem, BlockDevice Block>
Result<format::Superblock> Cache<Pmem, Block>::read_superblock() const {
    std::array<std::byte, format::kSuperblockBytes> raw{};
    PCACHE_TRY(pmem_.read(format::kSuperblockOffsetBytes, raw));
    return format::decode_superblock(raw, pmem_.size(), opts_.geometry);
}

// The newer CRC-valid cache_info slot, if either is (not yet checked against the superblock).
template <PmemDevice Pmem, BlockDevice Block>
Result<std::optional<format::Latest<format::CacheInfo>>>
Cache<Pmem, Block>::read_latest_cache_info() const {
    using format::kCacheInfoOffsetBytes, format::kCacheInfoSlotStrideBytes;
    std::array<std::byte, format::kCacheInfoBytes> s0{}, s1{};
    PCACHE_TRY(pmem_.read(kCacheInfoOffsetBytes, s0));
    PCACHE_TRY(pmem_.read(kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes, s1));
    return format::select_latest<format::CacheInfo>(
        s0, kCacheInfoOffsetBytes, s1, kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes);
}

// How many of the largest ksets (plus a LAST kset) a fresh segment holds.
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::size_key_log() {
    per_seg_ksets_ = static_cast<std::uint32_t>((seg_data_bytes() - format::kKsetHeaderBytes) /
                                                format::kKsetBytesMax);
    assert(per_seg_ksets_ >= 1);  // Geometry::validate: a segment holds the largest kset
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::format_device() {
    auto sb = read_superblock();
    if (!opts_.force_format) {
        if (!sb.ok() && sb.code() != Errc::not_found)
            return sb.status().with_context(
                "the cache device holds a corrupt superblock (force_format formats it anyway)");
        if (sb.ok()) {
            sb_ = *sb;
            auto info = read_latest_cache_info();
            if (!info.ok()) return info.status();
            if (*info)
                return {Errc::invalid_argument,
                        "the cache device holds a pcache cache: format refuses to overwrite it "
                        "(force_format discards what it holds)"};
            PCACHE_TRY(require_empty_log_for_reformat());  // a format that never finished
        }
    }
    const std::uint64_t n = opts_.geometry.seg_num_for(pmem_.size());
    sb_ = format::make_superblock(
        static_cast<std::uint32_t>(std::min<std::uint64_t>(n, format::kCacheSegsMax)));
    size_key_log();
    PCACHE_TRY(check_ksets_fit(sb_.seg_num));
    PCACHE_TRY(format_superblock());  // (re)initialises the superblock and metadata pages
    info_ = format::CacheInfo{};
    info_.n_segs = sb_.seg_num;
    info_.flags = format::kGcPercentDefault << format::kCacheFlagGcPercentShift;
    if (opts_.data_crc) info_.flags |= format::kCacheFlagDataCrc;
    info_index_ = 0;
    n_segs_ = info_.n_segs;
    segs_.reset(new Segment[n_segs_]);
    PCACHE_TRY(init_segments_new());
    PCACHE_TRY(init_tails_new());
    return finish_open();
}

// Loads an existing cache. Writes only at the end (cache_info with INIT_DONE), and not at all
// read-only.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::load_device() {
    auto sb = read_superblock();
    if (sb.code() == Errc::not_found)
        return sb.status().with_context(
            "no pcache cache on the cache device (a blank device: create one with format)");
    if (!sb.ok()) return sb.status();
    sb_ = *sb;
    auto found = load_cache_info();
    if (!found.ok()) return found.status();
    if (!*found)
        return {Errc::not_found,
                "the cache device holds a superblock but no valid cache_info: a format that "
                "never finished (run format again)"};
    size_key_log();
    PCACHE_TRY(check_ksets_fit(info_.n_segs));
    n_segs_ = info_.n_segs;
    segs_.reset(new Segment[n_segs_]);
    PCACHE_TRY(load_segments());
    PCACHE_TRY(load_tails());
    return finish_open();
}

// Shared tail of format and load: in-memory structures, replay, INIT_DONE.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::finish_open() {
    seg_used_.assign(n_segs_, false);
    subtrees_ = std::vector<CacheSubtree>((backing_bytes_ + format::kSubtreeBytes - 1) /
                                          format::kSubtreeBytes);
    lanes_ = std::vector<Lane>(opts_.n_lanes);
    const std::uint64_t replay_start_ns = opts_.clock_ns ? opts_.clock_ns() : 0;
    PCACHE_TRY(replay());
    {
        std::lock_guard g(seg_mutex_);
        set_log_room_locked(key_head_);
    }
    if (opts_.clock_ns) counters_.replay_duration_ns = opts_.clock_ns() - replay_start_ns;
    if (read_only_) return {};
    info_.flags |= format::kCacheFlagInitDone;
    return write_cache_info();
}

// Superblock stage of formatting: zero both cache_info slots and the cache_ctrl page, fence,
// then write the superblock. (The kernel fences once for both; a crash could then leave a new
// superblock over stale metadata pages, so pcache fences in between.)
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::format_superblock() {
    const std::uint64_t begin = format::kCacheInfoOffsetBytes;
    const std::vector<std::byte> zeros(format::kSegmentsOffsetBytes - begin);
    PCACHE_TRY(pmem_.write(begin, zeros, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    if (sb_.seg_num == 0) return {Errc::no_space, "cache device holds no segment"};
    // The 24-byte superblock may tear at 8-byte boundaries. Its magic (aligned, at +8) is the
    // commit word: cleared first, the other fields fenced, then set. A power cut mid-format thus
    // leaves a blank device (which format formats again), never a corrupt superblock.
    constexpr std::uint64_t kMagicAt = format::kSuperblockOffsetBytes + 8;
    auto raw = format::to_bytes(sb_);
    std::array<std::byte, format::kSuperblockBytes> old{};
    PCACHE_TRY(pmem_.read(format::kSuperblockOffsetBytes, old));
    if (old == raw) return {};
    const std::array<std::byte, 8> magic_zero{};
    PCACHE_TRY(pmem_.write(kMagicAt, magic_zero, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    std::array<std::byte, 8> magic{};
    std::memcpy(magic.data(), raw.data() + 8, 8);
    std::memset(raw.data() + 8, 0, 8);
    PCACHE_TRY(pmem_.write(format::kSuperblockOffsetBytes, raw, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    PCACHE_TRY(pmem_.write(kMagicAt, magic, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    return {};
}

// Newest valid cache_info (3.2). Returns false when there is none (a new cache).
template <PmemDevice Pmem, BlockDevice Block>
Result<bool> Cache<Pmem, Block>::load_cache_info() {
    using format::kCacheInfoOffsetBytes, format::kCacheInfoSlotStrideBytes;
    auto found = read_latest_cache_info();
    if (!found.ok()) return found.status();
    const auto& latest = *found;
    if (!latest) return false;
    const std::uint64_t where = kCacheInfoOffsetBytes + latest->slot * kCacheInfoSlotStrideBytes;
    PCACHE_TRY(format::validate_cache_info(latest->record, sb_.seg_num, where));
    const bool image_crc = (latest->record.flags & format::kCacheFlagDataCrc) != 0;
    if (image_crc != opts_.data_crc)
        return Status(Errc::invalid_argument, std::string("data_crc option is ") +
                                                  (opts_.data_crc ? "true" : "false") +
                                                  " but the cache was created with data_crc " +
                                                  (image_crc ? "true" : "false"));
    info_ = latest->record;
    info_index_ = latest->slot;
    return true;
}

// A valid superblock without a valid cache_info is a format that never finished, unless the
// key log holds ksets; then data would be lost by re-formatting, and pcache refuses (0.1.8).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::require_empty_log_for_reformat() {
    if (opts_.force_format) return {};
    std::array<std::byte, format::kCacheCtrlBytes> ctrl{};
    PCACHE_TRY(pmem_.read(format::kCacheCtrlOffsetBytes, ctrl));
    const auto b = std::span<const std::byte>(ctrl);
    auto kt = format::select_latest<format::CachePos>(b.subspan(0, 16), format::kKeyTailOffsetBytes,
                                                      b.subspan(16, 16),
                                                      format::kKeyTailOffsetBytes + 16);
    if (!kt) return {};
    const auto& p = kt->record;
    if (p.cache_seg_id >= sb_.seg_num || p.seg_off + format::kKsetHeaderBytes > seg_data_bytes())
        return {};
    // Before cache_info exists the chain is the formatter's: cache segment i is physical i.
    const std::uint64_t addr = opts_.geometry.data_offset(p.cache_seg_id) + p.seg_off;
    std::vector<std::byte> win(
        std::min<std::uint64_t>(format::kKsetBytesMax, seg_data_bytes() - p.seg_off));
    PCACHE_TRY(pmem_.read(addr, win));
    auto v = format::decode_kset(win, sb_.seg_num, addr);
    if (v.ok() && v->kind == format::KsetKind::end) return {};
    return {Errc::corrupt,
            "superblock is valid but no cache_info copy is, and the key log at device offset " +
                std::to_string(addr) +
                " is not empty: refusing to re-format a cache that may hold data "
                "(format with force to discard it)"};
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::write_meta(std::uint64_t slot0_addr, std::uint64_t stride,
                                      unsigned index, std::span<const std::byte> record) {
    if constexpr (mutant(9)) index = 0;  // M9: updated in place by one wide copy assumed atomic
    PCACHE_TRY(pmem_.write(slot0_addr + stride * index, record, kPmemFlushCache));
    if constexpr (mutant(8))  // M8: both copies written in one persistence epoch
        PCACHE_TRY(pmem_.write(slot0_addr + stride * (index ^ 1u), record, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    return {};
}

// Advance-then-write (the 6.18.y/6.19 discipline): the newest copy is never overwritten.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::write_cache_info() {
    std::lock_guard g(info_mutex_);
    info_index_ = (info_index_ + 1) % format::kMetaIndexMax;
    format::seal(info_, static_cast<std::uint8_t>(info_.header.seq + 1));
    return write_meta(format::kCacheInfoOffsetBytes, format::kCacheInfoSlotStrideBytes, info_index_,
                      format::to_bytes(info_));
}

// A new cache's chain: cache segment i is physical segment i (the kernel's allocator on an
// empty device), each linked to the next, each with gen 0 and an empty kset at its data start.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::init_segments_new() {
    const std::vector<std::byte> zeros(format::kSegDataOffsetBytes);
    const std::array<std::byte, format::kKsetHeaderBytes> empty_kset{};
    for (std::uint32_t i = 0; i < n_segs_; ++i) {
        Segment& s = segs_[i];
        s.phys = i;
        if (i > 0) {
            segs_[i - 1].info.flags |= format::kSegInfoFlagHasNext;
            segs_[i - 1].info.next_seg = i;
            PCACHE_TRY(write_seg_info(i - 1));
        }
        PCACHE_TRY(pmem_.write(opts_.geometry.segment_offset(i), zeros, kPmemFlushCache));
        PCACHE_TRY(pmem_.drain());
        {
            std::lock_guard g(seg_mutex_);
            PCACHE_TRY(write_seg_gen_locked(i));
        }
        s.info = format::SegmentInfo{};
        s.info.flags = format::kSegTypeCacheData << format::kSegInfoTypeShift;
        PCACHE_TRY(write_seg_info(i));
        PCACHE_TRY(pmem_.write(data_addr(i, 0), empty_kset, kPmemFlushCache));
        PCACHE_TRY(pmem_.drain());
    }
    return {};
}

// Walks the chain from cache_info.seg_id, bounded by n_segs and refusing a cycle.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::load_segments() {
    std::vector<bool> seen(sb_.seg_num, false);
    std::uint32_t phys = info_.seg_id;
    for (std::uint32_t i = 0; i < n_segs_; ++i) {
        if (seen[phys])
            return {Errc::corrupt, "segment chain visits physical segment " + std::to_string(phys) +
                                       " twice (at cache segment " + std::to_string(i) + ")"};
        seen[phys] = true;
        const std::uint64_t base = opts_.geometry.segment_offset(phys);
        std::array<std::byte, format::kSegInfoBytes> i0{}, i1{};
        PCACHE_TRY(pmem_.read(base, i0));
        PCACHE_TRY(pmem_.read(base + format::kSegInfoSlotStrideBytes, i1));
        auto info = format::select_latest<format::SegmentInfo>(
            i0, base, i1, base + format::kSegInfoSlotStrideBytes);
        if (!info)
            return {Errc::corrupt,
                    "cache segment " + std::to_string(i) + " (physical " + std::to_string(phys) +
                        "): no valid segment_info copy at device offset " + std::to_string(base)};
        PCACHE_TRY(format::validate_segment_info(
            info->record, sb_.seg_num, base + info->slot * format::kSegInfoSlotStrideBytes));
        Segment& s = segs_[i];
        s.phys = phys;
        s.info = info->record;
        s.info_index = info->slot;
        const std::uint64_t gbase = base + format::kSegCtrlOffsetBytes;
        std::array<std::byte, format::kSegGenBytes> g0{}, g1{};
        PCACHE_TRY(pmem_.read(gbase, g0));
        PCACHE_TRY(pmem_.read(gbase + format::kSegGenSlotStrideBytes, g1));
        if (auto gen = format::select_latest<format::SegGen>(g0, gbase, g1, gbase + 16)) {
            s.gen.store(gen->record.gen);
            s.gen_seq = gen->record.header.seq;
            s.gen_index = gen->slot;
        }  // no valid copy: generation 0, as the kernel loads it
        if (i + 1 < n_segs_) {
            if (!(s.info.flags & format::kSegInfoFlagHasNext))
                return {Errc::corrupt, "segment chain ends at cache segment " + std::to_string(i) +
                                           " but cache_info.n_segs is " + std::to_string(n_segs_)};
            phys = s.info.next_seg;
        }
    }
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::init_tails_new() {
    key_head_ = LogPos{0, 0};
    key_tail_ = Tail{key_head_, 0, 0};
    dirty_tail_ = Tail{key_head_, 0, 0};
    std::lock_guard g(tail_mutex_);
    PCACHE_TRY(write_tail(dirty_tail_, format::kDirtyTailOffsetBytes));
    return write_tail(key_tail_, format::kKeyTailOffsetBytes);
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::load_tails() {
    std::array<std::byte, format::kCacheCtrlBytes> ctrl{};
    PCACHE_TRY(pmem_.read(format::kCacheCtrlOffsetBytes, ctrl));
    const auto b = std::span<const std::byte>(ctrl);
    auto load = [&](Tail& t, std::uint64_t addr, std::size_t at, const char* name) -> Status {
        auto p = format::select_latest<format::CachePos>(b.subspan(at, 16), addr,
                                                         b.subspan(at + 16, 16), addr + 16);
        if (!p)
            return {Errc::corrupt, std::string("no valid ") + name + " copy at device offset " +
                                       std::to_string(addr)};
        PCACHE_TRY(
            format::validate_pos(p->record, n_segs_, seg_data_bytes(), name, addr + 16 * p->slot));
        t.pos = LogPos{p->record.cache_seg_id, p->record.seg_off};
        t.seq = p->record.header.seq;
        // The kernel next overwrites the newest copy (write-then-advance from the slot found);
        // pcache writes the other slot first, so a torn update never leaves no valid copy.
        t.index = (p->slot + 1) % format::kMetaIndexMax;
        return {};
    };
    PCACHE_TRY(load(key_tail_, format::kKeyTailOffsetBytes, 0, "key_tail"));
    return load(dirty_tail_, format::kDirtyTailOffsetBytes, 32, "dirty_tail");
}

// Write-then-advance, as every kernel writes key_tail and dirty_tail (3.4).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::write_tail(Tail& t, std::uint64_t slot0_addr) {
    // Always on: a tail is persisted only inside a data area, with room for a kset header.
    PCACHE_VERIFY(t.pos.seg < n_segs_ && t.pos.off + format::kKsetHeaderBytes <= seg_data_bytes(),
                  "tail at " + t.pos.str() + " is outside the data areas");
    format::CachePos rec{};
    rec.cache_seg_id = t.pos.seg;
    rec.seg_off = t.pos.off;
    format::seal(rec, static_cast<std::uint8_t>(++t.seq));
    const unsigned slot = t.index;
    t.index = (t.index + 1) % format::kMetaIndexMax;
    return write_meta(slot0_addr, format::kPosSlotStrideBytes, slot, format::to_bytes(rec));
}

}  // namespace pcache
