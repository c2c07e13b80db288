// Overlap resolution of the subtree index, one test per case (dm-pcache-format.md 6.4).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <vector>

#include "pcache/cache/key_index.hpp"

namespace pcache {
namespace {

CacheKey key(std::uint64_t off, std::uint32_t len, std::uint32_t seg_off = 0) {
    CacheKey k;
    k.off = off;
    k.len = len;
    k.seg = 1;
    k.seg_off = seg_off;
    return k;
}

struct Span {
    std::uint64_t off, len, seg_off;
    bool operator==(const Span&) const = default;
};
std::ostream& operator<<(std::ostream& o, const Span& s) {
    return o << "[" << s.off << ",+" << s.len << " @" << s.seg_off << "]";
}

std::vector<Span> spans(const Subtree& st) {
    std::vector<Span> out;
    for (const auto& [off, k] : st.keys()) out.push_back({k.off, k.len, k.seg_off});
    return out;
}

void insert(Subtree& st, const CacheKey& k) {
    st.insert(
        k, [](const CacheKey&) { return false; }, [](const CacheKey&, CacheKey&) {});
    ASSERT_TRUE(st.check_invariants());
}

TEST(KeyIndex, NoOverlap) {
    // E [--)      N [--)
    Subtree st;
    insert(st, key(0, 512, 0));
    insert(st, key(1024, 512, 4096));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 512, 0}, {1024, 512, 4096}}));
}

TEST(KeyIndex, NewCoversOld) {
    // N [--------)
    // E   [--)        -> E deleted
    Subtree st;
    insert(st, key(1024, 512, 0));
    insert(st, key(0, 4096, 8192));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 4096, 8192}}));
}

TEST(KeyIndex, ExactOverwrite) {
    Subtree st;
    insert(st, key(0, 4096, 0));
    insert(st, key(0, 4096, 8192));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 4096, 8192}}));
}

TEST(KeyIndex, OldCoversNewSplits) {
    // E [--------)
    // N    [--)       -> E keeps its head, a new key gets its tail with the cache offset moved
    Subtree st;
    insert(st, key(0, 4096, 0));
    insert(st, key(1024, 1024, 100352));
    EXPECT_EQ(spans(st),
              (std::vector<Span>{{0, 1024, 0}, {1024, 1024, 100352}, {2048, 2048, 2048}}));
}

TEST(KeyIndex, HeadOverlapCutsOldBack) {
    // E [-----)
    // N    [-----)    -> E cut back to N.start
    Subtree st;
    insert(st, key(0, 2048, 0));
    insert(st, key(1024, 2048, 50176));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 1024, 0}, {1024, 2048, 50176}}));
}

TEST(KeyIndex, TailOverlapCutsOldFront) {
    // E    [-----)
    // N [-----)       -> E starts at N.end, cache offset advanced by the cut
    Subtree st;
    insert(st, key(1024, 2048, 0));
    insert(st, key(0, 2048, 50176));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 2048, 50176}, {2048, 1024, 1024}}));
}

TEST(KeyIndex, ManyKeysSpanned) {
    // E [-)[-)[-)[-)[-)
    // N   [---------)  -> head of the first and tail of the last survive
    Subtree st;
    for (int i = 0; i < 5; ++i) insert(st, key(i * 1024, 1024, i * 1024));
    insert(st, key(512, 4096, 90112));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 512, 0}, {512, 4096, 90112}, {4608, 512, 4608}}));
}

TEST(KeyIndex, StaleKeysAreDropped) {
    Subtree st;
    insert(st, key(0, 512, 0));
    CacheKey fresh = key(4096, 512, 512);
    st.insert(
        fresh, [](const CacheKey& k) { return k.off == 0; }, [](const CacheKey&, CacheKey&) {});
    // The stale key was only met if it overlapped the walk; a lookup over it drops it.
    int seen = 0;
    st.for_each_overlap(
        0, 8192, [](const CacheKey& k) { return k.off == 0; }, [&](const CacheKey&) { ++seen; });
    EXPECT_EQ(seen, 1);
    EXPECT_EQ(st.size(), 1u);
}

