// The overlap rules of an index set, written once for both layouts (key_index.hpp's KeyTree,
// key_chunks.hpp's ChunkKeyTree): inserting a key so that the newest write wins
// (dm-pcache-format.md 6.4), walking the keys over a range, and GC's removal of retired keys.
//
// A set S derives from KeyWalks<S> and gives it (as a friend) positions `S::Pos` and:
//   Pos insert_start(const CacheKey& k)   the first key that may overlap k (a fresh set adopts
//                                         k's subtree first)
//   Pos walk_from(off, end)               the first key that may overlap [off, end), or the end
//                                         when the set cannot hold any
//   bool at_end(Pos); CacheKey get(Pos); Pos next(Pos)
//   void set(Pos, key)                    replaces the key in place (its order is unchanged)
//   Pos erase(Pos)                        returns the position of the key after it
//   Pos link(Pos hint, key)               inserts before hint; returns where the key is
//   std::size_t size()
// and, for keys() (KeyRange), a const walk: get(P) and next(P) for a position P of a const set.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

#include "pcache/cache/key_node.hpp"
#include "pcache/mutation.hpp"

namespace pcache {

// Iteration over a set's keys as (offset, key) pairs, decoded by value: a position P of the
// set S, read with S's get(P) and advanced with its next(P) (S befriends KeyIterator).
template <class S, class P>
class KeyIterator {
public:
    using value_type = std::pair<std::uint64_t, CacheKey>;
    using difference_type = std::ptrdiff_t;
    using reference = value_type;
    using iterator_category = std::input_iterator_tag;
    struct Arrow {
        value_type v;
        const value_type* operator->() const { return &v; }
    };
    KeyIterator() = default;
    KeyIterator(const S* s, P p) : s_(s), p_(p) {}
    value_type operator*() const {
        const CacheKey k = s_->get(p_);
        return {k.off, k};
    }
    Arrow operator->() const { return Arrow{**this}; }
    KeyIterator& operator++() {
        p_ = s_->next(p_);
        return *this;
    }
    KeyIterator operator++(int) {
        KeyIterator t = *this;
        ++*this;
        return t;
    }
    bool operator==(const KeyIterator& o) const { return p_ == o.p_; }

private:
    const S* s_ = nullptr;
    P p_{};
};

// A set's keys from position b to e (S::keys()).
template <class S, class P>
struct KeyRange {
    KeyIterator<S, P> b, e;
    KeyIterator<S, P> begin() const { return b; }
    KeyIterator<S, P> end() const { return e; }
};

template <class S>
class KeyWalks {
public:
    // Inserts `k`; every older byte it covers is forgotten.
    //   is_stale(key) -> bool: the key's generation is older than its segment's.
    //   on_piece(old, piece&): a surviving piece was cut from `old`; fix its CRC.
    //   (diagrams: N = new key, E = existing key)
    template <class IsStale, class OnPiece>
    void insert(const CacheKey& k, IsStale&& is_stale, OnPiece&& on_piece) {
        assert(k.len > 0);
        auto it = self().insert_start(k);
        [[maybe_unused]] std::size_t bound = self().size() + 2;  // each step erases or passes one
        while (!self().at_end(it)) {
            assert(bound-- > 0);
            const CacheKey e = self().get(it);
            if (e.off >= k.end()) break;
            if (is_stale(e)) {
                it = self().erase(it);
                continue;
            }
            if (e.end() <= k.off) {  // E before N: untouched
                it = self().next(it);
                continue;
            }
            if (e.off < k.off) {
                // head:      E [-----)          contained:  E [---------)
                //            N    [-----)                   N    [---)
                // The left piece keeps E's place (same start: the order is unchanged).
                CacheKey left = e.piece(e.off, k.off);
                on_piece(e, left);
                self().set(it, left);
                it = self().next(it);
                if (e.end() > k.end()) {
                    CacheKey right = e.piece(k.end(), e.end());
                    on_piece(e, right);
                    it = self().link(it, right);
                }
            } else if (e.end() > k.end()) {
                // tail:      E    [------)      (E starts inside N, ends after it)
                //            N [-----)
                // E moves its start to N's end: still after every key before it and before
                // the next key (which starts at or after E's end).
                CacheKey right = e.piece(k.end(), e.end());
                on_piece(e, right);
                self().set(it, right);
            } else {
                // contain:  N [--------)  E inside N: dropped.
                it = self().erase(it);
            }
        }
        self().link(it, k);
    }

    // Calls fn(key) for each key overlapping [off, end) in ascending order, dropping stale
    // ones. When fn returns bool, false stops the walk. fn must not change this set.
    template <class IsStale, class Fn>
    void for_each_overlap(std::uint64_t off, std::uint64_t end, IsStale&& is_stale, Fn&& fn) {
        for (auto it = self().walk_from(off, end); !self().at_end(it);) {
            const CacheKey k = self().get(it);
            if (k.off >= end) break;
            if (is_stale(k)) {
                it = self().erase(it);
                continue;
            }
            if (k.end() > off) {
                if constexpr (std::is_same_v<decltype(fn(k)), bool>) {
                    if (!fn(k)) return;
                } else {
                    fn(k);
                }
            }
            it = self().next(it);
        }
    }

    // The first key overlapping [off, end) into *out (stale ones met are dropped); false if
    // none. One lookup: a caller may change the set between calls.
    template <class IsStale>
    bool first_overlap(std::uint64_t off, std::uint64_t end, IsStale&& is_stale, CacheKey* out) {
        bool found = false;
        for_each_overlap(off, end, is_stale, [&](const CacheKey& k) {
            *out = k;
            found = true;
            return false;
        });
        return found;
    }

    // Removes every key that is a piece of `k` (is_piece_of: same segment, generation and
    // position) and drops stale keys met on the way; a newer key over the range stays.
    template <class IsStale>
    std::size_t erase_pieces_of(const CacheKey& k, IsStale&& is_stale) {
        std::size_t n = 0;
        for (auto it = self().walk_from(k.off, k.end()); !self().at_end(it);) {
            const CacheKey e = self().get(it);
            if (e.off >= k.end()) break;
            // M18: GC removes every key over the retired range, newer ones too
            const bool retired = e.end() > k.off && (mutant(18) || is_piece_of(e, k));
            if (retired || is_stale(e)) {
                n += retired ? 1 : 0;
                it = self().erase(it);
                continue;
            }
            it = self().next(it);
        }
        return n;
    }

private:
    S& self() { return static_cast<S&>(*this); }
};

}  // namespace pcache
