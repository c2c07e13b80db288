// pcache::Cache<Pmem, Block>: dm-pcache in user space.
//
// A write-back cache on persistent memory in front of a block device, on the kernel's on-media
// format. The engine is split by concept like the kernel (file names in brackets):
//   cache_parts.hpp     what is kept per segment, per lane and per subtree
//   cache_lifecycle.hpp format/open/open_read_only, the destructor's close (docs/api.md)
//   cache_open.hpp      format and load: superblock, cache_info, segment chain, tails [cache.c]
//   cache_segment.hpp   segment allocation, references, generations [cache_segment.c]
//   cache_kset.hpp      kset buffers, closing ksets, the key log [cache_key.c]
//   cache_replay.hpp    replay of the key log at open [cache_key.c]
//   cache_req.hpp       the request path: write, read, flush [cache_req.c]
//   cache_writeback.hpp writeback of dirty data [cache_writeback.c]
//   cache_gc.hpp        garbage collection [cache_gc.c]
//   cache_status.hpp    status line, messages, invariants [dm_pcache.c]
//
// Thread safety: every public member may be called from any thread. Locks, always taken in
// this order: a subtree lock, a lane lock (its data head and kset buffer; one lane lock at a
// time, except flush/check_invariants, which hold no subtree lock), key_head_mutex_,
// seg_mutex_. tail_mutex_, info_mutex_ and health_mutex_ are leaves. The write hot path takes
// only its subtree lock and its lane lock; seg_mutex_ only when the lane's data head needs a new
// segment or a segment's last reference goes; key_head_mutex_ only to close a kset. Nothing
// shared is written on that path: counters and dirty bytes of writes and reads go to the lane's
// own shard, lanes, segments and subtrees sit on their own cache lines, and needs_close_ is
// stored only when it changes (docs/PERFORMANCE.md, issue 17 "contention"). Lane rules:
// docs/design.md "Lanes". The engine never reads the clock, never spawns threads and never draws
// random numbers; background work is exposed as steps (writeback_step, gc_step).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <vector>

#include "pcache/block_device.hpp"
#include "pcache/borrow.hpp"
#include "pcache/cache/cache_parts.hpp"
#include "pcache/cache/key_index.hpp"
#include "pcache/cache/options.hpp"
#include "pcache/format/codec.hpp"
#include "pcache/format/log_walk.hpp"
#include "pcache/mutation.hpp"
#include "pcache/pmem_device.hpp"
#include "pcache/result.hpp"
#include "pcache/sync.hpp"
#include "pcache/verify.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
class Cache {
public:
    using Mutex = MutexFor<Pmem>;  // std::mutex unless the policy declares one (sync.hpp)
    using SharedMutex = SharedMutexFor<Pmem>;  // std::shared_mutex likewise
    using Subtree = BasicSubtree<Mutex>;

    using PmemPtr = std::shared_ptr<Pmem>;
    using BlockPtr = std::shared_ptr<Block>;

    // ---- lifecycle (cache_open.hpp); docs/api.md ----
    // The cache shares ownership of its devices (pass borrow(d) for a device you keep alive
    // longer yourself). Every call checks before it writes: a refused device is unchanged.
    //
    // format: writes a fresh, empty cache. Refuses a device that holds a cache (or whose
    // superblock is corrupt) unless opts.force_format.
    static Result<std::unique_ptr<Cache>> format(PmemPtr pmem, BlockPtr backing, CacheOptions opts);
    // open: loads and replays an existing cache. Never formats: a blank device (or a format
    // that never finished) is refused with Errc::not_found naming format. Writes nothing until
    // every check and the replay passed.
    static Result<std::unique_ptr<Cache>> open(PmemPtr pmem, BlockPtr backing, CacheOptions opts);
    // open_read_only: loads and replays into memory and never writes either device. Reads
    // work (misses are not filled); write, flush, close, the steps and messages return
    // Errc::read_only.
    static Result<std::unique_ptr<Cache>> open_read_only(PmemPtr pmem, BlockPtr backing,
                                                         CacheOptions opts);

