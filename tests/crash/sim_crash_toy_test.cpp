// The crash harness on a toy store, before the engine uses it: a correct protocol passes at
// every persistence point and image, and each planted bug is caught with a reproduce line.
//
// ToyLog: record `slot` lives at pmem offset slot*128: a 64-byte payload line, then a commit
// line whose first word is slot+1. Protocol: payload non-temporally, fence, commit word (flush
// + fence), then acknowledge. Recovery trusts the commit word (no checksum), so a missing fence
// shows up as a committed record with a wrong payload. Block side: write a sector, then FUA or
// flush, then acknowledge; the oracle wants each acknowledged value or a later one.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "pcache/sim/crash_run.hpp"

namespace {

using namespace pcache;
using namespace pcache::sim;

enum class Bug { none, missing_fence, missing_block_flush };

struct ToyLog {
    static inline Bug bug = Bug::none;
    static constexpr std::uint64_t kRecordBytes = 128;
    static constexpr std::uint64_t kSectors = 16;

    explicit ToyLog(const RunId& id) : seed_(id.seed) {}

    static std::uint64_t payload_word(std::uint64_t seed, std::uint64_t slot, std::uint64_t k) {
        std::uint64_t x = seed * 1000003 + slot * 64 + k;
        return splitmix64(x);
    }

    void run(Machine& m, Scheduler& s, std::uint64_t ops) {
        s.add("pmem_append", 3, [&](Rng&) { append(m); });
        s.add("block_write", 1, [&](Rng& rng) { block_write(m, rng); });
        s.run(ops);
    }

    void append(Machine& m) {
        const std::uint64_t slot = next_slot_++;
        PCACHE_SIM_ASSERT((slot + 1) * kRecordBytes <= m.pmem.size());
        std::uint64_t payload[8];
        for (std::uint64_t k = 0; k < 8; ++k) payload[k] = payload_word(seed_, slot, k);
        const std::uint64_t commit = slot + 1;
        const auto off = slot * kRecordBytes;
        ASSERT_TRUE(m.pmem.write(off, std::as_bytes(std::span(payload)), kPmemFlushCache).ok());
        if (bug != Bug::missing_fence) {
            EXPECT_TRUE(m.pmem.drain().ok());
        }
        ASSERT_TRUE(m.pmem.write(off + 64, std::as_bytes(std::span(&commit, 1)), 0).ok());
        acked_slots_ = slot + 1;
    }

    void block_write(Machine& m, Rng& rng) {
        const std::uint64_t sector = rng.below(kSectors);
        const std::uint64_t value = rng.next() | 1;
        std::vector<std::uint64_t> data(512 / 8, value);
        const bool fua = rng.below(2) == 0;
        history_[sector].push_back(value);
        ASSERT_TRUE(m.block.write(sector * 512, std::as_bytes(std::span(data)), fua).ok());
        if (!fua && bug != Bug::missing_block_flush) {
            ASSERT_TRUE(m.block.flush().ok());
        }
        acked_index_[sector] = history_[sector].size() - 1;
    }

