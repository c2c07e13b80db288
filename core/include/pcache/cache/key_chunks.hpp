// The engine's index of one 4 MiB subtree: its keys in sorted chunks (docs/design.md "The
// index in memory").
//
// A subtree holds up to 8192 keys (one per sector). A red-black tree of them costs a cache
// miss per level, about 11 for 1024 keys, and once the index of a cache outgrows the CPU's
// caches those misses are most of a write hit or a read hit (i17/parts/index_insert: 49 ns
// per insert over 2 subtrees, 914 ns over 256). Here the keys sit in chunks of up to
// kChunkKeys, in order; the subtree keeps each chunk's first offset in one small array. A
// lookup is a binary search of that array (1 or 2 cache lines), one of the chunk's offsets (2
// lines) and the key itself: about 4 lines whatever the size.
//
//   firsts_  [ 0 | 96 | 200 | ... ]       first sector of each chunk (relative to the subtree)
//   chunks_  [ c0 | c1 | c2 | ... ]       KeyChunk*: n, start[n] (sorted), key[n] (packed)
//
// Inserting into a full chunk splits it in halves, except at the end of the last chunk
// (sequential writes), where a new chunk starts: chunks of an append-only subtree are full.
// A chunk left at most a quarter full by an erase is merged into a neighbour when both fit in
// three quarters of one. Chunks come from a process-wide depot (slabs, never returned to the
// heap): no malloc per insert in steady state; walks and erases never allocate.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "pcache/cache/key_node.hpp"
#include "pcache/cache/key_walks.hpp"

namespace pcache {

// A set of non-overlapping keys of one 4 MiB subtree (the interface of KeyTree, key_index.hpp).
class ChunkKeyTree : public KeyWalks<ChunkKeyTree> {
    friend class KeyWalks<ChunkKeyTree>;
    template <class, class>
    friend class KeyIterator;
    using Chunk = index_detail::KeyChunk;
    using Packed = index_detail::PackedKey;
    static constexpr std::uint32_t C = index_detail::kChunkKeys;
    struct Pos {
        std::uint32_t c = 0, i = 0;
        bool operator==(const Pos&) const = default;
    };

public:
    ChunkKeyTree() = default;
    ChunkKeyTree(const ChunkKeyTree&) = delete;
    ChunkKeyTree& operator=(const ChunkKeyTree&) = delete;
    ~ChunkKeyTree() { clear(); }

    // insert, for_each_overlap, first_overlap, erase_pieces_of: KeyWalks (key_walks.hpp).

    void erase_exact(const CacheKey& k) {
        if (size_ == 0 || !Packed::fits(k, base_)) return;
        const Pos it = start(k.off);
        if (at_end(it)) return;
        const CacheKey e = get(it);
        if (e.off == k.off && e.len == k.len && e.seg == k.seg && e.seg_off == k.seg_off) erase(it);
    }

    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    void clear() {
        for (Chunk* c : chunks_) index_detail::ChunkDepot::instance().put(c);
        chunks_.clear();
        firsts_.clear();
        size_ = 0;
    }
    // Kept for the interface of KeyTree: chunks go straight back to the depot (no per-set
    // pool), and the depot's capacity is counted in keys.
    std::size_t pool_idle() const { return 0; }
    static std::size_t depot_capacity() {
        return index_detail::ChunkDepot::instance().capacity() * C;
    }
    std::size_t chunks() const { return chunks_.size(); }

    // Iteration over the keys as (offset, key) pairs, decoded by value (key_walks.hpp).
    using const_iterator = KeyIterator<ChunkKeyTree, Pos>;
    KeyRange<ChunkKeyTree, Pos> keys() const { return {{this, Pos{0, 0}}, {this, end_pos()}}; }

