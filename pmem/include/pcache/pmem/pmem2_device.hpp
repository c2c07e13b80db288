// Pmem2Device: a PmemDevice over a libpmem2 mapping of a DAX device or a file.
//
// What it maps:
//  * a device-DAX character device (/dev/daxX.Y): real pmem, cache-line (or byte, with eADR)
//    store granularity; flush is clwb/clflushopt, drain is sfence;
//  * a file on a DAX file system: libpmem2 maps it MAP_SYNC and reports cache-line granularity;
//  * a file anywhere else (tmpfs under /dev/shm, ext4): page granularity; flush is msync, drain
//    a no-op. libpmem2 refuses to map such a file at a finer granularity unless the environment
//    sets PMEM2_FORCE_GRANULARITY (build-notes gotcha 4), which tests use to run the clwb path.
// The requested granularity is the coarsest the caller accepts (page by default, so every kind
// above maps); granularity() reports what libpmem2 actually delivered.
//
// Persistence primitives are libpmem2's own (pmem2_get_memcpy_fn / _flush_fn / _drain_fn), so
// write() picks the CPU's best instructions (non-temporal AVX, clwb) for the mapping.
//
// read() is media-error safe and never a system call (issue 17: pread cost ten times a copy):
//  * it copies from the mapping inside a SIGBUS guard. The first open installs a process-wide
//    SIGBUS handler (SA_SIGINFO | SA_NODEFER | SA_ONSTACK, chaining to the handler it replaced
//    for faults outside a guarded copy). A copy sets a thread-local sigjmp_buf (sigsetjmp with
//    savemask 0: no system call); a SIGBUS during it (a poisoned page: the kernel's memory-failure
//    handler sends BUS_MCEERR_AR; or a file truncated under the mapping) jumps back and the read
//    returns Errc::io, as pread's EIO did. `out` is then unspecified, as after any failed read.
//  * device DAX also reads its bad-block list once at open (pmem2_badblock_*): a read
//    overlapping a listed block is refused without touching it. If the list is unavailable (no
//    ndctl support), has_badblock_list() is false and the SIGBUS guard alone protects reads.
// An embedder that installs its own SIGBUS handler after opening a device replaces ours: reads
// of poisoned media then reach that handler instead of returning an error. Under
// ThreadSanitizer (which never delivers a SIGBUS to a user handler: the process dies) regular
// files are read with pread instead (PCACHE_TSAN).
// Thread safety: write/flush/drain/read on disjoint ranges may run concurrently (no shared
// mutable state); open, move and destruction may not.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pcache/pmem_device.hpp"
#include "pcache/result.hpp"

#if defined(__SANITIZE_THREAD__)
#define PCACHE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PCACHE_TSAN 1
#endif
#endif
#ifndef PCACHE_TSAN
#define PCACHE_TSAN 0
#endif

struct pmem2_map;
struct pmem2_source;

namespace pcache {

// Store granularity of a mapping: the unit the CPU must flush for a store to be durable.
enum class PmemGranularity {
    byte,        // eADR: the caches are in the persistence domain, stores are durable at drain
    cache_line,  // ADR: flush each 64-byte line (clwb), then drain
    page,        // page cache backed: msync each page
};
std::string_view granularity_name(PmemGranularity g) noexcept;

struct Pmem2OpenOptions {
    // Create a regular file if `path` does not exist, posix_fallocate'd to size_bytes (so tmpfs
    // cannot SIGBUS later for lack of space). Never creates a device.
    bool create = false;
    // 0: map the whole file or device. Otherwise map exactly the first size_bytes (a multiple
    // of the source's mapping alignment: 4 KiB for files, usually 2 MiB for device DAX); a
    // source shorter than that is refused.
    std::uint64_t size_bytes = 0;
    // The coarsest granularity accepted; page maps anything.
    PmemGranularity required_granularity = PmemGranularity::page;
};

class Pmem2Device {
public:
    using OpenOptions = Pmem2OpenOptions;
    enum class ReadMode { guarded_copy };  // copy from the mapping under the SIGBUS guard

    // Errors: Errc::not_found (no such file), Errc::invalid_argument (size_bytes larger than
    // the source, or misaligned), Errc::unsupported (granularity not available), Errc::io
    // (anything else, with the system's or libpmem2's message).
    static Result<Pmem2Device> open(const std::string& path, OpenOptions options = {});

    Pmem2Device(const Pmem2Device&) = delete;
    Pmem2Device& operator=(const Pmem2Device&) = delete;
    Pmem2Device(Pmem2Device&& other) noexcept;
    Pmem2Device& operator=(Pmem2Device&& other) noexcept;
    ~Pmem2Device();

    std::uint64_t size() const { return size_bytes_; }
    const std::byte* data() const { return base_; }

    Status write(std::uint64_t off, std::span<const std::byte> src, unsigned flags);
    Status flush(std::uint64_t off, std::uint64_t len);
    // At page granularity a failed msync makes this (and every later drain) fail: the kernel
    // reports a page writeback error only once, so the device stays failed.
    Status drain();
    Status read(std::uint64_t off, std::span<std::byte> dst) const;

    PmemGranularity granularity() const { return granularity_; }
    ReadMode read_mode() const { return read_mode_; }
    bool has_badblock_list() const { return has_badblock_list_; }
    // PmemWritebackFromMapping: true for a file on tmpfs (page-cache memory: no media errors;
    // a truncation under the mapping fails the backing write with EFAULT). DAX and every other
    // file system (a file there may be DAX-mapped): false, writeback copies through read().
    bool writeback_from_mapping() const { return in_memory_fs_; }
    const std::string& path() const { return path_; }

private:
    // The libpmem2 persistence entry points, typed as in libpmem2.h (kept out of this header).
    using MemcpyFn = void* (*)(void*, const void*, std::size_t, unsigned);
    using FlushFn = void (*)(const void*, std::size_t);
    using DrainFn = void (*)();
    struct BadBlock {
        std::uint64_t offset_bytes;
        std::uint64_t length_bytes;
    };

    Pmem2Device() = default;
    void release() noexcept;
    Status map_source(const OpenOptions& options);
    Status load_badblocks();

    std::string path_;
    int fd_ = -1;
    pmem2_source* source_ = nullptr;
    pmem2_map* map_ = nullptr;
    std::byte* base_ = nullptr;
    std::uint64_t size_bytes_ = 0;
    PmemGranularity granularity_ = PmemGranularity::page;
    ReadMode read_mode_ = ReadMode::guarded_copy;
    bool has_badblock_list_ = false;
    bool in_memory_fs_ = false;  // tmpfs / ramfs
    std::vector<BadBlock> badblocks_;
    MemcpyFn memcpy_fn_ = nullptr;
    FlushFn flush_fn_ = nullptr;
    DrainFn drain_fn_ = nullptr;
    Status msync_range(std::uint64_t off, std::uint64_t len);
    unsigned file_mode_ = 0;  // st_mode at open
#if PCACHE_TSAN
    Status pread_all(std::uint64_t off, std::span<std::byte> dst) const;
#endif
    std::atomic<int> sync_errno_{0};  // first msync failure (page granularity); sticky
};
static_assert(PmemWritebackFromMapping<Pmem2Device>);

}  // namespace pcache