TEST(KeyIndex, PieceCallbackSeesEveryCut) {
    Subtree st;
    insert(st, key(0, 4096, 0));
    int pieces = 0;
    st.insert(
        key(1024, 512, 9216), [](const CacheKey&) { return false; },
        [&](const CacheKey& whole, CacheKey& piece) {
            EXPECT_EQ(whole.off, 0u);
            EXPECT_TRUE(piece.off == 0 || piece.off == 1536);
            ++pieces;
        });
    EXPECT_EQ(pieces, 2);
}

TEST(KeyIndex, CompactNodeKeepsEveryField) {
    // Extremes of each field survive the compact node: last sector of the subtree, a 4 MiB key,
    // the largest segment id and offset, a generation above 2^32 (kept modulo 2^32), CRC, flags.
    constexpr std::uint64_t base = 7 * format::kSubtreeBytes;
    for (const CacheKey& k :
         {CacheKey{base, 4u << 20, format::kKeyFlagClean, format::kCacheSegsMax - 1, 0, 5, 1, true,
                   255, 1023},
          CacheKey{base + format::kSubtreeBytes - 512, 512, 0, 0,
                   static_cast<std::uint32_t>(format::kKernelSegDataBytes - 512),
                   (7ull << 32) | 0xFFFFFFFFu, 0xDEADBEEF, false}}) {
        Subtree st;
        insert(st, k);
        const CacheKey got = (*st.keys().begin()).second;
        EXPECT_EQ(got.off, k.off);
        EXPECT_EQ(got.len, k.len);
        EXPECT_EQ(got.flags, k.flags);
        EXPECT_EQ(got.seg, k.seg);
        EXPECT_EQ(got.seg_off, k.seg_off);
        EXPECT_TRUE(same_gen(got.gen, k.gen));
        EXPECT_EQ(got.data_crc, k.data_crc);
        EXPECT_EQ(got.crc_bad, k.crc_bad);
        EXPECT_EQ(got.lane, k.lane);
        EXPECT_EQ(got.lane_epoch, k.lane_epoch);
    }
    // 16 B of key, 3 B of lane tag (the cross-lane rule) and a byte of padding.
    EXPECT_EQ(sizeof(index_detail::PackedKey), 20u);
}

TEST(KeyIndex, ErasePiecesOfRemovesOnlyTheRetiredExtent) {
    // Old key O [0, 16K) @0 cut by a newer N [4K, 8K): pieces of O on both sides of N.
    Subtree st;
    CacheKey old_key = key(0, 16384, 0);
    old_key.gen = 3;
    CacheKey newer = key(4096, 4096, 32768);
    newer.gen = 3;  // same segment and generation, another extent: not a piece of O
    insert(st, old_key);
    insert(st, newer);
    ASSERT_EQ(st.size(), 3u);
    const auto never_stale = [](const CacheKey&) { return false; };
    EXPECT_EQ(st.erase_pieces_of(old_key, never_stale), 2u);
    EXPECT_EQ(spans(st), (std::vector<Span>{{4096, 4096, 32768}}));
    // Same extent, older generation (the segment was reused): not a piece either.
    CacheKey other_gen = newer;
    other_gen.gen = 2;
    EXPECT_EQ(st.erase_pieces_of(other_gen, never_stale), 0u);
    EXPECT_EQ(st.size(), 1u);
    EXPECT_EQ(st.erase_pieces_of(newer, never_stale), 1u);
    EXPECT_TRUE(st.empty());
    EXPECT_TRUE(st.check_invariants());
}

TEST(KeyIndex, PoolIsReusedInSteadyState) {
    // Overwrite the same 64 slots many times, with splits: after a few rounds the depot
    // never grows (no malloc per insert), the subtree keeps few idle nodes, and every node its
    // pool handed out is in the tree.
    auto owned = std::make_unique<Subtree>();
    Subtree& st = *owned;
    std::uint32_t seg_off = 0;
    auto round = [&] {
        for (std::uint64_t i = 0; i < 64; ++i) {
            insert(st, key(i * 4096, 4096, seg_off));
            insert(st, key(i * 4096 + 1024, 512, seg_off + 4096));  // splits it in three
            seg_off = (seg_off + 8192) % (8u << 20);
        }
    };
    for (int r = 0; r < 3; ++r) round();  // the pool's idle nodes settle too
    const std::size_t capacity = Subtree::depot_capacity();
    for (int r = 0; r < 50; ++r) round();
    EXPECT_EQ(Subtree::depot_capacity(), capacity);
    EXPECT_EQ(st.size(), 192u);
    EXPECT_EQ(st.pool_idle(), 0u);  // chunks go straight back to the depot
    // Nodes given back by one subtree (destroyed: its pool returns its idle nodes too) serve
    // another.
    owned.reset();
    Subtree other;
    for (std::uint64_t i = 0; i < 192; ++i) insert(other, key(i * 4096, 4096, 0));
    EXPECT_EQ(Subtree::depot_capacity(), capacity);
}

