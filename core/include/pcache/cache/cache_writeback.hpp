// Writeback [cache_writeback.c]: one kset per step, in log order.
//
// Order, as the kernel: write the kset's dirty keys to the backing device (newest bytes only,
// overlaps resolved within the kset), FLUSH the backing device, and only then advance and
// persist dirty_tail. A crash in between replays the kset again: writeback is idempotent.
// A backing-device error or a data CRC mismatch stops writeback (dirty_tail stays, nothing is
// lost) and is reported; the next step retries.
#pragma once

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::writeback_step() {
    std::lock_guard wb(writeback_mutex_);
    LogPos pos;
    {
        std::lock_guard g(tail_mutex_);
        pos = dirty_tail_.pos;
    }
    if (pos == key_head()) return {};
    auto fail = [this](Status s) {
        count(&CacheCounters::writeback_errors);
        return StepResult{false, s.with_context("writeback")};
    };
    std::vector<std::byte> buf;
    format::KsetView v;
    if (Status s = decode_kset_at(pos, buf, v); !s.ok()) return fail(s);
    if (v.kind == format::KsetKind::end)
        return fail({Errc::corrupt, "no valid kset at dirty_tail " + std::to_string(pos.seg) + ":" +
                                        std::to_string(pos.off) + " although key_head is further: " + v.end_reason});
    LogPos next = v.kind == format::KsetKind::last ? LogPos{v.next_cache_seg_id(), 0}
                                                   : LogPos{pos.seg, pos.off + static_cast<std::uint32_t>(v.size_bytes())};
    std::uint64_t kset_dirty_bytes = 0;
    if (v.kind == format::KsetKind::normal) {
        Subtree newest;  // overlaps inside the kset: later keys win
        const std::uint64_t kset_addr = data_addr(pos.seg, pos.off);
        for (std::uint32_t i = 0; i < v.key_num(); ++i) {
            const auto k = v.key(i);
            if (Status s = format::validate_key(k, n_segs_, seg_data_bytes(), kset_addr + format::kset_bytes(i)); !s.ok())
                return fail(s);
            if (k.flags & format::kKeyFlagClean) continue;
            kset_dirty_bytes += k.len;
            newest.insert(CacheKey{k.off, k.len, k.flags, k.cache_seg_id, k.cache_seg_off, k.seg_gen, k.data_crc, false},
                          [](const CacheKey&) { return false; }, [](const CacheKey&, CacheKey&) {});
        }
        std::vector<std::byte> data;
        for (const auto& [off, k] : newest.keys()) {
            data.resize(k.len);
            if (Status s = pmem_.read(data_addr(k.seg, k.seg_off), data); !s.ok()) return fail(s);
            if (Status s = backing_.write(k.off, data, false); !s.ok()) return fail(s);
            count(&CacheCounters::backing_written_bytes, k.len);
        }
    }
    // Every write of this kset must be durable before dirty_tail passes it.
#ifndef PCACHE_MUTANT_M4
    if (Status s = backing_.flush(); !s.ok()) return fail(s);
#endif
    {
        std::lock_guard g(tail_mutex_);
        dirty_tail_.pos = next;
        if (Status s = write_tail(dirty_tail_, format::kDirtyTailOffsetBytes); !s.ok()) return fail(s);
    }
#ifdef PCACHE_MUTANT_M4
    if (Status s = backing_.flush(); !s.ok()) return fail(s);
#endif
    dirty_bytes_.fetch_sub(std::min(kset_dirty_bytes, dirty_bytes_.load()), std::memory_order_relaxed);
    count(&CacheCounters::writeback_ksets);
    return {true, {}};
}

}  // namespace pcache
