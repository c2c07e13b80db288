// Nodes of the in-memory index and the pool they come from (docs/design.md "The index in memory").
//
// A node is a key plus the hooks of an intrusive red-black tree (Boost.Intrusive,
// optimize_size: parent pointer and colour share a word, 24 B). Two node kinds:
//   CompactKeyNode  40 B: the engine's subtrees. Offsets relative to the 4 MiB subtree and in
//                   512-byte sectors, the generation modulo 2^32 (see same_gen below).
//   WideKeyNode     64 B: scratch sets holding keys of any offset (writeback's per-kset set).
// Nodes come from a KeyPool: slabs of nodes, a free list threaded through freed nodes. After
// the first slabs a subtree inserts and erases without calling malloc; slabs are kept (and
// reused) until the pool is destroyed.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
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
// CompactKeyNode bit fields (sectors): 13 + 13 + 16 + 20 + 1 + 1 = 64 bits.
constexpr unsigned kRelBits = 13, kLenBits = 13, kSegOffBits = 16, kSegBits = 20;
static_assert((format::kSubtreeBytes >> kSectorShift) == (1u << kRelBits));
static_assert(format::kCacheSegsMax <= (1u << kSegBits));

struct CompactKeyNode {
    Hook hook;
    std::uint64_t bits = 0;
    std::uint32_t gen = 0;
    std::uint32_t crc = 0;

    // Largest segment data area a compact key can address (32 MiB; the kernel's is 16 MiB).
    static constexpr std::uint64_t kSegDataBytesMax = kSector << kSegOffBits;
    static bool fits(const CacheKey& k, std::uint64_t base) {
        return k.off >= base && k.end() <= base + format::kSubtreeBytes && k.len > 0 &&
               (k.off | k.len | k.seg_off) % kSector == 0 &&
               std::uint64_t(k.seg_off) + k.len <= kSegDataBytesMax && k.seg < (1u << kSegBits) &&
               (k.flags == 0 || k.flags == format::kKeyFlagClean);
    }
    std::uint64_t order() const { return bits & ((1u << kRelBits) - 1); }
    static std::uint64_t order_of(std::uint64_t off, std::uint64_t base) {
        assert(off >= base);
        return (off - base) >> kSectorShift;
    }
    void set(const CacheKey& k, std::uint64_t base) {
        assert(fits(k, base));
        std::uint64_t b = (k.off - base) >> kSectorShift;
        b |= std::uint64_t((k.len >> kSectorShift) - 1) << kRelBits;
        b |= std::uint64_t(k.seg_off >> kSectorShift) << (kRelBits + kLenBits);
        b |= std::uint64_t(k.seg) << (kRelBits + kLenBits + kSegOffBits);
        b |= std::uint64_t(k.flags ? 1 : 0) << 62;
        b |= std::uint64_t(k.crc_bad ? 1 : 0) << 63;
        bits = b;
        gen = static_cast<std::uint32_t>(k.gen);
        crc = k.data_crc;
    }
    CacheKey get(std::uint64_t base) const {
        auto field = [this](unsigned at, unsigned n) {
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
        return k;
    }
};
static_assert(format::kKernelSegDataBytes <= CompactKeyNode::kSegDataBytesMax);
static_assert(sizeof(CompactKeyNode) == 40, "24 B of tree hooks + 16 B of key");

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

// Slabs of nodes: 4, 4, 8, 16, 32, 64, then 64 each (a subtree of 1024 keys fills 16 slabs
// exactly; a subtree with one key costs one 4-node slab). Freed nodes go to a free list.
template <class Node>
class KeyPool {
public:
    KeyPool() = default;
    KeyPool(const KeyPool&) = delete;
    KeyPool& operator=(const KeyPool&) = delete;
    ~KeyPool() {
        while (slabs_) {
            Slab* next = slabs_->next;
            ::operator delete(slabs_);
            slabs_ = next;
        }
    }

    Node* get() {
        void* at;
        if (free_) {
            at = free_;
            free_ = free_->next;
        } else {
            if (!slabs_ || used_ == slabs_->n) grow();
            at = slot(slabs_, used_++);
        }
        ++live_;
        return new (at) Node();
    }
    void put(Node* n) {
        n->~Node();
        auto* f = reinterpret_cast<Free*>(n);
        f->next = free_;
        free_ = f;
        --live_;
    }
    std::size_t capacity() const { return capacity_; }
    std::size_t live() const { return live_; }
    std::size_t slabs() const { return n_slabs_; }

private:
    struct Free {
        Free* next;
    };
    static_assert(sizeof(Node) >= sizeof(Free));
    struct Slab {
        Slab* next;
        std::size_t n;
    };
    static constexpr std::size_t kHeader =
        (sizeof(Slab) + alignof(Node) - 1) / alignof(Node) * alignof(Node);
    static void* slot(Slab* s, std::size_t i) {
        return reinterpret_cast<std::byte*>(s) + kHeader + i * sizeof(Node);
    }
    void grow() {
        const std::size_t n =
            n_slabs_ < 2 ? 4 : std::min<std::size_t>(64, std::size_t(4) << (n_slabs_ - 1));
        auto* s = static_cast<Slab*>(::operator new(kHeader + n * sizeof(Node)));
        s->next = slabs_;
        s->n = n;
        slabs_ = s;
        used_ = 0;
        capacity_ += n;
        ++n_slabs_;
    }

    Slab* slabs_ = nullptr;
    std::size_t used_ = 0;  // slots handed out from the newest slab
    Free* free_ = nullptr;
    std::size_t capacity_ = 0, live_ = 0, n_slabs_ = 0;
};

}  // namespace index_detail
}  // namespace pcache
