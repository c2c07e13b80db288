// The in-memory index: one ordered map of keys per 4 MiB subtree, no two keys overlapping.
//
// Inserting a key resolves every overlap with existing keys so that the newest write wins
// (dm-pcache-format.md 6.4). Existing keys are trimmed, split or deleted; the cache position
// of a trimmed piece moves with its logical start. Stale keys (their segment generation moved
// on) are dropped whenever a walk meets them. The caller holds the subtree's lock.
#pragma once

#include <cassert>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace pcache {

struct CacheKey {
    std::uint64_t off = 0;       // logical byte offset on the backing device
    std::uint32_t len = 0;       // bytes
    std::uint32_t flags = 0;     // 0 dirty or format::kKeyFlagClean
    std::uint32_t seg = 0;       // cache segment id of the data
    std::uint32_t seg_off = 0;   // offset in that segment's data area
    std::uint64_t gen = 0;       // segment generation at allocation
    std::uint32_t data_crc = 0;  // CRC of exactly [off, off+len) when data_crc is on
    bool crc_bad = false;        // data known not to match its CRC: reads fail
    // Where the key was buffered (docs/design.md "Lanes"): lane, and that lane's close epoch
    // (mod 256) when it was appended. Open (in the lane's unclosed kset buffer) only if the
    // lane's epoch still equals it; a wrapped epoch can only make a closed key look open, which
    // costs an early close, never a missed one. Both fit in the padding after crc_bad.
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
static_assert(sizeof(CacheKey) <= 40, "lane and lane_epoch must fit in CacheKey's padding");

// Mutex: the engine's lock type (pcache/sync.hpp); std::mutex outside the simulator.
template <class Mutex = std::mutex>
class BasicSubtree {
public:
    Mutex mutex;  // the subtree lock: held for index walks and kset appends

    // Inserts `k`; every older byte it covers is forgotten.
    //   is_stale(key) -> bool: the key's generation is older than its segment's.
    //   on_piece(old, piece&): a surviving piece was cut from `old`; fix its CRC.
    //   (diagrams: N = new key, E = existing key)
    template <class IsStale, class OnPiece>
    void insert(const CacheKey& k, IsStale&& is_stale, OnPiece&& on_piece) {
        assert(k.len > 0);
        auto it = keys_.lower_bound(k.off);
        if (it != keys_.begin()) --it;
        [[maybe_unused]] std::size_t bound =
            keys_.size() + 2;  // each step erases or passes one key
        while (it != keys_.end() && it->second.off < k.end()) {
            assert(bound-- > 0);
            const CacheKey e = it->second;
            if (is_stale(e)) {
                it = keys_.erase(it);
                continue;
            }
            if (e.end() <= k.off) {  // E before N: untouched
                ++it;
                continue;
            }
            it = keys_.erase(it);
            if (e.off < k.off) {
                // head:      E [-----)          contained:  E [---------)
                //            N    [-----)                   N    [---)
                CacheKey left = e.piece(e.off, k.off);
                on_piece(e, left);
                keys_.emplace(left.off, left);
                if (e.end() > k.end()) {
                    CacheKey right = e.piece(k.end(), e.end());
                    on_piece(e, right);
                    it = keys_.emplace(right.off, right).first;
                }
            } else if (e.end() > k.end()) {
                // tail:      E    [------)      (E starts inside N, ends after it)
                //            N [-----)
                CacheKey right = e.piece(k.end(), e.end());
                on_piece(e, right);
                it = keys_.emplace(right.off, right).first;
            }
            // contain:  N [--------)  E inside N: dropped by the erase above.
        }
        keys_.emplace(k.off, k);
    }

    // Calls fn(key) for each key overlapping [off, end) in ascending order, dropping stale ones.
    template <class IsStale, class Fn>
    void for_each_overlap(std::uint64_t off, std::uint64_t end, IsStale&& is_stale, Fn&& fn) {
        auto it = keys_.lower_bound(off);
        if (it != keys_.begin() && std::prev(it)->second.end() > off) --it;
        while (it != keys_.end() && it->second.off < end) {
            if (is_stale(it->second)) {
                it = keys_.erase(it);
                continue;
            }
            fn(it->second);
            ++it;
        }
    }

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

    void erase_exact(const CacheKey& k) {
        auto it = keys_.find(k.off);
        if (it != keys_.end() && it->second.len == k.len && it->second.seg == k.seg &&
            it->second.seg_off == k.seg_off)
            keys_.erase(it);
    }
    std::size_t size() const { return keys_.size(); }
    const std::map<std::uint64_t, CacheKey>& keys() const { return keys_; }
    void clear() { keys_.clear(); }

    // Invariant: keys ordered, non-empty and non-overlapping.
    bool check_invariants() const {
        std::uint64_t prev_end = 0;
        for (const auto& [off, k] : keys_) {
            if (off != k.off || k.len == 0 || k.off < prev_end) return false;
            prev_end = k.end();
        }
        return true;
    }

private:
    std::map<std::uint64_t, CacheKey> keys_;
    std::map<std::uint64_t, Poison> poisoned_;
};
using Subtree = BasicSubtree<>;

}  // namespace pcache