// Model-based: the index against a map of sectors (sector -> segment, its sector, generation),
// over random inserts, retirements (GC's erase_pieces_of) and segment reclaims (staleness).
struct ModelOp {
    int kind = 0;  // 0..5 insert, 6 retire an earlier key, 7 reclaim a segment
    std::uint32_t at = 0, len = 1, seg = 0, pick = 0;
    bool at_end = false;
};
struct Where {
    std::uint32_t seg, seg_sector;
    std::uint64_t gen;
    bool operator==(const Where&) const = default;
};

// The index beside a map of sectors; ops as in ModelOp.
struct ModelRig {
    static constexpr std::uint64_t base = 5 * format::kSubtreeBytes;
    static constexpr std::uint32_t kSectors = format::kSubtreeBytes / 512;
    Subtree st;
    std::map<std::uint32_t, Where> model;  // sector in the subtree -> where its bytes are
    std::uint64_t seg_gen[4] = {1, 1, 1, 1};
    std::uint32_t next_sector[4] = {0, 0, 0, 0};
    std::vector<CacheKey> written;
    bool is_stale(const CacheKey& k) const { return !same_gen(k.gen, seg_gen[k.seg]); }

    void apply(const ModelOp& op) {
        const auto stale = [this](const CacheKey& k) { return is_stale(k); };
        if (op.kind <= 5) {
            const std::uint32_t at = op.at_end ? kSectors - op.len : op.at;
            CacheKey k{base + at * 512ull,        op.len * 512,    0, op.seg,
                       next_sector[op.seg] * 512, seg_gen[op.seg], 0, false};
            next_sector[op.seg] = (next_sector[op.seg] + op.len) % 32768;
            st.insert(k, stale, [](const CacheKey&, CacheKey&) {});
            for (std::uint32_t i = 0; i < op.len; ++i)
                model[at + i] = Where{k.seg, k.seg_off / 512 + i, k.gen};
            written.push_back(k);
        } else if (op.kind == 6 && !written.empty()) {
            const CacheKey& k = written[op.pick % written.size()];
            st.erase_pieces_of(k, stale);
            const std::uint32_t at = static_cast<std::uint32_t>((k.off - base) / 512);
            for (std::uint32_t i = 0; i < k.len / 512; ++i) {
                auto it = model.find(at + i);
                if (it != model.end() && it->second == Where{k.seg, k.seg_off / 512 + i, k.gen})
                    model.erase(it);
            }
        } else if (op.kind == 7) {  // reclaim: every key in the segment goes stale
            ++seg_gen[op.seg];
            next_sector[op.seg] = 0;
            std::erase_if(model, [&](const auto& e) { return e.second.seg == op.seg; });
            std::erase_if(written, [&](const CacheKey& k) { return k.seg == op.seg; });
        }
    }
    // The whole walk equals the model; a lookup from `from` finds the model's first sector at
    // or after it (a key covering `from` reports its own start).
    bool matches(std::uint32_t from) {
        const auto stale = [this](const CacheKey& k) { return is_stale(k); };
        std::map<std::uint32_t, Where> seen;
        std::uint64_t walked_to = 0;  // each key once, in order
        bool in_order = true;
        st.for_each_overlap(base, base + format::kSubtreeBytes, stale, [&](const CacheKey& k) {
            in_order = in_order && k.off >= walked_to;
            walked_to = k.end();
            for (std::uint32_t i = 0; i < k.len / 512; ++i)
                seen[static_cast<std::uint32_t>((k.off - base) / 512) + i] =
                    Where{k.seg, k.seg_off / 512 + i, k.gen};
        });
        if (!in_order || seen != model) return false;
        CacheKey first;
        const bool found =
            st.first_overlap(base + from * 512ull, base + format::kSubtreeBytes, stale, &first);
        const auto m = model.lower_bound(from);
        if (found != (m != model.end())) return false;
        return !found ||
               (first.off <= base + m->first * 512ull && first.end() > base + m->first * 512ull);
    }
};

