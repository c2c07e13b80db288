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
// the backing device. A backing-device error fails the step (dirty_tail stays, nothing is lost;
// the caller retries with backoff, Runtime does). A dirty key whose cached bytes cannot be read
// (pmem media error) or fail their CRC is data already lost: it is reported (counter, one log
// line), not written (the backing device keeps its old bytes), its range poisoned while it is
// still the newest data for it (reads fail until it is overwritten), and writeback goes on.
// Where the pmem allows it (PmemWritebackFromMapping) and the backing device takes one request
// at a time, runs are written straight from the mapping, falling back to the copy on any error
// (docs/design.md "Reading pmem: the SIGBUS guard").
#pragma once

#include <algorithm>

#include <boost/container/small_vector.hpp>

#include "pcache/cache/cache.hpp"

namespace pcache {

inline constexpr std::uint32_t kWritebackKsetsMax = 32;
inline constexpr std::uint64_t kWritebackBytesMax = 16ull << 20;
inline constexpr std::uint64_t kWritebackRunBytesMax = 1ull << 20;

// Runs read from pmem and waiting to be written: up to queue_depth of them (and at most
// kWritebackBytesMax bytes) go out together (write_batch on a BatchBlockDevice, one after the
// other otherwise). Writes in flight together have no order, so a run that overlaps a waiting
// one (a newer kset rewriting the same bytes) first sends the waiting runs and waits for them:
// the newer bytes always land last. The bytes live in the cache's writeback buffer (kept across
// steps, under writeback_mutex_): reserve() hands out room that pmem is read into directly, so
// each byte is copied once (pmem -> buffer) before the backing write (issue 17; it was twice).
template <PmemDevice Pmem, BlockDevice Block>
class Cache<Pmem, Block>::WritebackRuns {
public:
    WritebackRuns(Cache& c, std::uint32_t depth) : c_(c), depth_(depth) {}
    // Room for `len` bytes going to backing offset `off`; may first send the waiting runs. The
    // span is valid until the next reserve/add/submit; drop_last() gives it back.
    Result<std::span<std::byte>> reserve(std::uint64_t off, std::uint64_t len) {
        PCACHE_VERIFY(off <= c_.backing_bytes_ && len <= c_.backing_bytes_ - off,
                      "writeback of [" + std::to_string(off) + ", +" + std::to_string(len) +
                          ") beyond the backing device");
        const bool overlaps = std::any_of(runs_.begin(), runs_.end(), [&](const Run& w) {
            return off < w.off + w.len && w.off < off + len;
        });
        auto& buf = c_.wb_buf_;
        if (overlaps || runs_.size() >= depth_ || used_ >= kWritebackBytesMax) PCACHE_TRY(submit());
        if (used_ + len > buf.size())  // grows to what batches need, then stays (runs hold offsets)
            buf.resize(std::max<std::uint64_t>(
                used_ + len, std::min<std::uint64_t>(2 * buf.size() + (64 << 10),
                                                     kWritebackBytesMax + (4 << 20))));
        runs_.push_back({off, used_, len});
        used_ += len;
        return std::span<std::byte>(buf).subspan(runs_.back().at, len);
    }
    void drop_last() {
        used_ -= runs_.back().len;
        runs_.pop_back();
    }
    // Queues a copy of `bytes` for backing offset `off`; may first send the waiting runs.
    Status add(std::uint64_t off, std::span<const std::byte> bytes) {
        auto dst = reserve(off, bytes.size());
        if (!dst.ok()) return dst.status();
        std::memcpy(dst->data(), bytes.data(), bytes.size());
        return {};
    }
    // A run written straight from the pmem mapping (PmemWritebackFromMapping, a device without
    // batches: one request at a time, so the waiting runs go first and the order holds). An
    // error is the waiting runs'; `sent` false with ok: the direct write failed (a backing
    // error, or EFAULT from a page under the mapping) and the caller sends the run through the
    // copy, which reports unreadable bytes as lost and fails the step on a backing error.
    Status write_direct(std::uint64_t off, std::span<const std::byte> src, bool& sent) {
        PCACHE_VERIFY(off <= c_.backing_bytes_ && src.size() <= c_.backing_bytes_ - off,
                      "writeback of [" + std::to_string(off) + ", +" + std::to_string(src.size()) +
                          ") beyond the backing device");
        sent = false;
        PCACHE_TRY(submit());
        if (!c_.backing_.write(off, src, false).ok()) return {};
        c_.count(&CacheCounters::backing_written_bytes, src.size());
        sent = true;
        direct_bytes_ += src.size();  // progress, reported as often as a batch's would be
        if (direct_bytes_ >= std::uint64_t(depth_) * 4096) report_direct();  // a batch of 4 KiB
        return {};
    }
    // Reports direct writes not yet reported to the progress hook (the Runtime's pacing).
    void report_direct() {
        if (direct_bytes_) c_.note_writeback_progress(std::exchange(direct_bytes_, 0));
    }
    // Sends the waiting runs and waits for all of them.
    Status submit() {
        std::vector<WriteRequest> reqs;
        reqs.reserve(runs_.size());
        const std::span<const std::byte> buf(c_.wb_buf_);
        for (const Run& r : runs_) reqs.push_back({r.off, buf.subspan(r.at, r.len), false});
        const std::uint64_t total = used_;
        Status s;
        if constexpr (BatchBlockDevice<Block>) {
            if (reqs.size() > 1)
                s = c_.backing_.write_batch(reqs);
            else if (!reqs.empty())
                s = c_.backing_.write(reqs[0].offset_bytes, reqs[0].bytes, false);
        } else {
            for (const WriteRequest& w : reqs)
                if (s = c_.backing_.write(w.offset_bytes, w.bytes, false); !s.ok()) break;
        }
        runs_.clear();
        used_ = 0;
        if (s.ok()) {
            c_.count(&CacheCounters::backing_written_bytes, total);
            if (total) c_.note_writeback_progress(total);
        }
        return s;
    }

private:
    struct Run {
        std::uint64_t off, at, len;  // backing offset; bytes at wb_buf_[at, at + len)
    };
    Cache& c_;
    std::uint32_t depth_;
    std::vector<Run> runs_;
    std::uint64_t used_ = 0;
    std::uint64_t direct_bytes_ = 0;  // written by write_direct, not yet reported
};

template <PmemDevice Pmem, BlockDevice Block>
std::string Cache<Pmem, Block>::writeback_failing_note() const {
    std::lock_guard g(health_mutex_);
    if (!health_.failing) return {};
    return "; writeback failing for " + std::to_string(health_.failed_steps) + " step(s)" +
           (health_.since_ns ? " since t=" + std::to_string(health_.since_ns / 1000000) + " ms"
                             : std::string()) +
           ": " + health_.last_error;
}

template <PmemDevice Pmem, BlockDevice Block>
WritebackHealth Cache<Pmem, Block>::writeback_health() const {
    std::lock_guard g(health_mutex_);
    return health_;
}

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::writeback_failed(Status s) {
    count(&CacheCounters::writeback_errors);
    s = s.with_context("writeback");
    std::lock_guard g(health_mutex_);
    if (!health_.failing) {
        health_.failing = true;
        health_.since_ns = opts_.clock_ns ? opts_.clock_ns() : 0;
    }
    ++health_.failed_steps;
    health_.last_error = s.to_string();
    return StepResult{false, s};
}

// A dirty key whose cached bytes are lost: poison the parts of its range for
// which it is still the newest data (the index still maps them to its bytes).
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::writeback_lost(const CacheKey& k, const std::string& why) {
    Subtree& st = subtree_for(k.off);
    {
        std::lock_guard g(st.mutex);
        boost::container::small_vector<CacheKey, 8> current;
        st.for_each_overlap(
            k.off, k.end(), [](const CacheKey&) { return false; },
            [&](const CacheKey& e) {
                if (e.seg == k.seg && same_gen(e.gen, k.gen) &&
                    std::int64_t(e.seg_off) - std::int64_t(k.seg_off) ==
                        std::int64_t(e.off) - std::int64_t(k.off))
                    current.push_back(e);
            });
        for (const CacheKey& e : current)
            st.poison(std::max(e.off, k.off), std::min(e.end(), k.end()),
                      "data lost: it " + why + " and never reached the backing device");
    }
}

template <PmemDevice Pmem, BlockDevice Block>
typename Cache<Pmem, Block>::StepResult Cache<Pmem, Block>::writeback_step() {
    if (Status ro = refuse_read_only("writeback_step"); !ro.ok()) return {false, ro};
    mark_needs_close();
    std::lock_guard wb(writeback_mutex_);
    LogPos pos;
    {
        std::lock_guard g(tail_mutex_);
        pos = dirty_tail_.pos;
    }
    const LogPos head = key_head();
    if (pos == head) {
        hook_armed_.store(true, std::memory_order_relaxed);  // nothing to write: may wake again
        return {};
    }
    auto fail = [this](Status s) { return writeback_failed(std::move(s)); };
    std::vector<std::byte> data;
    std::uint64_t batch_dirty_bytes = 0, batch_written_bytes = 0;
    WritebackRuns runs(*this, std::clamp(opts_.writeback_queue_depth, 1u, 1024u));
    std::uint32_t ksets = 0;
    const std::uint32_t batch_ksets =
        std::clamp(opts_.writeback_batch_ksets, 1u, kWritebackKsetsMax);
    std::vector<std::pair<CacheKey, std::string>> lost;  // poisoned at once, reported at commit
    std::size_t poisoned = 0;
    auto poison_new = [&] {
        for (std::size_t i = poisoned; i < lost.size(); ++i)
            writeback_lost(lost[i].first, lost[i].second);  // before GC may reclaim the key
        poisoned = lost.size();
    };
    // Keys continuing each other on the backing device and in pmem (`run`, `run_bytes` long)
    // through the copy: read into the run buffer at once; on a media error key by key, the
    // unreadable ones lost.
    auto send_copy = [&](std::span<const CacheKey> run, std::uint64_t run_bytes) -> Status {
        const CacheKey& first = run.front();
        auto room = runs.reserve(first.off, run_bytes);
        if (!room.ok())
            return mutant(19) ? Status{} : room.status();  // M19: a failed write passed over
        if (pmem_.read(data_addr(first.seg, first.seg_off), *room).ok()) return {};
        runs.drop_last();
        for (const CacheKey& key : run) {
            data.resize(key.len);
            if (Status ks = pmem_.read(data_addr(key.seg, key.seg_off), data); !ks.ok()) {
                lost.emplace_back(key, "is unreadable in the cache (" + ks.to_string() + ")");
                continue;
            }
            if (Status ws = runs.add(key.off, data); !ws.ok() && !mutant(19)) return ws;
        }
        return {};
    };
    // The run to be written straight from the mapping (PmemWritebackFromMapping), kept open
    // across ksets: a sequential write fills a kset with 128 keys (512 KiB of 4 KiB keys), and the
    // next kset's keys continue the same run up to kWritebackRunBytesMax. It goes out before any
    // other run, so the bytes land in log order as before. A failed direct write goes through the
    // copy (which reports unreadable bytes as lost and fails the step on a backing error).
    std::vector<CacheKey> direct;
    std::uint64_t direct_bytes = 0;
    auto send_direct = [&]() -> Status {
        if constexpr (PmemWritebackFromMapping<Pmem> && !BatchBlockDevice<Block>) {
            if (direct.empty()) return {};
            const CacheKey& first = direct.front();
            const std::span<const std::byte> src(pmem_.data() + data_addr(first.seg, first.seg_off),
                                                 direct_bytes);
            bool sent = false;
            Status ws = runs.write_direct(first.off, src, sent);
            if (!ws.ok() && !mutant(19)) return ws;
            if (!sent && ws.ok()) ws = send_copy(direct, direct_bytes);
            direct.clear();
            direct_bytes = 0;
            return mutant(19) ? Status{} : ws;
        }
        return {};
    };
    auto continues = [](const CacheKey& a, const CacheKey& b) {  // b right after a, both places
        return b.off == a.end() && b.seg == a.seg && b.seg_off == a.seg_off + a.len;
    };
    std::vector<CacheKey> ordered;  // one kset's dirty keys, by offset, overlaps resolved
    // One kset of the batch; the batch ends at key_head, after batch_ksets ksets or bytes.
    auto writeback_kset = [&](const KsetAt& at) -> Result<WalkStep> {
        const format::KsetView& v = at.view;
        const bool more = ++ksets < batch_ksets;
        if (v.kind == format::KsetKind::last) return more ? WalkStep::next : WalkStep::stop;
        const std::uint64_t kset_addr = at.addr;
        ordered.clear();
        bool disjoint =
            true;  // each key after the previous one: already ordered, nothing to resolve
        for (std::uint32_t i = 0; i < v.key_num(); ++i) {
            const auto k = v.key(i);
            const std::uint64_t where = kset_addr + format::kset_bytes(i);
            PCACHE_TRY(format::validate_key(k, n_segs_, seg_data_bytes(), where));
            if (k.flags & format::kKeyFlagClean) continue;
            CacheKey ck{k.off,           k.len,     k.flags,    k.cache_seg_id,
                        k.cache_seg_off, k.seg_gen, k.data_crc, false};
            if (opts_.data_crc) {
                data.resize(k.len);
                if (Status s = pmem_.read(data_addr(k.cache_seg_id, k.cache_seg_off), data);
                    !s.ok()) {
                    ck.crc_bad = true;
                    lost.emplace_back(ck, "is unreadable in the cache (" + s.to_string() + ")");
                } else if (crc::kcrc(data.data(), data.size()) != k.data_crc) {
                    count(&CacheCounters::data_crc_errors);
                    ck.crc_bad = true;
                    lost.emplace_back(ck, "fails its data CRC in the cache (key at device offset " +
                                              std::to_string(where) + ")");
                }
            }
            batch_dirty_bytes += k.len;
            disjoint = disjoint && (ordered.empty() || ordered.back().end() <= ck.off);
            ordered.push_back(ck);
        }
        if (!disjoint) {  // overlaps inside the kset: later keys win (lost ones too: crc_bad)
            KeySet newest;
            for (const CacheKey& ck : ordered)
                newest.insert(
                    ck, [](const CacheKey&) { return false; }, [](const CacheKey&, CacheKey&) {});
            ordered.clear();
            const auto& keys = newest.keys();
            for (auto it = keys.begin(); it != keys.end(); ++it) ordered.push_back(it->second);
        }
        // Keys that continue each other both on the backing device and in pmem (a sequential
        // write) go out as one request of up to kWritebackRunBytesMax. Lost keys are skipped.
        for (std::size_t i = 0; i < ordered.size();) {
            const CacheKey& first = ordered[i];
            if (first.crc_bad) {
                ++i;
                continue;
            }
            if constexpr (PmemWritebackFromMapping<Pmem> && !BatchBlockDevice<Block>) {
                if (pmem_.writeback_from_mapping()) {  // no bounce copy (issue 17 item 4)
                    if (direct.empty() || !continues(direct.back(), first) ||
                        direct_bytes + first.len > kWritebackRunBytesMax)
                        PCACHE_TRY(send_direct());
                    direct.push_back(first);
                    direct_bytes += first.len;
                    batch_written_bytes += first.len;
                    ++i;
                    continue;
                }
            }
            std::uint64_t run_bytes = first.len;
            std::size_t end = i + 1;
            for (; end < ordered.size() && run_bytes < kWritebackRunBytesMax; ++end) {
                if (ordered[end].crc_bad || !continues(ordered[end - 1], ordered[end])) break;
                run_bytes += ordered[end].len;
            }
            PCACHE_TRY(send_copy(std::span(ordered).subspan(i, end - i), run_bytes));
            batch_written_bytes += run_bytes;
            i = end;
        }
        poison_new();
        return more && batch_written_bytes < kWritebackBytesMax ? WalkStep::next : WalkStep::stop;
    };
    auto walked = walk_log(log_source(), WalkSpec{.from = pos, .until = head}, writeback_kset);
    if (!walked.ok()) return fail(walked.status());
    pos = walked->pos;
    if (Status s = send_direct(); !s.ok()) return fail(s);
    poison_new();
    if (Status s = runs.submit(); !s.ok() && !mutant(19)) return fail(s);
    runs.report_direct();
    // Every write of the batch must be durable before dirty_tail passes it.
    // M4: dirty_tail advanced (and persisted) before the backing device flush.
    if constexpr (!mutant(4))
        if (Status s = backing_.flush(); !s.ok() && !mutant(19)) return fail(s);
    {
        std::lock_guard g(tail_mutex_);
        dirty_tail_.pos = pos;
        if (Status s = write_tail(dirty_tail_, format::kDirtyTailOffsetBytes); !s.ok())
            return fail(s);
    }
    if constexpr (mutant(4))
        if (Status s = backing_.flush(); !s.ok()) return fail(s);
    dirty_bytes_.fetch_sub(std::min(batch_dirty_bytes, dirty_bytes_.load()),
                           std::memory_order_relaxed);
    if (dirty_bytes() <= dirty_low_bytes()) hook_armed_.store(true, std::memory_order_relaxed);
    count(&CacheCounters::writeback_ksets, ksets);
    {
        std::lock_guard g(health_mutex_);
        health_ = WritebackHealth{};
    }
    for (const auto& [k, why] : lost) {  // once: the batch is committed
        count(&CacheCounters::writeback_lost_extents);
        count(&CacheCounters::writeback_lost_bytes, k.len);
        if (opts_.log)
            opts_.log("pcache: data lost: backing range [" + std::to_string(k.off) + ", +" +
                      std::to_string(k.len) + ") " + why +
                      "; not written back (the backing device keeps its old bytes there), "
                      "reads of it fail until it is overwritten");
    }
    return {true, {}};
}

}  // namespace pcache