    Cache(const Cache&) = delete;
    Cache& operator=(const Cache&) = delete;
    // Closes the cache (as close()) unless it is read-only or opts.close_on_destroy is false;
    // a close error goes to opts.log. A Runtime still attached to the cache is a programming
    // error: it aborts (the Runtime's threads would use a destroyed cache).
    ~Cache();

    // Writes `data` at byte offset `off` (both multiples of 512). Acknowledged writes are
    // volatile until a flush(), a FUA write or close(). Errc::busy means the cache is full:
    // after writeback and GC progress, retry from off + done_bytes (a busy write never has to
    // start over, so a write larger than the free space completes piece by piece).
    // wo.lane: the lane (data head and kset buffer) to use, modulo n_lanes; kAutoLane: the
    // calling CPU's (docs/design.md "Lanes").
    WriteResult write(std::uint64_t off, std::span<const std::byte> data, WriteOptions wo = {});
    // Reads from the cache where it holds the bytes, from the backing device elsewhere.
    Status read(std::uint64_t off, std::span<std::byte> out);
    // FLUSH: every earlier acknowledged write is durable when this returns ok.
    Status flush();
    // Clean shutdown: closes every kset and flushes the backing device. The cache stays
    // usable; the destructor closes again only if something was written since.
    Status close();
    bool read_only() const { return read_only_; }

    // ---- background work, one bounded unit per call (cache_writeback.hpp, cache_gc.hpp) ----
    struct StepResult {
        bool progressed = false;  // did something; call again
        Status status;            // an error stops the work; it is also kept in counters
    };
    StepResult writeback_step();
    StepResult gc_step();
    // Close kset buffers whose keys have waited (the kernel's 1 s timer, driven by the caller).
    Status flush_ksets() { return flush(); }

