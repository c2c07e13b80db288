// Writeback [cache_writeback.c]: a bounded batch of ksets per step, in log order.
//
// Order, as the kernel: write the dirty keys of the ksets from dirty_tail to the backing device
// (newest bytes only: overlaps resolved within each kset, and a newer kset's bytes land after an
// older one's), FLUSH the backing device, and only then advance and persist dirty_tail past them.
// The writes go out as batches of up to CacheOptions::writeback_queue_depth concurrent requests
// (WritebackRuns below), which a network backing device needs: 200 us per request one at a time
// is 20 MB/s of 4 KiB writes. A crash in
// between writes the same ksets again: writeback is idempotent. The kernel flushes after every
// kset; a batch of up to kWritebackKsetsMax ksets (or kWritebackBytesMax bytes) per flush keeps
// the same guarantee with fewer flushes (CacheOptions::writeback_batch_ksets; 1 = the kernel's).
// With data_crc on, every key's data is verified before it is written: corrupt data never reaches
// the backing device. A backing-device error or a CRC mismatch stops writeback (dirty_tail stays,
// nothing is lost) and is reported; the next step retries.
#pragma once

#include <algorithm>

#include "pcache/cache/cache.hpp"

namespace pcache {

inline constexpr std::uint32_t kWritebackKsetsMax = 32;
inline constexpr std::uint64_t kWritebackBytesMax = 16ull << 20;
inline constexpr std::uint64_t kWritebackRunBytesMax = 1ull << 20;

// Runs waiting to be written: up to queue_depth of them go out together (write_batch on a
// BatchBlockDevice, one after the other otherwise). Writes in flight together have no order,
// so a run that overlaps a waiting one (a newer kset rewriting the same bytes) first sends the
// waiting runs and waits for them: the newer bytes always land last.
template <PmemDevice Pmem, BlockDevice Block>
class Cache<Pmem, Block>::WritebackRuns {
public:
    struct Run {
        std::uint64_t off;
        std::uint32_t seg;
        std::uint64_t seg_off, len;
    };
    WritebackRuns(Cache& c, std::uint32_t depth) : c_(c), depth_(depth) {}
    Status add(const Run& r) {
        const bool overlaps = std::any_of(runs_.begin(), runs_.end(), [&](const Run& w) {
            return r.off < w.off + w.len && w.off < r.off + r.len;
        });
        if (overlaps || runs_.size() >= depth_) PCACHE_TRY(submit());
        runs_.push_back(r);
        return {};
    }
    Status submit() {
        std::uint64_t total = 0;
        for (const Run& r : runs_) total += r.len;
        data_.resize(total);
        std::vector<WriteRequest> reqs;
        reqs.reserve(runs_.size());
        std::uint64_t at = 0;
        for (const Run& r : runs_) {
            const auto bytes = std::span(data_).subspan(at, r.len);
            PCACHE_TRY(c_.pmem_.read(c_.data_addr(r.seg, r.seg_off), bytes));
            reqs.push_back({r.off, bytes, false});
            at += r.len;
        }
        runs_.clear();
        if constexpr (BatchBlockDevice<Block>) {
            if (reqs.size() > 1)
                PCACHE_TRY(c_.backing_.write_batch(reqs));
            else if (!reqs.empty())
                PCACHE_TRY(c_.backing_.write(reqs[0].offset_bytes, reqs[0].bytes, false));
        } else {
            for (const WriteRequest& w : reqs)
                PCACHE_TRY(c_.backing_.write(w.offset_bytes, w.bytes, false));
        }
        c_.count(&CacheCounters::backing_written_bytes, total);
        return {};
    }

private:
    Cache& c_;
    std::uint32_t depth_;
    std::vector<Run> runs_;
    std::vector<std::byte> data_;
};

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::writeback_step() {
    std::lock_guard wb(writeback_mutex_);
    LogPos pos;
    {
        std::lock_guard g(tail_mutex_);
        pos = dirty_tail_.pos;
    }
    const LogPos head = key_head();
    if (pos == head) return {};
    auto fail = [this](Status s) {
        count(&CacheCounters::writeback_errors);
        return StepResult{false, s.with_context("writeback")};
    };
    std::vector<std::byte> buf, data;
    std::uint64_t batch_dirty_bytes = 0, batch_written_bytes = 0;
    WritebackRuns runs(*this, std::clamp(opts_.writeback_queue_depth, 1u, 1024u));
    std::uint32_t ksets = 0;
    for (; ksets < std::clamp(opts_.writeback_batch_ksets, 1u, kWritebackKsetsMax) &&
           !(pos == head) && batch_written_bytes < kWritebackBytesMax;
         ++ksets) {
        format::KsetView v;
        if (Status s = decode_kset_at(pos, buf, v); !s.ok()) return fail(s);
        if (v.kind == format::KsetKind::end)
            return fail({Errc::corrupt, "no valid kset at " + std::to_string(pos.seg) + ":" +
                                            std::to_string(pos.off) +
                                            " although key_head is further: " + v.end_reason});
        if (v.kind == format::KsetKind::last) {
            pos = log_pos_after(pos, v);
            continue;
        }
        Subtree newest;  // overlaps inside the kset: later keys win
        const std::uint64_t kset_addr = data_addr(pos.seg, pos.off);
        for (std::uint32_t i = 0; i < v.key_num(); ++i) {
            const auto k = v.key(i);
            const std::uint64_t where = kset_addr + format::kset_bytes(i);
            if (Status s = format::validate_key(k, n_segs_, seg_data_bytes(), where); !s.ok())
                return fail(s);
            if (k.flags & format::kKeyFlagClean) continue;
            if (opts_.data_crc) {
                data.resize(k.len);
                if (Status s = pmem_.read(data_addr(k.cache_seg_id, k.cache_seg_off), data);
                    !s.ok())
                    return fail(s);
                if (crc::kcrc(data.data(), data.size()) != k.data_crc) {
                    count(&CacheCounters::data_crc_errors);
                    return fail({Errc::data_crc,
                                 "data of the key at device offset " + std::to_string(where) +
                                     " fails its CRC: not written to the backing device"});
                }
            }
            batch_dirty_bytes += k.len;
            newest.insert(
                CacheKey{k.off, k.len, k.flags, k.cache_seg_id, k.cache_seg_off, k.seg_gen,
                         k.data_crc, false},
                [](const CacheKey&) { return false; }, [](const CacheKey&, CacheKey&) {});
        }
        // Keys that continue each other both on the backing device and in pmem (a sequential
        // write) go out as one request of up to kWritebackRunBytesMax.
        const auto& keys = newest.keys();
        for (auto it = keys.begin(); it != keys.end();) {
            const CacheKey& first = it->second;
            std::uint64_t run_bytes = first.len;
            for (++it; it != keys.end() && run_bytes < kWritebackRunBytesMax; ++it) {
                const CacheKey& k = it->second;
                if (k.off != first.off + run_bytes || k.seg != first.seg ||
                    k.seg_off != first.seg_off + run_bytes)
                    break;
                run_bytes += k.len;
            }
            if (Status s = runs.add({first.off, first.seg, first.seg_off, run_bytes}); !s.ok())
                return fail(s);
            batch_written_bytes += run_bytes;
        }
        pos = log_pos_after(pos, v);
    }
    if (Status s = runs.submit(); !s.ok()) return fail(s);
        // Every write of the batch must be durable before dirty_tail passes it.
#ifndef PCACHE_MUTANT_M4
    if (Status s = backing_.flush(); !s.ok()) return fail(s);
#endif
    {
        std::lock_guard g(tail_mutex_);
        dirty_tail_.pos = pos;
        if (Status s = write_tail(dirty_tail_, format::kDirtyTailOffsetBytes); !s.ok())
            return fail(s);
    }
#ifdef PCACHE_MUTANT_M4
    if (Status s = backing_.flush(); !s.ok()) return fail(s);
#endif
    dirty_bytes_.fetch_sub(std::min(batch_dirty_bytes, dirty_bytes_.load()),
                           std::memory_order_relaxed);
    count(&CacheCounters::writeback_ksets, ksets);
    return {true, {}};
}

}  // namespace pcache
