// The in-memory index: one ordered set of keys per 4 MiB subtree, no two keys overlapping.
//
// Inserting a key resolves every overlap with existing keys so that the newest write wins
// (dm-pcache-format.md 6.4). Existing keys are trimmed, split or deleted; the cache position
// of a trimmed piece moves with its logical start. Stale keys (their segment generation moved
// on) are dropped whenever a walk meets them; GC removes the keys of the ksets it retires
// (erase_pieces_of). The caller holds the subtree's lock.
//
// Two implementations of one interface: KeyTree, an intrusive red-black tree whose nodes come
// from a pool (key_node.hpp), for scratch sets of keys at any offset (KeySet); and the
// engine's subtrees, ChunkKeyTree (key_chunks.hpp): keys packed in sorted chunks, about 4
// cache lines per lookup. Neither mallocs per insert once its depot holds the peak number of
// keys. Walks decode each key into a CacheKey on the stack.
#pragma once

#include <cassert>
#include <cstdint>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "pcache/cache/key_chunks.hpp"
#include "pcache/cache/key_node.hpp"
#include "pcache/cache/key_walks.hpp"

namespace pcache {

// A set of non-overlapping keys over nodes of kind Node (key_node.hpp).
template <class Node>
class KeyTree : public KeyWalks<KeyTree<Node>> {
    friend class KeyWalks<KeyTree<Node>>;
    template <class, class>
    friend class KeyIterator;
    using Set = index_detail::NodeSet<Node>;
    using It = typename Set::iterator;

public:
    KeyTree() = default;
    KeyTree(const KeyTree&) = delete;
    KeyTree& operator=(const KeyTree&) = delete;
    ~KeyTree() { clear(); }

    // insert, for_each_overlap, first_overlap, erase_pieces_of: KeyWalks (key_walks.hpp).

    void erase_exact(const CacheKey& k) {
        if (set_.empty() || !Node::fits(k, base_)) return;
        It it = set_.find(Node::order_of(k.off, base_));
        if (it == set_.end()) return;
        const CacheKey e = it->get(base_);
        if (e.off == k.off && e.len == k.len && e.seg == k.seg && e.seg_off == k.seg_off) erase(it);
    }

    std::size_t size() const { return set_.size(); }
    bool empty() const { return set_.empty(); }
    void clear() {
        set_.clear_and_dispose([this](Node* n) { pool_.put(n); });
    }
    // Free nodes this set's pool keeps (at most 2 * KeyPool::kBatch), and the nodes the
    // process-wide depot holds for sets of this kind (tests, benchmarks).
    std::size_t pool_idle() const { return pool_.idle(); }
    static std::size_t depot_capacity() {
        return index_detail::NodeDepot<Node>::instance().capacity();
    }

    // Iteration over the keys as (offset, key) pairs, decoded by value (key_walks.hpp).
    using const_iterator = KeyIterator<KeyTree, typename Set::const_iterator>;
    KeyRange<KeyTree, typename Set::const_iterator> keys() const {
        return {{this, set_.cbegin()}, {this, set_.cend()}};
    }

    // Invariant: keys ordered, non-empty, non-overlapping, inside this set's 4 MiB subtree
    // (compact nodes) and as many as the pool has handed out.
    bool check_invariants() const {
        std::uint64_t prev_end = 0;
        bool first = true;
        for (const Node& n : set_) {
            const CacheKey k = n.get(base_);
            if (k.len == 0 || (!first && k.off < prev_end) || !Node::fits(k, base_)) return false;
            prev_end = k.end();
            first = false;
        }
        return pool_.live() == set_.size();
    }

private:
    // KeyWalks' positions (key_walks.hpp): set iterators.
    It insert_start(const CacheKey& k) {
        if (set_.empty()) base_ = k.off & ~format::kSubtreeMask;
        assert(Node::fits(k, base_));
        return start(k.off);
    }
    It walk_from(std::uint64_t off, std::uint64_t) {
        return set_.empty() ? set_.end() : start(off);
    }
    bool at_end(It it) const { return it == set_.end(); }
    template <class I>  // It, or Set::const_iterator for keys()
    CacheKey get(I it) const {
        return it->get(base_);
    }
    template <class I>
    static I next(I it) {
        return std::next(it);
    }
    void set(It it, const CacheKey& k) { it->set(k, base_); }
    // The first key that may overlap a range starting at `off`.
    It start(std::uint64_t off) {
        It it = set_.lower_bound(Node::order_of(off, base_));
        if (it != set_.begin()) {
            It prev = std::prev(it);
            if (prev->get(base_).end() > off) it = prev;
        }
        return it;
    }
    It link(It hint, const CacheKey& k) {
        Node* n = pool_.get();
        n->set(k, base_);
        return set_.insert(hint, *n);
    }
    It erase(It it) {
        return set_.erase_and_dispose(it, [this](Node* n) { pool_.put(n); });
    }

    index_detail::KeyPool<Node> pool_;  // declared first: outlives the set
    Set set_;
    std::uint64_t base_ = 0;  // the subtree's first byte (compact nodes)
};

// A scratch set of keys at any offsets (writeback's newest-key-wins set of one kset).
using KeySet = KeyTree<index_detail::WideKeyNode>;

// Mutex: the engine's lock type (pcache/sync.hpp); std::mutex outside the simulator.
template <class Mutex = std::mutex>
class BasicSubtree : public ChunkKeyTree {
public:
    Mutex mutex;  // the subtree lock: held for index walks and kset appends

    // Poisoned ranges: dirty data lost before it reached the backing device (writeback found
    // it unreadable or failing its CRC). Reads of them fail until they are overwritten. In
    // memory only (docs/design.md, fault policy).
    struct Poison {
        std::uint64_t end;
        std::string why;
    };
    void poison(std::uint64_t off, std::uint64_t end, const std::string& why) {
        clear_poison(off, end);
        poisoned_.emplace(off, Poison{end, why});
    }
    void clear_poison(std::uint64_t off, std::uint64_t end) {
        if (poisoned_.empty()) return;
        auto it = poisoned_.lower_bound(off);
        if (it != poisoned_.begin() && std::prev(it)->second.end > off) --it;
        while (it != poisoned_.end() && it->first < end) {
            const std::uint64_t a = it->first;
            const Poison p = it->second;
            it = poisoned_.erase(it);
            if (a < off) poisoned_.emplace(a, Poison{off, p.why});
            if (p.end > end) it = poisoned_.emplace(end, Poison{p.end, p.why}).first;
        }
    }
    // The first poisoned range overlapping [off, end), or nullptr.
    const std::pair<const std::uint64_t, Poison>* poisoned(std::uint64_t off,
                                                           std::uint64_t end) const {
        if (poisoned_.empty()) return nullptr;
        auto it = poisoned_.lower_bound(off);
        if (it != poisoned_.begin() && std::prev(it)->second.end > off) --it;
        if (it != poisoned_.end() && it->first < end && it->second.end > off) return &*it;
        return nullptr;
    }

private:
    std::map<std::uint64_t, Poison> poisoned_;
};
using Subtree = BasicSubtree<>;

}  // namespace pcache