    // ---- status and messages (cache_status.hpp) ----
    std::string status_line() const;          // the kernel's dmsetup status fields, same format
    Status message(const std::string& text);  // "gc_percent N"
    Status set_gc_percent(std::uint32_t percent);
    CacheCounters counters() const;
    // Whether writeback is failing now (a backing device error), since when and why.
    WritebackHealth writeback_health() const;
    // Bytes of dirty keys appended to the log (buffered or durable) and not yet written back:
    // what "flush everything" still has to write. 0 exactly when the cache is clean.
    // Exact when no write runs; during writes a key moving from a lane's open buffer to the
    // log may be counted twice for a moment, never missed.
    std::uint64_t dirty_bytes() const {
        std::uint64_t open = 0;
        for (const Lane& ln : lanes_) open += ln.dirty_open.load(std::memory_order_acquire);
        return open + dirty_bytes_.load(std::memory_order_relaxed);
    }
    bool is_clean() const;  // dirty_tail == key_head and no buffered key
    // Watermarks (CacheOptions::writeback_high_percent / _low_percent), in dirty bytes.
    std::uint64_t dirty_high_bytes() const {
        return capacity_percent(opts_.writeback_high_percent);
    }
    std::uint64_t dirty_low_bytes() const { return capacity_percent(opts_.writeback_low_percent); }
    bool writeback_wanted() const { return dirty_bytes() > dirty_high_bytes(); }
    // A hook the write path calls (on the writer's thread, holding no engine lock) when dirty
    // bytes pass the high mark (as a write sees them: the closed ksets' and its own lane's open
    // buffer; wake_background), at most once until a writeback step re-arms it, and whenever a
    // write finds the cache full (busy). It must be cheap and must not call into the cache;
    // Runtime's wakes its threads. nullptr removes it; after set_wake_hook returns, the old hook
    // is no longer running nor called. The engine itself never spawns threads or sleeps.
    using WakeFn = void (*)(void* ctx);
    void set_wake_hook(WakeFn fn, void* ctx) {
        std::lock_guard g(hook_mutex_);
        hook_fn_ = fn;
        hook_ctx_ = ctx;
        has_hook_.store(fn != nullptr, std::memory_order_release);
        hook_armed_.store(true, std::memory_order_relaxed);
    }
    // Pacing (docs/api.md): the free segments are within throttle_segs() of the key-log reserve,
    // so writes will soon find busy; Runtime::write_blocking then paces them to writeback
    // progress. A relaxed hint without a lock. The progress hook runs after each batch of
    // backing writes of a writeback step (finer than the step), with their bytes; rules as above.
    bool throttle_wanted() const {
        return free_ksets_hint_.load(std::memory_order_relaxed) <
               std::uint64_t(per_seg_ksets_) * (1 + throttle_segs()) + lanes_.size();
    }
    std::uint32_t throttle_segs() const { return std::clamp(n_segs_ / 4, 1u, kThrottleSegsMax); }
    using ProgressFn = void (*)(void* ctx, std::uint64_t bytes);
    void set_progress_hook(ProgressFn fn, void* ctx) {
        std::lock_guard g(hook_mutex_);
        progress_fn_ = fn;
        progress_ctx_ = ctx;
        has_progress_hook_.store(fn != nullptr, std::memory_order_release);
    }
    LogPos key_head() const;
    LogPos dirty_tail() const;
    LogPos key_tail() const;
    std::uint32_t segs_used() const;
    std::uint32_t n_segs() const { return n_segs_; }
    const format::Geometry& geometry() const { return opts_.geometry; }
    std::uint64_t backing_bytes() const { return backing_bytes_; }
    std::uint32_t n_lanes() const { return static_cast<std::uint32_t>(lanes_.size()); }
    // Whole-structure check (tests): index, segment map and log positions agree.
    Status check_invariants();
    // Keys in the index, free nodes its subtrees keep, and the nodes the process holds for
    // the index keys of every cache (tests, benchmarks; takes each subtree lock in turn).
    struct IndexStats {
        std::uint64_t keys = 0, pool_idle = 0, depot_nodes = 0;
    };
    IndexStats index_stats();

private:
    class WritebackRuns;  // cache_writeback.hpp: runs sent as batches of concurrent writes
    using Segment = cache_detail::Segment<SharedMutex>;
    using Lane = cache_detail::Lane<Mutex>;
    using LaneMark = cache_detail::LaneMark;
    using CacheSubtree = cache_detail::CacheSubtree<Mutex>;
    static constexpr std::uint32_t kNoSeg = cache_detail::kNoSeg;
    static constexpr std::uint32_t kNoLane = cache_detail::kNoLane;
    static constexpr std::size_t kLaneMarks = cache_detail::kLaneMarks;
    static constexpr std::uint32_t kLanesMax = 1024;
    static constexpr std::uint32_t kThrottleSegsMax = 4;
    struct Tail {
        LogPos pos;
        std::uint64_t seq = 0;
        unsigned index = 0;
    };

    template <class>
    friend class Runtime;  // attaches itself (runtime_attached_), checked by ~Cache

    Cache(PmemPtr pmem, BlockPtr backing, CacheOptions opts);

    // cache_open.hpp
    enum class Mode { format, open, read_only };
    static Result<std::unique_ptr<Cache>> create(PmemPtr pmem, BlockPtr backing, CacheOptions opts,
                                                 Mode mode);
    Status format_device();
    Result<format::Superblock> read_superblock() const;
    Result<std::optional<format::Latest<format::CacheInfo>>> read_latest_cache_info() const;
    void size_key_log();
    Status load_device();
    Status check_ksets_fit(std::uint32_t segs);  // resolves opts_.n_lanes
    Status finish_open();
    Status refuse_read_only(const char* what) const;
    Status format_superblock();
    Result<bool> load_cache_info();
    Status init_segments_new();
    Status load_segments();
    Status init_tails_new();
    Status load_tails();
    Status write_cache_info();
    Status write_meta(std::uint64_t slot0_addr, std::uint64_t stride, unsigned index,
                      std::span<const std::byte> record);
    Status require_empty_log_for_reformat();

