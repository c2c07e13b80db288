// The state a Cache (cache.hpp) keeps per segment, per lane and per subtree, each on its own
// cache line(s), templated on the cache's lock types (sync.hpp). docs/design.md "Lanes".
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "pcache/cache/key_index.hpp"
#include "pcache/cache/options.hpp"
#include "pcache/format/codec.hpp"

namespace pcache::cache_detail {

inline constexpr std::uint32_t kNoSeg = UINT32_MAX;

// Own cache line(s): lanes filling neighbouring segments bump their refs (false sharing).
template <class SharedMutex>
struct alignas(64) Segment {
    std::uint32_t phys = 0;
    format::SegmentInfo info{};
    unsigned info_index = 0;
    std::atomic<std::uint64_t> gen{0};
    std::uint8_t gen_seq = 0;
    unsigned gen_index = 0;
    // Keys in the log + the data head filling it. Atomic: a lane bumps it without seg_mutex_
    // (it holds the head's own reference, so it cannot be at zero); the decrement that
    // reaches zero takes seg_mutex_ to invalidate the segment (cache_segment.hpp).
    std::atomic<std::uint32_t> refs{0};
    // Held shared while a read copies this segment's bytes, exclusively while its
    // generation is bumped: a segment is never reclaimed (and reused) under a copy.
    mutable SharedMutex read_mutex;
};

// A lane: a data head and a kset buffer under one lock (docs/design.md "Lanes"), and the
// lane's shard of the counters. Own cache line(s): lanes written by different CPUs never
// share one.
template <class Mutex>
struct alignas(64) Lane {
    mutable Mutex mutex;
    std::uint32_t key_num = 0;
    std::vector<std::byte> image = std::vector<std::byte>(format::kKsetBytesMax);
    // Bumped (under `mutex`) each time the buffer is closed with keys in it: a key appended
    // at epoch E is still in the open buffer exactly while epoch == E. Read without the
    // lock as a hint only; decisions re-check it under the lock.
    std::atomic<std::uint32_t> epoch{1};
    std::uint32_t head_seg = kNoSeg;  // data head: segment being filled, next free byte
    std::uint32_t head_off = 0;
    // Bytes of the dirty keys in `image`, moved to dirty_bytes_ when the buffer is closed.
    // Written under `mutex`; read without it by dirty_bytes().
    std::atomic<std::uint64_t> dirty_open{0};
    // The counts of writes and reads made on this lane (count(Lane&, ...)): relaxed atomic
    // adds (threads on one CPU share a lane); counters() sums every lane's and counters_.
    CacheCounters counters;
};

// The lanes whose open kset buffer may hold keys of a subtree: the cross-lane rule's filter
// (close_other_lanes). Each append records its lane and that lane's epoch; a lane whose
// epoch has moved on since has no key of the subtree left in its open buffer.
inline constexpr std::uint32_t kNoLane = UINT32_MAX;
inline constexpr std::size_t kLaneMarks = 4;
struct LaneMark {
    std::uint32_t lane = kNoLane;
    std::uint32_t epoch = 0;
};
// A subtree on its own cache line(s): writers of neighbouring subtrees share no line. The
// marks and the write count are read and written under the subtree lock only.
template <class Mutex>
struct alignas(64) CacheSubtree : BasicSubtree<Mutex> {
    std::array<LaneMark, kLaneMarks> lane_marks{};
    // Keys of writes inserted so far (not fills): a read miss reads the backing device without
    // the lock and fills only if this has not moved since its lookup (read_piece).
    std::uint64_t writes = 0;
};

}  // namespace pcache::cache_detail