RC_GTEST_PROP(KeyIndexModel, MatchesASectorMap, ()) {
    const auto ops = *rc::gen::container<std::vector<ModelOp>>(rc::gen::build<ModelOp>(
        rc::gen::set(&ModelOp::kind, rc::gen::inRange(0, 8)),
        rc::gen::set(&ModelOp::at, rc::gen::inRange<std::uint32_t>(0, 96)),
        rc::gen::set(&ModelOp::len, rc::gen::inRange<std::uint32_t>(1, 33)),
        rc::gen::set(&ModelOp::seg, rc::gen::inRange<std::uint32_t>(0, 4)),
        rc::gen::set(&ModelOp::pick, rc::gen::arbitrary<std::uint32_t>()),
        rc::gen::set(&ModelOp::at_end, rc::gen::weightedElement<bool>({{1, true}, {7, false}}))));
    ModelRig r;
    for (const ModelOp& op : ops) {
        r.apply(op);
        RC_ASSERT(r.st.check_invariants());
        RC_ASSERT(r.matches(op.pick % 96));
    }
    r.st.clear();
    RC_ASSERT(r.st.check_invariants());
}

// Thousands of keys over the whole subtree: chunks split (in halves and at the end), merge
// after erases and reclaims, and every lookup still agrees with the model. Seeded; on a
// failure the seed and op number are printed (re-run: this test alone).
TEST(KeyIndexModel, ManyKeysSplitAndMergeChunks) {
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        std::mt19937_64 rng(seed);
        ModelRig r;
        std::size_t most_chunks = 0, fewest_after_peak = SIZE_MAX;
        for (int n = 0; n < 20000; ++n) {
            ModelOp op;
            const int phase = (n / 5000) % 2;  // fill, then mostly retire and reclaim
            op.kind = static_cast<int>(rng() % (phase == 0 ? 7 : 9));
            if (op.kind == 8) op.kind = 6;
            op.len = 1 + static_cast<std::uint32_t>(rng() % 16);
            op.at = static_cast<std::uint32_t>(rng() % (ModelRig::kSectors - op.len));
            op.seg = static_cast<std::uint32_t>(rng() % 4);
            op.pick = static_cast<std::uint32_t>(rng());
            op.at_end = rng() % 64 == 0;
            if (op.kind == 7 && rng() % 8 != 0) op.kind = 6;  // reclaims are rarer
            r.apply(op);
            ASSERT_TRUE(r.st.check_invariants()) << "seed " << seed << " op " << n;
            if (n % 97 == 0) {
                ASSERT_TRUE(r.matches(op.pick % ModelRig::kSectors))
                    << "seed " << seed << " op " << n;
            }
            most_chunks = std::max(most_chunks, r.st.chunks());
            if (most_chunks > 0 && r.st.chunks() < most_chunks)
                fewest_after_peak = std::min(fewest_after_peak, r.st.chunks());
        }
        ASSERT_TRUE(r.matches(0)) << "seed " << seed;
        EXPECT_GT(most_chunks, 40u) << "seed " << seed << ": the run never split many chunks";
        EXPECT_LT(fewest_after_peak, most_chunks) << "seed " << seed << ": no chunk was dropped";
    }
}

// Sequential inserts fill chunks completely (a new chunk at the end, not a split in halves).
TEST(KeyIndex, SequentialInsertsFillChunks) {
    Subtree st;
    for (std::uint64_t i = 0; i < 34 * 10; ++i) insert(st, key(i * 4096, 4096, 0));
    EXPECT_EQ(st.chunks(), 10u);
    EXPECT_TRUE(st.check_invariants());
}

}  // namespace
}  // namespace pcache