    // cache_segment.hpp
    std::uint64_t data_addr(std::uint32_t seg, std::uint64_t off) const {
        return opts_.geometry.data_offset(segs_[seg].phys) + off;
    }
    std::uint64_t seg_data_bytes() const { return opts_.geometry.seg_data_bytes(); }
    Result<std::uint32_t> get_free_segment_locked();
    void seg_put_locked(std::uint32_t seg);
    Status write_seg_gen_locked(std::uint32_t seg);
    Status write_seg_info(std::uint32_t seg);
    bool key_is_stale(const CacheKey& k) const {  // index keys: generation modulo 2^32
        return !same_gen(k.gen, segs_[k.seg].gen.load(std::memory_order_acquire));
    }
    // The key-log reserve (docs/design.md "The key-log reserve"), in units of largest ksets:
    // how many more ksets of kKsetBytesMax the log can append using the room left at key_head
    // and the free segments. Invariant: log_capacity_locked() >= open_ksets_.
    std::uint64_t log_capacity_locked() const {
        return log_room_ksets_ + std::uint64_t(n_segs_ - segs_used_) * per_seg_ksets_;
    }
    // May a data segment be taken from the pool without eating into the reserve?
    bool data_seg_allowed_locked() const {
        return log_capacity_locked() >= per_seg_ksets_ + lanes_.size();
    }
    void set_log_room_locked(LogPos head);
    void publish_room_locked() {  // after segs_used_ or log_room_ksets_ changed
        free_ksets_hint_.store(log_capacity_locked(), std::memory_order_relaxed);
    }
    void seg_put(std::uint32_t seg);  // drops a reference; seg_mutex_ only for the last one
    Status open_kset_locked(Lane& kb);
    Status reserve_busy(const char* what) const;
    struct Allocation {
        std::uint32_t seg, off, len;
        std::uint64_t gen;
    };
    Result<Allocation> data_alloc(std::uint32_t lane, std::uint32_t len);

    // cache_kset.hpp
    std::uint32_t pick_lane(std::uint32_t requested) const {
        const std::uint32_t cpu = requested == kAutoLane ? current_cpu_of(pmem_) : requested;
        return cpu % static_cast<std::uint32_t>(lanes_.size());
    }
    bool key_buffered_open(const CacheKey& k) const {
        return static_cast<std::uint8_t>(lanes_[k.lane].epoch.load(std::memory_order_acquire)) ==
               k.lane_epoch;
    }
    Status kset_close_locked(Lane& kb);
    bool lane_still_open(const LaneMark& m) const {
        return m.lane != kNoLane && lanes_[m.lane].epoch.load(std::memory_order_acquire) == m.epoch;
    }
    Status close_lane_at(std::uint32_t other, std::uint32_t lane, std::uint32_t epoch,
                         std::uint32_t mask);
    Status close_other_lanes(CacheSubtree& st, std::uint32_t lane, std::uint64_t off,
                             std::uint64_t end, std::size_t& mark);
    Status insert_and_append(CacheSubtree& st, std::uint32_t lane, CacheKey key, bool force_close,
                             bool best_effort, bool& appended);
    void append_key_locked(Lane& kb, const CacheKey& key);
    void fix_piece_crc(const CacheKey& whole, CacheKey& piece);

    // cache_status.hpp: the always-on check of a key entering the index and the log
    Status verify_key(const CacheKey& k) const;

    // cache_replay.hpp
    Status replay();
    Status replay_key(const format::KeyOnMedia& k, std::uint64_t where, bool dirty_part);

