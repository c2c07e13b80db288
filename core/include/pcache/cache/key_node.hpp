// Nodes and chunks of the in-memory index and the stores they come from (docs/design.md "The
// index in memory").
//
// A node is a key plus the hooks of an intrusive red-black tree (Boost.Intrusive,
// optimize_size: parent pointer and colour share a word, 24 B):
//   WideKeyNode     64 B: scratch sets holding keys of any offset (writeback's per-kset set).
// The engine's subtrees keep their keys packed in sorted chunks instead (key_chunks.hpp).
// Nodes come from a KeyPool per set, which refills from and trims back to a process-wide
// NodeDepot per node kind (slabs of 64 nodes, kept and reused for the life of the process). A
// set inserts and erases without calling malloc once the depot holds the process's peak.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

#include <boost/intrusive/set.hpp>

#include "pcache/format/constants.hpp"

namespace pcache {

struct CacheKey {
    std::uint64_t off = 0;       // logical byte offset on the backing device
    std::uint32_t len = 0;       // bytes
    std::uint32_t flags = 0;     // 0 dirty or format::kKeyFlagClean
    std::uint32_t seg = 0;       // cache segment id of the data
    std::uint32_t seg_off = 0;   // offset in that segment's data area
    std::uint64_t gen = 0;       // segment generation at allocation (index keys: modulo 2^32)
    std::uint32_t data_crc = 0;  // CRC of exactly [off, off+len) when data_crc is on
    bool crc_bad = false;        // data known not to match its CRC: reads fail
    // Where the key was buffered (docs/design.md "Lanes"): lane, and that lane's close epoch
    // (mod 256) when it was appended. Open (in the lane's unclosed kset buffer) only if the
    // lane's epoch still equals it; a wrapped epoch can only make a closed key look open, which
    // costs an early close, never a missed one.
    std::uint8_t lane_epoch = 0;
    std::uint16_t lane = 0;