    // Invariant: keys ordered, non-empty, non-overlapping, inside this set's 4 MiB subtree;
    // every chunk non-empty with its offsets sorted and its first in firsts_; size_ their sum.
    bool check_invariants() const {
        if (firsts_.size() != chunks_.size()) return false;
        std::uint64_t prev_end = 0;
        std::size_t total = 0;
        bool first = true;
        for (std::size_t c = 0; c < chunks_.size(); ++c) {
            const Chunk& ch = *chunks_[c];
            if (ch.n == 0 || ch.n > C || firsts_[c] != ch.start[0]) return false;
            for (std::uint32_t i = 0; i < ch.n; ++i) {
                const CacheKey k = ch.key[i].get(base_);
                if (k.len == 0 || (!first && k.off < prev_end) || !Packed::fits(k, base_) ||
                    Packed::rel_of(k.off, base_) != ch.start[i])
                    return false;
                prev_end = k.end();
                first = false;
            }
            total += ch.n;
        }
        return total == size_;
    }

private:
    // KeyWalks' positions (key_walks.hpp).
    Pos insert_start(const CacheKey& k) {
        if (size_ == 0) base_ = k.off & ~format::kSubtreeMask;
        assert(Packed::fits(k, base_));
        return start(k.off);
    }
    Pos walk_from(std::uint64_t off, std::uint64_t end) const {
        if (size_ == 0 || end <= base_ || off >= base_ + format::kSubtreeBytes) return end_pos();
        return start(std::max(off, base_));
    }
    bool at_end(Pos p) const { return p.c == chunks_.size(); }
    Pos end_pos() const { return {static_cast<std::uint32_t>(chunks_.size()), 0}; }
    CacheKey get(Pos p) const { return chunks_[p.c]->key[p.i].get(base_); }
    Pos next(Pos p) const { return ++p.i < chunks_[p.c]->n ? p : Pos{p.c + 1, 0}; }
    void set(Pos p, const CacheKey& k) {
        Chunk& ch = *chunks_[p.c];
        ch.key[p.i].set(k, base_);
        ch.start[p.i] = Packed::rel_of(k.off, base_);
        if (p.i == 0) firsts_[p.c] = ch.start[0];
    }

    // The first key that may overlap a range starting at `off`: the last key starting at or
    // before it if it reaches past it (keys do not overlap: no earlier one can), else the next.
    Pos start(std::uint64_t off) const {
        if (chunks_.empty()) return end_pos();
        const std::uint16_t rel = Packed::rel_of(off, base_);
        const auto f = std::upper_bound(firsts_.begin(), firsts_.end(), rel);
        if (f == firsts_.begin()) return {0, 0};  // every key starts after off
        const auto c = static_cast<std::uint32_t>(f - firsts_.begin() - 1);
        const Chunk& ch = *chunks_[c];
        // Ask for all twelve lines of the chunk at once: the search's lines (offsets, then the
        // key) then come in one memory latency instead of two or three in a row.
        for (std::size_t line = 0; line < sizeof(Chunk); line += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(&ch) + line);
        const auto s = std::upper_bound(ch.start, ch.start + ch.n, rel);
        const Pos last{c, static_cast<std::uint32_t>(s - ch.start - 1)};  // start <= rel
        return get(last).end() > off ? last : next(last);
    }

    // Inserts k before `hint` (its place in the order); returns where k is.
    Pos link(Pos hint, const CacheKey& k) {
        Pos at = hint;
        if (chunks_.empty()) {
            chunks_.push_back(index_detail::ChunkDepot::instance().get());
            firsts_.push_back(0);
            at = {0, 0};
        } else if (at_end(hint) || (hint.i == 0 && hint.c > 0 && chunks_[hint.c - 1]->n < C)) {
            at = {hint.c - 1, chunks_[hint.c - 1]->n};  // the end of the previous chunk
        }
        if (chunks_[at.c]->n == C) at = make_room(at);
        Chunk& ch = *chunks_[at.c];
        const std::uint32_t tail = ch.n - at.i;
        std::memmove(&ch.start[at.i + 1], &ch.start[at.i], tail * sizeof ch.start[0]);
        std::memmove(&ch.key[at.i + 1], &ch.key[at.i], tail * sizeof ch.key[0]);
        ++ch.n;
        ++size_;
        set(at, k);
        return at;
    }

