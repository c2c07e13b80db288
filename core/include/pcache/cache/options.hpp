// Options and counters of a cache.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "pcache/format/geometry.hpp"
#include "pcache/result.hpp"

namespace pcache {

struct CacheOptions {
    // Per-key data CRC. For an existing cache it must equal what the image records.
    bool data_crc = false;
    // Segment size. Kernel geometry (16 MiB) is the default and the only one the kernel reads.
    format::Geometry geometry = format::Geometry::kernel();
    // Lanes (docs/design.md "Lanes"): each has its own data head and kset buffer, so writers on
    // different lanes share no lock but their subtree's. A write goes to the lane its caller
    // names, else to the calling CPU's (sched_getcpu() % n_lanes). 0: one per CPU
    // (std::thread::hardware_concurrency(), as the kernel keeps one kset and data head per CPU),
    // at most 1024 and at most what the cache's key-log reserve can hold; else 1..1024.
    std::uint32_t n_lanes = 0;
    // Former name of n_lanes (one kset buffer per lane): used when n_lanes is 0 and this is not.
    std::uint32_t n_ksets = 0;
    // Persist read-miss data as CLEAN keys, as the kernel does.
    bool fill_on_read_miss = true;
    // Cache::format refuses a device that holds a cache (a valid superblock and cache_info), or
    // one whose cache_info is gone but whose key log is not provably empty, or one whose
    // superblock is corrupt: force_format formats it anyway, losing what it held. Ignored by
    // open and open_read_only, which never format.
    bool force_format = false;
    // Whether destroying the Cache closes it (persists buffered keys, flushes the backing
    // device) when close() was not called. A close error then goes to `log`. The crash
    // simulator turns it off: a dropped cache is its power cut.
    bool close_on_destroy = true;
    // Ksets written back per backing-device flush (1..32). The kernel flushes after every kset;
    // batching keeps the same guarantee (dirty_tail moves only past flushed data) with fewer
    // flushes. 1 reproduces the kernel's sequence of dirty_tail records exactly.
    std::uint32_t writeback_batch_ksets = 32;
    // Writes in flight at once during writeback on a backing device that takes batches
    // (BatchBlockDevice: io_uring files, NBD, RBD); 1 writes one run at a time. 1..1024.
    std::uint32_t writeback_queue_depth = 32;
    // Writeback watermarks, in percent of the data capacity (segments x data bytes per segment),
    // as dm-writecache's high_watermark / low_watermark (50 / 45 there too). When a write takes
    // the dirty bytes above the high mark, the cache calls its wake hook (Cache::set_wake_hook;
    // Runtime installs one that starts writeback at once, instead of at the next timer, and
    // writes back until the dirty bytes are at or below the low mark, then stops: docs/api.md,
    // WritebackPolicy); the hook re-arms when a writeback step leaves the dirty bytes at or below
    // the low mark (or finds nothing to write). Cache::writeback_wanted() says whether the high
    // mark is passed. 0 < low <= high <= 100.
    std::uint32_t writeback_high_percent = 50;
    std::uint32_t writeback_low_percent = 45;
    // Progress of a long replay (a million keys take about a second): called every 256 ksets
    // with the ksets and keys replayed so far. Optional.
    std::function<void(std::uint64_t ksets, std::uint64_t keys)> replay_progress = {};
    // A monotonic clock in nanoseconds, used only to report counters().replay_duration_ns.
    // The engine itself never reads a clock; without one the duration stays 0.
    std::uint64_t (*clock_ns)() = nullptr;
    // One line per event the embedder should log (lost dirty data). The engine never prints.
    std::function<void(const std::string& line)> log = {};
};

// The lane of a write: which kset buffer and data head it uses. kAutoLane lets the cache
// choose (the calling CPU); an explicit lane is taken modulo the number of lanes.
inline constexpr std::uint32_t kAutoLane = UINT32_MAX;

// How one write is done (Cache::write, Runtime::write_blocking).
struct WriteOptions {
    // Durable when the write returns ok, as a FUA write: no flush() needed for it.
    bool fua = false;
    std::uint32_t lane = kAutoLane;
};

// The outcome of a write: its status and how many leading bytes are in the cache. A busy
// write (Errc::busy, the cache is full) keeps what it wrote: retry from off + done_bytes after
// writeback/GC progress. On success done_bytes is the whole length; on another error it says
// how much was written before it (those bytes are cached, like any acknowledged write).
struct [[nodiscard]] WriteResult {
    Status status;
    std::uint64_t done_bytes = 0;
    bool ok() const noexcept { return status.ok(); }
    Errc code() const noexcept { return status.code(); }
};

// Writeback health (Cache::writeback_health): is writeback failing right now, since when, why.
struct WritebackHealth {
    bool failing = false;
    std::uint64_t failed_steps = 0;  // failed writeback steps in a row
    std::uint64_t since_ns = 0;      // CacheOptions::clock_ns at the first of them (0: no clock)
    std::string last_error;          // the most recent failure ("" when healthy)
};

// Monotonic counters; units in the names.
struct CacheCounters {
    std::uint64_t read_hits = 0;    // read pieces served entirely from pmem
    std::uint64_t read_misses = 0;  // read pieces with at least one backing read
    std::uint64_t pmem_read_bytes = 0;
    std::uint64_t pmem_written_bytes = 0;  // data bytes copied to pmem (writes and fills)
    std::uint64_t backing_read_bytes = 0;
    std::uint64_t backing_written_bytes = 0;
    std::uint64_t ksets_written = 0;
    std::uint64_t data_crc_errors = 0;
    std::uint64_t busy_returns = 0;
    std::uint64_t gc_runs = 0;
    std::uint64_t gc_ksets_retired = 0;
    std::uint64_t writeback_ksets = 0;
    std::uint64_t writeback_errors = 0;
    std::uint64_t replay_ksets = 0;  // ksets replayed at the last open
    std::uint64_t replay_keys = 0;   // keys replayed at the last open (stale included)
    std::uint64_t replay_stale_keys = 0;
    std::uint64_t replay_duration_ns = 0;  // of the last open, when CacheOptions::clock_ns is set
    std::uint64_t read_retries = 0;  // read walks repeated because GC reclaimed a key under them
    std::uint64_t writeback_lost_extents = 0;  // dirty keys unreadable/corrupt: never written back
    std::uint64_t writeback_lost_bytes = 0;
    std::uint64_t cross_lane_closes = 0;  // kset buffers closed early: another lane overwrote keys
    // Backing reads of a read miss done again under the subtree lock: a write entered the
    // subtree during the first, unlocked one (docs/design.md "Reads").
    std::uint64_t read_miss_rereads = 0;
};

// Calls fn(name, value) for every counter, in a stable order; names carry their unit
// (_bytes, _ns) or are plain counts. Tools print these; the order is append-only.
template <class Fn>
void for_each_counter(const CacheCounters& c, Fn&& fn) {
    fn("read_hits", c.read_hits);
    fn("read_misses", c.read_misses);
    fn("pmem_read_bytes", c.pmem_read_bytes);
    fn("pmem_written_bytes", c.pmem_written_bytes);
    fn("backing_read_bytes", c.backing_read_bytes);
    fn("backing_written_bytes", c.backing_written_bytes);
    fn("ksets_written", c.ksets_written);
    fn("data_crc_errors", c.data_crc_errors);
    fn("busy_returns", c.busy_returns);
    fn("gc_runs", c.gc_runs);
    fn("gc_ksets_retired", c.gc_ksets_retired);
    fn("writeback_ksets", c.writeback_ksets);
    fn("writeback_errors", c.writeback_errors);
    fn("replay_ksets", c.replay_ksets);
    fn("replay_keys", c.replay_keys);
    fn("replay_stale_keys", c.replay_stale_keys);
    fn("replay_duration_ns", c.replay_duration_ns);
    fn("read_retries", c.read_retries);
    fn("writeback_lost_extents", c.writeback_lost_extents);
    fn("writeback_lost_bytes", c.writeback_lost_bytes);
    fn("cross_lane_closes", c.cross_lane_closes);
    fn("read_miss_rereads", c.read_miss_rereads);
}

}  // namespace pcache