    std::uint64_t end() const { return off + len; }
    // The piece [from, to) of this key (same generation and flags; CRC to be recomputed).
    CacheKey piece(std::uint64_t from, std::uint64_t to) const {
        assert(from >= off && to <= end() && from < to);
        CacheKey k = *this;
        k.off = from;
        k.len = static_cast<std::uint32_t>(to - from);
        k.seg_off = static_cast<std::uint32_t>(seg_off + (from - off));
        return k;
    }
};

// Keys in the index keep their generation modulo 2^32. A key is stale when its generation
// differs from its segment's (an index key is never newer than its segment). A key that
// lingered while its segment was reclaimed exactly 2^32 times would look live; it cannot:
// GC removes a kset's keys from the index in the same step that drops the references that let
// their segment be reclaimed (one reclaim, not 2^32).
inline bool same_gen(std::uint64_t a, std::uint64_t b) {
    return static_cast<std::uint32_t>(a) == static_cast<std::uint32_t>(b);
}
// Is `e` (in the index) a piece of `k` (a key of the log): same segment, generation and
// position of every byte?
inline bool is_piece_of(const CacheKey& e, const CacheKey& k) {
    return e.seg == k.seg && same_gen(e.gen, k.gen) && e.off >= k.off && e.end() <= k.end() &&
           e.seg_off == k.seg_off + (e.off - k.off);
}

namespace index_detail {
namespace bi = boost::intrusive;
using Hook = bi::set_member_hook<bi::optimize_size<true>, bi::link_mode<bi::normal_link>>;

constexpr std::uint32_t kSectorShift = 9;
constexpr std::uint64_t kSector = 1u << kSectorShift;
// PackedKey bit fields (key_chunks.hpp; sectors): 13 + 13 + 16 + 20 + 1 + 1 = 64 bits.
constexpr unsigned kRelBits = 13, kLenBits = 13, kSegOffBits = 16, kSegBits = 20;
static_assert((format::kSubtreeBytes >> kSectorShift) == (1u << kRelBits));
static_assert(format::kCacheSegsMax <= (1u << kSegBits));

struct WideKeyNode {
    Hook hook;
    CacheKey key;
    static bool fits(const CacheKey& k, std::uint64_t) { return k.len > 0; }
    std::uint64_t order() const { return key.off; }
    static std::uint64_t order_of(std::uint64_t off, std::uint64_t) { return off; }
    void set(const CacheKey& k, std::uint64_t) { key = k; }
    CacheKey get(std::uint64_t) const { return key; }
};

template <class Node>
struct OrderOf {
    using type = std::uint64_t;
    type operator()(const Node& n) const { return n.order(); }
};

template <class Node>
using NodeSet = bi::set<Node, bi::member_hook<Node, Hook, &Node::hook>,
                        bi::key_of_value<OrderOf<Node>>, bi::constant_time_size<true>>;

struct FreeNode {
    FreeNode* next;
};

// The process-wide store of one kind of index object (nodes of one kind, chunks): slabs of
// kSlab objects aligned for T, never returned to the heap (a later cache reuses them), and a
// free list behind a leaf lock. A KeyPool takes and gives back nodes kBatch at a time (take,
// give); a chunked set takes and gives back one chunk per split or merge (get, put). The memory
// held, capacity() objects (the DRAM figures count it), is the process's peak of live objects
// plus what the pools keep, not the sum of every set's own peak.
template <class T, std::size_t kSlab>
class SlabDepot {
    static_assert(sizeof(T) >= sizeof(FreeNode) && alignof(T) >= alignof(FreeNode));

public:
    static SlabDepot& instance() {
        static SlabDepot* depot = new SlabDepot;  // never destroyed: outlives every static set
        return *depot;
    }
    // Moves n free objects (raw memory) onto the front of *list.
    void take(FreeNode*& list, std::size_t n) {
        std::lock_guard g(mutex_);
        for (std::size_t i = 0; i < n; ++i) {
            FreeNode* f = pop();
            f->next = list;
            list = f;
        }
    }
    // Takes back the chain first .. last (raw memory).
    void give(FreeNode* first, FreeNode* last) {
        std::lock_guard g(mutex_);
        last->next = free_;
        free_ = first;
    }
    T* get() {
        FreeNode* f;
        {
            std::lock_guard g(mutex_);
            f = pop();
        }
        return new (f) T();
    }
    void put(T* t) {
        t->~T();
        auto* f = reinterpret_cast<FreeNode*>(t);
        give(f, f);
    }
    std::size_t capacity() {
        std::lock_guard g(mutex_);
        return capacity_;
    }

private:
    FreeNode* pop() {
        if (!free_) grow();
        FreeNode* f = free_;
        free_ = f->next;
        return f;
    }
    void grow() {  // a new slab on the free list, its first object in front
        auto* slab = static_cast<std::byte*>(
            ::operator new(kSlab * sizeof(T), std::align_val_t(alignof(T))));
        for (std::size_t i = kSlab; i-- > 0;) {
            auto* f = reinterpret_cast<FreeNode*>(slab + i * sizeof(T));
            f->next = free_;
            free_ = f;
        }
        capacity_ += kSlab;
    }
    std::mutex mutex_;
    FreeNode* free_ = nullptr;
    std::size_t capacity_ = 0;
};

// Nodes: slabs of 64 per node kind.
template <class Node>
using NodeDepot = SlabDepot<Node, 64>;

// One subtree's nodes: a free list refilled from the depot kBatch nodes at a time and trimmed
// back to it above 2 * kBatch. In steady state an insert or erase touches only this list.
template <class Node>
class KeyPool {
public:
    static constexpr std::size_t kBatch = 8;
    KeyPool() = default;
    KeyPool(const KeyPool&) = delete;
    KeyPool& operator=(const KeyPool&) = delete;
    ~KeyPool() {
        assert(live_ == 0);
        if (free_) give(n_free_);
    }

    Node* get() {
        static_assert(sizeof(Node) >= sizeof(FreeNode));
        if (!free_) {
            NodeDepot<Node>::instance().take(free_, kBatch);
            n_free_ = kBatch;
        }
        FreeNode* f = free_;
        free_ = f->next;
        --n_free_;
        ++live_;
        return new (f) Node();
    }
    void put(Node* n) {
        n->~Node();
        auto* f = reinterpret_cast<FreeNode*>(n);
        f->next = free_;
        free_ = f;
        ++n_free_;
        --live_;
        if (n_free_ > 2 * kBatch) give(kBatch);
    }
    std::size_t live() const { return live_; }
    std::size_t idle() const { return n_free_; }

private:
    void give(std::size_t n) {  // the first n nodes of the free list back to the depot
        FreeNode* first = free_;
        FreeNode* last = first;
        for (std::size_t i = 1; i < n; ++i) last = last->next;
        free_ = last->next;
        n_free_ -= n;
        NodeDepot<Node>::instance().give(first, last);
    }
    FreeNode* free_ = nullptr;
    std::size_t n_free_ = 0, live_ = 0;
};

// ---- the engine's subtrees: packed keys in sorted chunks (key_chunks.hpp) ----

// A CacheKey of one subtree in 20 bytes: offsets relative to the subtree and in sectors, the
// generation modulo 2^32 (same_gen), the lane tag of the cross-lane rule.
struct PackedKey {
    std::uint32_t lo = 0, hi = 0;  // 13 + 13 + 16 + 20 + 1 + 1 bits (kRelBits ...)
    std::uint32_t gen = 0;
    std::uint32_t crc = 0;
    std::uint16_t lane = 0;
    std::uint8_t lane_epoch = 0;
    std::uint8_t pad = 0;

