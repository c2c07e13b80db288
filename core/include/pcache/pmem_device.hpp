// PmemDevice: the policy through which the engine touches persistent memory.
//
// It models a byte-addressable persistent mapping and the x86 persistence primitives:
//  * write(off, bytes, flags): copy into pmem, like pmem2_memcpy. Flags as libpmem2's:
//      kNoFlush     - leave the lines in the CPU cache (the caller flushes later),
//      kNoDrain     - do not fence (the caller drains later),
//      kNonTemporal - bypass the cache (pending until the next drain).
//    With no flags the bytes are durable when write returns. The kernel's memcpy_flushcache is
//    write(off, bytes, kNonTemporal | kNoDrain).
//  * flush(off, len): write back the lines (clwb); no ordering, nothing durable without drain().
//  * drain(): the store fence; everything flushed or written non-temporally before it is durable
//    when it returns ok. An error (e.g. a failed msync) means durability is not known: callers
//    must report it, never acknowledge what it covered.
//  * read(off, out): a machine-check-safe copy that reports a media error instead of crashing.
//  * data(): read-only view of the mapping for direct reads (may be used only where a media
//    error would be acceptable to crash on; the engine reads metadata through read()).
// Every persistent store goes through write(): the engine never stores through a raw pointer.
// A policy may also name the engine's lock types (`Mutex`, `SharedMutex`; pcache/sync.hpp):
// only the concurrent simulator does, production policies get std::mutex/std::shared_mutex.
// Out-of-range requests are refused with Errc::invalid_argument and change nothing.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>

#include "pcache/result.hpp"

namespace pcache {

enum PmemWriteFlags : unsigned {
    kPmemDefault = 0,            // copy, flush and drain: durable on return
    kPmemNoFlush = 1u << 0,      // PMEM2_F_MEM_NOFLUSH
    kPmemNoDrain = 1u << 1,      // no fence
    kPmemNonTemporal = 1u << 2,  // PMEM2_F_MEM_NONTEMPORAL
};
// The kernel's memcpy_flushcache: non-temporal copy, fence left to the caller.
inline constexpr unsigned kPmemFlushCache = kPmemNonTemporal | kPmemNoDrain;

template <class P>
concept PmemDevice = requires(P& p, const P& cp, std::uint64_t off, std::uint64_t len,
                              std::span<const std::byte> src, std::span<std::byte> dst,
                              unsigned flags) {
    { cp.size() } -> std::same_as<std::uint64_t>;
    { cp.data() } -> std::same_as<const std::byte*>;
    { p.write(off, src, flags) } -> std::same_as<Status>;
    { p.flush(off, len) } -> std::same_as<Status>;
    { p.drain() } -> std::same_as<Status>;
    { cp.read(off, dst) } -> std::same_as<Status>;
};

// Optional capability: writeback_from_mapping() true says the engine may hand data() ranges
// straight to a backing-device write, without copying them out first (issue 17 item 4). Only
// where touching the mapping can never kill the process: memory or page-cache pages, whose
// failures (a file truncated under the mapping) make the kernel's copy fail the write with
// EFAULT. The engine then sends the same range through read() (the copy, which finds and
// reports a media error) before it gives up on it. Real pmem (DAX) says false: a poisoned line
// read by the kernel is a machine check that not every kernel recovers from.
template <class P>
concept PmemWritebackFromMapping = PmemDevice<P> && requires(const P& cp) {
    { cp.writeback_from_mapping() } -> std::same_as<bool>;
};

// Range check shared by implementations: [off, off+len) inside a device of `size` bytes.
inline Status check_range(const char* what, std::uint64_t off, std::uint64_t len,
                          std::uint64_t size) {
    if (off > size || len > size - off)
        return {Errc::invalid_argument, std::string(what) + " [" + std::to_string(off) + ", +" +
                                            std::to_string(len) + ") is outside the device (" +
                                            std::to_string(size) + " B)"};
    return {};
}

}  // namespace pcache
