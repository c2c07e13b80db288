// Kset buffers and the key log [cache_key.c].
//
// Keys are buffered per kset buffer ((off >> 22) % n_ksets) and written as one kset when the
// buffer holds 128 keys, on FUA, on FLUSH, on flush_ksets() and on close. Closing a kset
// (dm-pcache-format.md 5.5) keeps room for a LAST kset, switches to a new kset segment when
// needed, and writes the kset followed by a 24-byte end marker. pcache fences the end marker
// before the kset (and the new segment's marker before the LAST kset): the kernel's single
// fence lets a stale kset from an earlier use of the segment surface after a crash (quirk 11).
#pragma once

#include <array>

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::kset_close_locked(KsetBuffer& kb) {
    if (kb.key_num == 0) return {};
    const std::uint64_t size = format::kset_bytes(kb.key_num);
    const std::array<std::byte, format::kKsetHeaderBytes> zeros{};
    std::lock_guard g(key_head_mutex_);
    for (int hop = 0; seg_data_bytes() - key_head_.off < size + format::kKsetHeaderBytes; ++hop) {
        assert(hop == 0);  // a fresh segment always has room for the largest kset
        std::uint32_t next;
        {
            std::lock_guard s(seg_mutex_);
            // Never busy while the reserve holds (log_capacity >= open ksets, this one open).
            auto seg = get_free_segment_locked();
            if (!seg.ok()) return seg.status().with_context("closing a kset (key-log reserve)");
            next = *seg;
        }
        const auto last = format::to_bytes(format::make_last_kset(next));
        if constexpr (mutant(3)) {  // M3: the chain link is durable before the new segment's header
            PCACHE_TRY(pmem_.write(data_addr(key_head_.seg, key_head_.off), last, kPmemFlushCache));
            PCACHE_TRY(pmem_.drain());
        }
        PCACHE_TRY(pmem_.write(data_addr(next, 0), zeros, kPmemFlushCache));
        PCACHE_TRY(pmem_.drain());
        if constexpr (!mutant(3)) {
            PCACHE_TRY(pmem_.write(data_addr(key_head_.seg, key_head_.off), last, kPmemFlushCache));
            PCACHE_TRY(pmem_.drain());
        }
        key_head_ = LogPos{next, 0};
        std::lock_guard s(seg_mutex_);
        set_log_room_locked(key_head_);
    }
    format::KsetHeader h{0, kb.key_num, 0, 0};
    std::memcpy(kb.image.data(), &h, sizeof h);
    format::seal_kset(kb.image);
    const std::uint64_t at = data_addr(key_head_.seg, key_head_.off);
    PCACHE_TRY(pmem_.write(at + size, zeros, kPmemFlushCache));
    PCACHE_TRY(pmem_.drain());
    const auto kset = std::span<const std::byte>(kb.image).first(size);
    if constexpr (mutant(2)) {  // M2: kset flushed (clwb) but not fenced before FLUSH returns
        PCACHE_TRY(pmem_.write(at, kset, kPmemNoDrain));
    } else if constexpr (mutant(14)) {  // M14: non-temporal kset copy, no drain before publishing
        PCACHE_TRY(pmem_.write(at, kset, kPmemFlushCache));
    } else if constexpr (mutant(15)) {  // M15: CRC word stored after the flush, counted as covered
        std::vector<std::byte> unsealed(kset.begin(), kset.end());
        std::memset(unsealed.data(), 0, 4);
        PCACHE_TRY(pmem_.write(at, unsealed, kPmemNoDrain));                      // copy + clwb
        PCACHE_TRY(pmem_.write(at, kset.first(8), kPmemNoFlush | kPmemNoDrain));  // after the clwb
        PCACHE_TRY(pmem_.drain());
    } else {
        PCACHE_TRY(pmem_.write(at, kset, kPmemFlushCache));
        PCACHE_TRY(pmem_.drain());
    }
    key_head_.off += static_cast<std::uint32_t>(size);
    std::memset(kb.image.data(), 0, format::kKsetHeaderBytes);
    kb.key_num = 0;
    {
        std::lock_guard s(seg_mutex_);
        set_log_room_locked(key_head_);
        assert(open_ksets_ > 0);
        --open_ksets_;
    }
    count(&CacheCounters::ksets_written);
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::append_key_locked(KsetBuffer& kb, const CacheKey& key) {
    PCACHE_VERIFY_FATAL(kb.key_num < format::kKsetKeysMax,  // would write past the kset image
                        "kset buffer already holds " + std::to_string(kb.key_num) + " keys");
    const format::KeyOnMedia k{key.off,
                               key.len,
                               key.flags,
                               key.seg,
                               key.seg_off,
                               key.gen,
                               opts_.data_crc ? key.data_crc : 0u,
                               0};
    std::memcpy(kb.image.data() + format::kset_bytes(kb.key_num), &k, sizeof k);
    ++kb.key_num;
    if (!(key.flags & format::kKeyFlagClean))
        dirty_bytes_.fetch_add(key.len, std::memory_order_relaxed);
}

// Under the subtree lock: make room in the kset buffer (the only step that can fail, before
// anything changes), insert into the index, append, and close the kset if full or forced.
// A failed forced close leaves the key buffered (valid, just not yet durable) and reports busy.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::insert_and_append(Subtree& st, const CacheKey& key, bool force_close,
                                             bool& appended) {
    KsetBuffer& kb = kset_for(key.off);
    std::lock_guard g(kb.mutex);
    appended = false;
    if (kb.key_num == format::kKsetKeysMax) PCACHE_TRY(kset_close_locked(kb));
    PCACHE_TRY(open_kset_locked(kb));  // busy here changes nothing
    st.insert(
        key, [this](const CacheKey& k) { return key_is_stale(k); },
        [this](const CacheKey& whole, CacheKey& piece) { fix_piece_crc(whole, piece); });
    st.clear_poison(key.off, key.end());  // newer data replaces data lost in writeback
    append_key_locked(kb, key);
    appended = true;
    if (kb.key_num == format::kKsetKeysMax || force_close) return kset_close_locked(kb);
    return {};
}

// A key cut by a newer write keeps a CRC of exactly its remaining bytes: the old bytes are
// verified first, so a piece of corrupt data never gets a fresh, matching CRC.
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::fix_piece_crc(const CacheKey& whole, CacheKey& piece) {
    if (!opts_.data_crc || whole.crc_bad) return;
    std::shared_lock rl(segs_[whole.seg].read_mutex);
    if (key_is_stale(whole)) return;  // so is the piece: every walk drops it
    std::vector<std::byte> buf(whole.len);
    if (!pmem_.read(data_addr(whole.seg, whole.seg_off), buf).ok() ||
        crc::kcrc(buf.data(), buf.size()) != whole.data_crc) {
        piece.crc_bad = true;
        return;
    }
    piece.data_crc = crc::kcrc(buf.data() + (piece.off - whole.off), piece.len);
}

}  // namespace pcache