    // cache_req.hpp
    CacheSubtree& subtree_for(std::uint64_t off) { return subtrees_[off >> format::kSubtreeShift]; }
    Status store_data(CacheKey& key, std::span<const std::byte> bytes, unsigned flags);
    Status write_piece(std::uint64_t off, std::span<const std::byte> data, bool fua,
                       std::uint32_t lane, std::uint32_t& written);
    Status read_piece(std::uint64_t off, std::span<std::byte> out);
    Status read_from_key(Lane& shard, const CacheKey& k, std::uint64_t from,
                         std::span<std::byte> out, std::unique_lock<Mutex>& subtree, bool& stale);
    void fill_miss_locked(CacheSubtree& st, std::uint32_t lane, std::uint64_t off,
                          std::span<const std::byte> data);
    Status check_io(const char* what, std::uint64_t off, std::uint64_t len) const;

    // The key log as the walker reads it (format/log_walk.hpp): this cache's pmem.
    struct PmemLog {
        const Cache& c;
        std::uint32_t n_segs() const { return c.n_segs_; }
        std::uint64_t seg_data_bytes() const { return c.seg_data_bytes(); }
        std::uint64_t log_addr(LogPos p) const { return c.data_addr(p.seg, p.off); }
        Status read(std::uint64_t off, std::span<std::byte> dst) const {
            return c.pmem_.read(off, dst);
        }
    };
    PmemLog log_source() const { return PmemLog{*this}; }

    // cache_writeback.hpp / cache_gc.hpp
    Status write_tail(Tail& t, std::uint64_t slot0_addr);
    StepResult gc_retire(LogPos kt, LogPos dt, const format::KsetView& v);
    StepResult gc_failed(Status s);
    void forget_retired_keys(const format::KsetView& v);
    void writeback_lost(const CacheKey& k, const std::string& why);
    StepResult writeback_failed(Status s);
    std::string writeback_failing_note() const;

    // Members written while requests run start a cache line (alignas(64)) so that the ones
    // every request reads (opts_, the devices, segs_, lanes_, subtrees_) stay on lines no
    // request writes.
    PmemPtr pmem_owner_;  // declared before the references: outlive every use of them
    BlockPtr backing_owner_;
    Pmem& pmem_;
    Block& backing_;
    CacheOptions opts_;
    bool read_only_ = false;
    std::atomic<bool> needs_close_{false};  // written since the last close (~Cache closes)
    // Stores only when the flag changes: every write calls it, and a store to the shared line
    // on each would move it between the writers' CPUs.
    void mark_needs_close() {
        if (!needs_close_.load(std::memory_order_relaxed)) needs_close_.store(true);
    }
    std::atomic<int> runtime_attached_{0};  // Runtimes over this cache (must be 0 at ~Cache)
    std::uint64_t backing_bytes_ = 0;

    format::Superblock sb_{};
    std::uint32_t n_segs_ = 0;
    alignas(64) mutable Mutex info_mutex_;
    format::CacheInfo info_{};
    unsigned info_index_ = 0;

    std::unique_ptr<Segment[]> segs_;
    // seg_used_, the reserve, refs reaching zero, generation writes
    alignas(64) mutable Mutex seg_mutex_;
    std::vector<bool> seg_used_;
    std::uint32_t segs_used_ = 0;
    std::uint32_t last_seg_hint_ = 0;
    std::uint32_t per_seg_ksets_ = 1;   // largest ksets a fresh segment holds (+ a LAST kset)
    std::uint32_t log_room_ksets_ = 0;  // largest ksets that still fit at key_head
    std::uint32_t open_ksets_ = 0;      // kset buffers holding keys
    std::atomic<std::uint64_t> free_ksets_hint_{UINT64_MAX};  // log_capacity_locked(), relaxed

    alignas(64) std::vector<CacheSubtree> subtrees_;
    std::vector<Lane> lanes_;
    alignas(64) mutable Mutex key_head_mutex_;
    LogPos key_head_;
    // The segment a kset close took for the log and could not link (a pmem write or fence
    // failed): the next close links it instead of taking another. kNoSeg otherwise.
    std::uint32_t log_next_seg_ = kNoSeg;

