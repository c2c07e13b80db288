// Litmus suite: tiny store/flush/fence programs, each with the exact set of crash images that
// every SimPmem mode allows, checked by exhaustive enumeration of the explorer's states.
// Watched words are 8-byte words; an image is written as their values, e.g. {1, 0}.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <set>
#include <vector>

#include "pcache/sim/pmem_explorer.hpp"

namespace {

using pcache::kPmemNoDrain;
using pcache::kPmemNoFlush;
using pcache::kPmemNonTemporal;
using pcache::sim::PmemExplorer;
using pcache::sim::PmemMode;
using pcache::sim::SimPmem;
using Image = std::vector<std::uint64_t>;
using Images = std::set<Image>;

constexpr unsigned kLazy = kPmemNoFlush | kPmemNoDrain;  // a plain cached store
constexpr unsigned kFlushOnly = kPmemNoDrain;            // store + clwb, no fence
constexpr unsigned kNt = kPmemNonTemporal | kPmemNoDrain;

void store(SimPmem& p, std::uint64_t off, std::uint64_t value, unsigned flags) {
    std::byte b[8];
    std::memcpy(b, &value, 8);
    ASSERT_TRUE(p.write(off, b, flags).ok());
}
void store16(SimPmem& p, std::uint64_t off, std::uint64_t lo, std::uint64_t hi, unsigned flags) {
    std::byte b[16];
    std::memcpy(b, &lo, 8);
    std::memcpy(b + 8, &hi, 8);
    ASSERT_TRUE(p.write(off, b, flags).ok());
}

struct Litmus {
    const char* name;
    std::vector<std::uint64_t> watched_offsets;  // 8-byte aligned
    std::function<void(SimPmem&)> program;
    Images x86, eadr, any, unsafe;
};

Images enumerate(const Litmus& t, PmemMode mode) {
    SimPmem p(4096, {.mode = mode});
    t.program(p);
    PmemExplorer ex(p, p.capture());
    EXPECT_TRUE(ex.exhaustive()) << t.name;
    Images seen;
    for (std::uint64_t i = 0; i < ex.state_count(); ++i) {
        ex.apply(i);
        Image img;
        for (std::uint64_t off : t.watched_offsets) {
            std::uint64_t v = 0;
            std::memcpy(&v, p.data() + off, 8);
            std::uint64_t durable = 0;
            EXPECT_TRUE(p.read_durable(off, {reinterpret_cast<std::byte*>(&durable), 8}).ok());
            EXPECT_EQ(v, durable) << "after apply the CPU view is the durable image";
            img.push_back(v);
        }
        seen.insert(img);
        ex.rollback();
    }
    return seen;
}

std::vector<Litmus> suite() {
    const Images all2 = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};
    const Images prefix2 = {{0, 0}, {1, 0}, {1, 1}};
    return {
        {"same_line_order",
         {0, 8},
         [](SimPmem& p) {
             store(p, 0, 1, kLazy);
             store(p, 8, 1, kLazy);
         },
         prefix2,
         prefix2,
         all2,
         prefix2},
        {"cross_line_without_fence",
         {0, 64},
         [](SimPmem& p) {
             store(p, 0, 1, kLazy);
             store(p, 64, 1, kLazy);
         },
         all2,
         prefix2,
         all2,
         all2},
        {"flush_without_fence",
         {0},
         [](SimPmem& p) { store(p, 0, 1, kFlushOnly); },
         {{0}, {1}},
         {{0}, {1}},
         {{0}, {1}},
         {{0}, {1}}},
        {"flush_and_fence",
         {0},
         [](SimPmem& p) { store(p, 0, 1, 0); },
         {{1}},
         {{1}},
         {{1}},
         {{0}, {1}}},
        {"store_after_flush_not_covered",
         {0, 8},
         [](SimPmem& p) {
             store(p, 0, 1, kFlushOnly);
             store(p, 8, 1, kLazy);
             EXPECT_TRUE(p.drain().ok());
         },
         {{1, 0}, {1, 1}},
         {{1, 1}},
         {{1, 0}, {1, 1}},
         prefix2},
        {"same_word_twice",
         {0},
         [](SimPmem& p) {
             store(p, 0, 1, kLazy);
             store(p, 0, 2, kLazy);
         },
         {{0}, {1}, {2}},
         {{0}, {1}, {2}},
         {{0}, {1}, {2}},
         {{0}, {1}, {2}}},
        {"nt_store_without_fence",
         {0, 8},
         [](SimPmem& p) { store16(p, 0, 1, 1, kNt); },
         all2,
         all2,
         all2,
         all2},
        {"nt_store_with_fence",
         {0, 8},
         [](SimPmem& p) { store16(p, 0, 1, 1, kPmemNonTemporal); },
         {{1, 1}},
         {{1, 1}},
         {{1, 1}},
         all2},
        {"torn_16_byte_store_in_line",
         {8, 16},
         [](SimPmem& p) { store16(p, 8, 1, 1, kLazy); },
         prefix2,
         prefix2,
         all2,
         prefix2},
        {"torn_16_byte_store_across_lines",
         {56, 64},
         [](SimPmem& p) { store16(p, 56, 1, 1, kLazy); },
         all2,
         prefix2,
         all2,
         all2},
        {"eadr_prefix_of_three_lines",
         {0, 64, 128},
         [](SimPmem& p) {
             store(p, 0, 1, kLazy);
             store(p, 64, 1, kLazy);
             store(p, 128, 1, kLazy);
         },
         {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}},
         {{0, 0, 0}, {1, 0, 0}, {1, 1, 0}, {1, 1, 1}},
         {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}},
         {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}}},
        {"fence_orders_lines",
         {0, 64},
         [](SimPmem& p) {
             store(p, 0, 1, 0);
             store(p, 64, 1, kLazy);
         },
         {{1, 0}, {1, 1}},
         {{1, 0}, {1, 1}},
         {{1, 0}, {1, 1}},
         all2},
        {"flush_of_other_line_does_not_cover",
         {0, 64},
         [](SimPmem& p) {
             store(p, 0, 1, kLazy);
             store(p, 64, 1, kFlushOnly);
             EXPECT_TRUE(p.drain().ok());
         },
         {{0, 1}, {1, 1}},
         {{1, 1}},
         {{0, 1}, {1, 1}},
         all2},
        {"payload_then_flag_one_line",
         {0, 8},  // control: a valid flag never without payload
         [](SimPmem& p) {
             store(p, 0, 7, kLazy);
             store(p, 8, 1, kLazy);
         },
         {{0, 0}, {7, 0}, {7, 1}},
         {{0, 0}, {7, 0}, {7, 1}},
         {{0, 0}, {7, 0}, {0, 1}, {7, 1}},
         {{0, 0}, {7, 0}, {7, 1}}},
        {"aligned_commit_word_never_tears",
         {0},
         [](SimPmem& p) { store(p, 0, 0x1122334455667788ull, kLazy); },
         {{0}, {0x1122334455667788ull}},
         {{0}, {0x1122334455667788ull}},
         {{0}, {0x1122334455667788ull}},
         {{0}, {0x1122334455667788ull}}},
        {"unaligned_8_byte_store_tears",
         {0, 8},  // bytes 4..11: low half of word 1 after word 0
         [](SimPmem& p) { store(p, 4, 0x2222222211111111ull, kLazy); },
         {{0, 0}, {0x1111111100000000ull, 0}, {0x1111111100000000ull, 0x22222222ull}},
         {{0, 0}, {0x1111111100000000ull, 0}, {0x1111111100000000ull, 0x22222222ull}},
         {{0, 0},
          {0x1111111100000000ull, 0},
          {0, 0x22222222ull},
          {0x1111111100000000ull, 0x22222222ull}},
         {{0, 0}, {0x1111111100000000ull, 0}, {0x1111111100000000ull, 0x22222222ull}}},
        {"nt_then_cached_same_word",
         {0},
         [](SimPmem& p) {
             store(p, 0, 1, kNt);
             store(p, 0, 2, kLazy);
         },
         {{0}, {1}, {2}},
         {{0}, {1}, {2}},
         {{0}, {1}, {2}},
         {{0}, {1}, {2}}},
        {"drain_commits_flushed_lines_only",
         {0, 64, 128},
         [](SimPmem& p) {
             store(p, 0, 1, kFlushOnly);
             store(p, 64, 1, kLazy);
             EXPECT_TRUE(p.drain().ok());
             store(p, 128, 1, kLazy);
         },
         {{1, 0, 0}, {1, 1, 0}, {1, 0, 1}, {1, 1, 1}},
         {{1, 1, 0}, {1, 1, 1}},
         {{1, 0, 0}, {1, 1, 0}, {1, 0, 1}, {1, 1, 1}},
         {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}}},
        {"no_flush_at_all_eadr_keeps_order",
         {0, 8, 64},
         [](SimPmem& p) {
             store(p, 64, 1, kLazy);
             store(p, 0, 1, kLazy);
             store(p, 8, 1, kLazy);
         },
         {{0, 0, 0}, {1, 0, 0}, {1, 1, 0}, {0, 0, 1}, {1, 0, 1}, {1, 1, 1}},
         {{0, 0, 0}, {0, 0, 1}, {1, 0, 1}, {1, 1, 1}},
         {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {1, 0, 1}, {0, 1, 1}, {1, 1, 1}},
         {{0, 0, 0}, {1, 0, 0}, {1, 1, 0}, {0, 0, 1}, {1, 0, 1}, {1, 1, 1}}},
    };
}

class LitmusTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(LitmusTest, ExactImageSetPerMode) {
    const Litmus t = suite()[GetParam()];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(enumerate(t, PmemMode::x86), t.x86) << "x86";
    EXPECT_EQ(enumerate(t, PmemMode::eadr), t.eadr) << "eadr";
    EXPECT_EQ(enumerate(t, PmemMode::any), t.any) << "any";
    EXPECT_EQ(enumerate(t, PmemMode::unsafe_shutdown), t.unsafe) << "unsafe_shutdown";
}

INSTANTIATE_TEST_SUITE_P(Sim, LitmusTest, ::testing::Range<std::size_t>(0, suite().size()),
                         [](const auto& param_info) {
                             return std::string(suite()[param_info.param].name);
                         });

TEST(Litmus, SuiteHasAtLeastFifteenPrograms) { EXPECT_GE(suite().size(), 15u); }

}  // namespace