    // Splits the full chunk of `at` so that position `at` has room; returns where it is now.
    // At the end of the last chunk a new, empty chunk follows instead (sequential inserts).
    Pos make_room(Pos at) {
        Chunk* fresh = index_detail::ChunkDepot::instance().get();
        chunks_.insert(chunks_.begin() + at.c + 1, fresh);
        if (at.i == C) {
            firsts_.insert(firsts_.begin() + at.c + 1, 0);  // set() by the caller
            return {at.c + 1, 0};
        }
        Chunk& full = *chunks_[at.c];
        constexpr std::uint32_t kKeep = C / 2;
        fresh->n = static_cast<std::uint16_t>(C - kKeep);
        std::memcpy(fresh->start, full.start + kKeep, fresh->n * sizeof full.start[0]);
        std::memcpy(fresh->key, full.key + kKeep, fresh->n * sizeof full.key[0]);
        full.n = kKeep;
        firsts_.insert(firsts_.begin() + at.c + 1, fresh->start[0]);
        return at.i <= kKeep ? at : Pos{at.c + 1, at.i - kKeep};
    }

    // Removes the key at p; returns the position of the key after it.
    Pos erase(Pos p) {
        Chunk& ch = *chunks_[p.c];
        const std::uint32_t tail = ch.n - p.i - 1;
        std::memmove(&ch.start[p.i], &ch.start[p.i + 1], tail * sizeof ch.start[0]);
        std::memmove(&ch.key[p.i], &ch.key[p.i + 1], tail * sizeof ch.key[0]);
        --ch.n;
        --size_;
        if (ch.n == 0) {
            drop_chunk(p.c);
            return {p.c, 0};
        }
        if (p.i == 0) firsts_[p.c] = ch.start[0];
        Pos after = p.i < ch.n ? p : Pos{p.c + 1, 0};
        if (ch.n > C / 4) return after;
        constexpr std::uint32_t kMergeMax = 3 * C / 4;
        if (p.c + 1 < chunks_.size() && ch.n + chunks_[p.c + 1]->n <= kMergeMax) {
            const std::uint32_t had = ch.n;
            append_chunk(p.c, p.c + 1);
            if (after.c == p.c + 1) after = {p.c, had};
        } else if (p.c > 0 && chunks_[p.c - 1]->n + ch.n <= kMergeMax) {
            const std::uint32_t had = chunks_[p.c - 1]->n;
            append_chunk(p.c - 1, p.c);
            after = after.c == p.c ? Pos{p.c - 1, had + after.i} : Pos{p.c, 0};
        }
        return after;
    }
    // Moves every key of chunk `from` (= into + 1) to the end of chunk `into`; drops `from`.
    void append_chunk(std::uint32_t into, std::uint32_t from) {
        Chunk& a = *chunks_[into];
        const Chunk& b = *chunks_[from];
        assert(from == into + 1 && a.n + b.n <= C);
        std::memcpy(a.start + a.n, b.start, b.n * sizeof b.start[0]);
        std::memcpy(a.key + a.n, b.key, b.n * sizeof b.key[0]);
        a.n = static_cast<std::uint16_t>(a.n + b.n);
        drop_chunk(from);
    }
    void drop_chunk(std::uint32_t c) {
        index_detail::ChunkDepot::instance().put(chunks_[c]);
        chunks_.erase(chunks_.begin() + c);
        firsts_.erase(firsts_.begin() + c);
    }

    std::vector<Chunk*> chunks_;
    std::vector<std::uint16_t> firsts_;  // firsts_[c] == chunks_[c]->start[0]
    std::size_t size_ = 0;
    std::uint64_t base_ = 0;  // the subtree's first byte
};

}  // namespace pcache