    alignas(64) mutable Mutex tail_mutex_;  // key_tail_, dirty_tail_ and their records
    Tail key_tail_;
    Tail dirty_tail_;
    alignas(64) Mutex writeback_mutex_;  // one writeback step at a time
    std::vector<std::byte> wb_buf_;      // WritebackRuns' bytes (under writeback_mutex_)
    alignas(64) Mutex gc_mutex_;         // one GC step at a time
    std::atomic<bool> gc_failed_{false};
    mutable Mutex health_mutex_;  // leaf
    WritebackHealth health_;

    // Dirty bytes of the keys in the log; those of open buffers are in Lane::dirty_open.
    alignas(64) std::atomic<std::uint64_t> dirty_bytes_{0};
    // The wake hook (set_wake_hook). hook_mutex_ is a leaf; the hook runs under it. A plain
    // std::mutex, not the policy's: it guards no engine state and is never taken without a hook
    // (the concurrent simulator's schedules do not change).
    std::uint64_t capacity_percent(std::uint32_t pct) const {
        return std::uint64_t(n_segs_) * seg_data_bytes() / 100 * pct;
    }
    // After a write on `lane` (always: a write found the cache full). The test reads only the
    // closed ksets' dirty bytes and this lane's open buffer, never the other lanes' lines: their
    // open bytes count once their buffers close (within a kset, or the 1 s kset timer), so the
    // hook may fire up to one kset per lane late. Without a hook nothing shared is touched.
    void wake_background(bool always, std::uint32_t lane) {
        if (!has_hook_.load(std::memory_order_acquire)) return;
        if (!always && (!hook_armed_.load(std::memory_order_relaxed) ||
                        dirty_bytes_.load(std::memory_order_relaxed) +
                                lanes_[lane].dirty_open.load(std::memory_order_relaxed) <=
                            dirty_high_bytes() ||
                        !hook_armed_.exchange(false, std::memory_order_relaxed)))
            return;
        std::lock_guard g(hook_mutex_);
        if (hook_fn_) hook_fn_(hook_ctx_);
    }
    void note_writeback_progress(std::uint64_t bytes) {
        if (!has_progress_hook_.load(std::memory_order_acquire)) return;
        std::lock_guard g(hook_mutex_);
        if (progress_fn_) progress_fn_(progress_ctx_, bytes);
    }
    alignas(64) std::mutex hook_mutex_;
    std::atomic<bool> has_hook_{false}, has_progress_hook_{false};
    WakeFn hook_fn_ = nullptr;
    ProgressFn progress_fn_ = nullptr;
    void *hook_ctx_ = nullptr, *progress_ctx_ = nullptr;
    std::atomic<bool> hook_armed_{true};
    // Written only through count() (relaxed atomic adds) once open() returns; read by counters().
    // The counts of background work (writeback, GC, replay); writes and reads count on their
    // lane's shard (Lane::counters), so writers on different lanes write no common line.
    alignas(64) CacheCounters counters_;
    static void add_to(CacheCounters& c, std::uint64_t CacheCounters::*field, std::uint64_t n) {
        std::atomic_ref<std::uint64_t>(c.*field).fetch_add(n, std::memory_order_relaxed);
    }
    void count(std::uint64_t CacheCounters::*field, std::uint64_t n = 1) {
        add_to(counters_, field, n);
    }
    void count(Lane& ln, std::uint64_t CacheCounters::*field, std::uint64_t n = 1) {
        add_to(ln.counters, field, n);
    }
};

}  // namespace pcache

#include "pcache/cache/cache_gc.hpp"
#include "pcache/cache/cache_kset.hpp"
#include "pcache/cache/cache_lifecycle.hpp"
#include "pcache/cache/cache_open.hpp"
#include "pcache/cache/cache_replay.hpp"
#include "pcache/cache/cache_req.hpp"
#include "pcache/cache/cache_segment.hpp"
#include "pcache/cache/cache_status.hpp"
#include "pcache/cache/cache_writeback.hpp"