    // Largest segment data area a packed key can address (32 MiB; the kernel's is 16 MiB).
    static constexpr std::uint64_t kSegDataBytesMax = kSector << kSegOffBits;
    static bool fits(const CacheKey& k, std::uint64_t base) {
        return k.off >= base && k.end() <= base + format::kSubtreeBytes && k.len > 0 &&
               (k.off | k.len | k.seg_off) % kSector == 0 &&
               std::uint64_t(k.seg_off) + k.len <= kSegDataBytesMax && k.seg < (1u << kSegBits) &&
               (k.flags == 0 || k.flags == format::kKeyFlagClean);
    }
    static std::uint16_t rel_of(std::uint64_t off, std::uint64_t base) {
        assert(off >= base && off - base < format::kSubtreeBytes);
        return static_cast<std::uint16_t>((off - base) >> kSectorShift);
    }
    void set(const CacheKey& k, std::uint64_t base) {
        assert(fits(k, base));
        std::uint64_t b = rel_of(k.off, base);
        b |= std::uint64_t((k.len >> kSectorShift) - 1) << kRelBits;
        b |= std::uint64_t(k.seg_off >> kSectorShift) << (kRelBits + kLenBits);
        b |= std::uint64_t(k.seg) << (kRelBits + kLenBits + kSegOffBits);
        b |= std::uint64_t(k.flags ? 1 : 0) << 62;
        b |= std::uint64_t(k.crc_bad ? 1 : 0) << 63;
        lo = static_cast<std::uint32_t>(b);
        hi = static_cast<std::uint32_t>(b >> 32);
        gen = static_cast<std::uint32_t>(k.gen);
        crc = k.data_crc;
        lane = k.lane;
        lane_epoch = k.lane_epoch;
    }
    CacheKey get(std::uint64_t base) const {
        const std::uint64_t bits = (std::uint64_t(hi) << 32) | lo;
        auto field = [bits](unsigned at, unsigned n) {
            return static_cast<std::uint32_t>((bits >> at) & ((1ull << n) - 1));
        };
        CacheKey k;
        k.off = base + (std::uint64_t(field(0, kRelBits)) << kSectorShift);
        k.len = (field(kRelBits, kLenBits) + 1) << kSectorShift;
        k.seg_off = field(kRelBits + kLenBits, kSegOffBits) << kSectorShift;
        k.seg = field(kRelBits + kLenBits + kSegOffBits, kSegBits);
        k.flags = field(62, 1) ? format::kKeyFlagClean : 0;
        k.crc_bad = field(63, 1) != 0;
        k.gen = gen;
        k.data_crc = crc;
        k.lane = lane;
        k.lane_epoch = lane_epoch;
        return k;
    }
};
static_assert(sizeof(PackedKey) == 20);
static_assert(format::kKernelSegDataBytes <= PackedKey::kSegDataBytesMax);

inline constexpr std::uint32_t kChunkKeys = 34;  // 2 + 68 + 680 B: twelve cache lines

struct alignas(64) KeyChunk {
    std::uint16_t n = 0;
    std::uint16_t start[kChunkKeys];  // sorted: start[i] = rel offset of key[i]
    PackedKey key[kChunkKeys];
};
static_assert(sizeof(KeyChunk) == 768);

// Chunks: slabs of 16 (twelve cache lines each, 64-byte aligned). The depot's lock is taken once
// per chunk allocated or freed (a split or merge: at most one per kChunkKeys / 2 inserts or
// erases).
using ChunkDepot = SlabDepot<KeyChunk, 16>;

}  // namespace index_detail
}  // namespace pcache