    // Recovery on the crash image plus the oracle.
    Status check(Machine& m) {
        for (std::uint64_t slot = 0; slot < next_slot_; ++slot) {
            std::uint64_t rec[16];
            PCACHE_TRY(m.pmem.read(slot * kRecordBytes, std::as_writable_bytes(std::span(rec))));
            if (rec[8] == 0) {
                if (slot < acked_slots_)
                    return {Errc::corrupt, "acknowledged record " + std::to_string(slot) + " lost"};
                continue;
            }
            if (rec[8] != slot + 1)
                return {Errc::corrupt, "slot " + std::to_string(slot) + " commit word is garbage"};
            for (std::uint64_t k = 0; k < 8; ++k)
                if (rec[k] != payload_word(seed_, slot, k))
                    return {Errc::corrupt, "committed record " + std::to_string(slot) +
                                               " returns a payload never written (word " +
                                               std::to_string(k) + ")"};
        }
        for (const auto& [sector, acked] : acked_index_) {
            std::uint64_t got[64];
            PCACHE_TRY(m.block.read(sector * 512, std::as_writable_bytes(std::span(got))));
            const auto& h = history_[sector];
            bool ok = false;
            for (std::size_t i = acked; i < h.size(); ++i) ok = ok || got[0] == h[i];
            if (!ok) return {Errc::corrupt, "sector " + std::to_string(sector) + " lost its ack"};
        }
        return {};
    }

private:
    std::uint64_t seed_;
    std::uint64_t next_slot_ = 0;
    std::uint64_t acked_slots_ = 0;
    std::map<std::uint64_t, std::vector<std::uint64_t>> history_;  // sector -> values written
    std::map<std::uint64_t, std::size_t> acked_index_;             // sector -> newest acked
};

CrashRunConfig config(PmemMode mode, Bug bug, std::uint64_t seed = 7) {
    ToyLog::bug = bug;
    CrashRunConfig cfg;
    cfg.id = run_id_from_env({.seed = seed, .mode = mode, .ops = 40});
    cfg.machine = {.pmem_bytes = 1 << 16, .block_bytes = 1 << 16};
    cfg.crash_points_max = 200;
    cfg.binary = "tests/crash/sim_crash_toy_test";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    cfg.gtest_filter = std::string(info->test_suite_name()) + "." + info->name();
    return cfg;
}

void expect_clean(const CrashRunResult& r) {
    EXPECT_GT(r.persist_points, 10u);
    EXPECT_EQ(r.crash_points_run, r.persist_points) << "every point explored";
    EXPECT_GT(r.states_checked, r.crash_points_run);
    for (const auto& f : r.failures) ADD_FAILURE() << f;
}

TEST(SimCrashToy, CorrectProtocolSurvivesEveryImageX86) {
    expect_clean(explore_crashes<ToyLog>(config(PmemMode::x86, Bug::none)));
}
TEST(SimCrashToy, CorrectProtocolSurvivesEveryImageEadr) {
    expect_clean(explore_crashes<ToyLog>(config(PmemMode::eadr, Bug::none)));
}

TEST(SimCrashToy, MissingFenceIsCaughtWithReproduceLine) {
    const auto r = explore_crashes<ToyLog>(config(PmemMode::x86, Bug::missing_fence));
    ASSERT_FALSE(r.failures.empty()) << "the harness must catch a missing fence";
    EXPECT_NE(r.failures[0].find("REPRODUCE seed=7 mode=x86 ops=40 crash_point="),
              std::string::npos)
        << r.failures[0];
    std::printf("caught as expected: %s\n", r.failures[0].c_str());
}

TEST(SimCrashToy, MissingBlockFlushIsCaught) {
    const auto r = explore_crashes<ToyLog>(config(PmemMode::x86, Bug::missing_block_flush));
    ASSERT_FALSE(r.failures.empty());
    EXPECT_NE(r.failures[0].find("lost its ack"), std::string::npos) << r.failures[0];
}

TEST(SimCrashToy, UnsafeShutdownIsNotSurvivable) {
    const auto r = explore_crashes<ToyLog>(config(PmemMode::unsafe_shutdown, Bug::none));
    EXPECT_FALSE(r.failures.empty()) << "fenced records may be lost: recovery has to detect it";
}

TEST(SimCrashToy, SameSeedSameTraceAndVerdicts) {
    const auto a = explore_crashes<ToyLog>(config(PmemMode::x86, Bug::missing_fence, 11));
    const auto b = explore_crashes<ToyLog>(config(PmemMode::x86, Bug::missing_fence, 11));
    const auto c = explore_crashes<ToyLog>(config(PmemMode::x86, Bug::missing_fence, 12));
    EXPECT_EQ(a.trace_hash, b.trace_hash);
    EXPECT_EQ(a.states_checked, b.states_checked);
    EXPECT_EQ(a.failures, b.failures);
    EXPECT_NE(a.trace_hash, c.trace_hash);
}

}  // namespace
