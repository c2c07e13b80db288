// Overlap resolution of the subtree index, one test per case (dm-pcache-format.md 6.4).
#include <gtest/gtest.h>

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
    insert(st, key(1024, 1024, 100000));
    EXPECT_EQ(spans(st),
              (std::vector<Span>{{0, 1024, 0}, {1024, 1024, 100000}, {2048, 2048, 2048}}));
}

TEST(KeyIndex, HeadOverlapCutsOldBack) {
    // E [-----)
    // N    [-----)    -> E cut back to N.start
    Subtree st;
    insert(st, key(0, 2048, 0));
    insert(st, key(1024, 2048, 50000));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 1024, 0}, {1024, 2048, 50000}}));
}

TEST(KeyIndex, TailOverlapCutsOldFront) {
    // E    [-----)
    // N [-----)       -> E starts at N.end, cache offset advanced by the cut
    Subtree st;
    insert(st, key(1024, 2048, 0));
    insert(st, key(0, 2048, 50000));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 2048, 50000}, {2048, 1024, 1024}}));
}

TEST(KeyIndex, ManyKeysSpanned) {
    // E [-)[-)[-)[-)[-)
    // N   [---------)  -> head of the first and tail of the last survive
    Subtree st;
    for (int i = 0; i < 5; ++i) insert(st, key(i * 1024, 1024, i * 1024));
    insert(st, key(512, 4096, 90000));
    EXPECT_EQ(spans(st), (std::vector<Span>{{0, 512, 0}, {512, 4096, 90000}, {4608, 512, 4608}}));
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
        key(1024, 512, 9000), [](const CacheKey&) { return false; },
        [&](const CacheKey& whole, CacheKey& piece) {
            EXPECT_EQ(whole.off, 0u);
            EXPECT_TRUE(piece.off == 0 || piece.off == 1536);
            ++pieces;
        });
    EXPECT_EQ(pieces, 2);
}

}  // namespace
}  // namespace pcache
