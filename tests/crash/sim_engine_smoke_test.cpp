// The engine on the simulator: Cache<SimPmem, SimBlockDevice> runs with the read-only view
// (every persistent store goes through the policy), and reopens on crash images taken at each
// persistence point of a tiny workload. A smoke test of the wiring; the full oracle-driven
// crash suite belongs with the engine.
#include <gtest/gtest.h>

#include <vector>

#include "cache_fixture.hpp"
#include "pcache/sim/block_explorer.hpp"
#include "pcache/sim/recover.hpp"

namespace {

using namespace pcache;
using namespace pcache::sim;
using SimCache = Cache<SimPmem, SimBlockDevice>;

constexpr std::uint64_t kBlockBytes = 4 << 20;

// format, write 4 KiB, FLUSH (acknowledged), write 4 KiB more. `flushed` is set once FLUSH has
// returned ok (a crash after that point must keep the first write); `formatted_at` is the
// number of persistence points when format returned.
bool workload(SimPmem& pmem, SimBlockDevice& disk, const SimContext& ctx, bool& flushed,
              std::uint64_t& formatted_at) {
    flushed = false;
    auto cache = testutil::format_or_fail(pmem, disk);
    if (!cache) return false;
    formatted_at = ctx.persist_points;
    EXPECT_TRUE(cache->write(0, testutil::pattern(4096, 1)).ok());
    const Status f = cache->flush();
    EXPECT_TRUE(f.ok()) << f.to_string();
    flushed = f.ok();
    EXPECT_TRUE(cache->write(8192, testutil::pattern(4096, 2)).ok());
    return true;
}

TEST(SimEngine, RunsWithReadOnlyView) {
    SimContext ctx;
    SimPmem pmem(testutil::small_pmem_bytes(8), {.protect_view = true, .context = &ctx});
    SimBlockDevice disk(kBlockBytes, {.context = &ctx});
    bool flushed = false;
    std::uint64_t formatted_at = 0;
    EXPECT_TRUE(workload(pmem, disk, ctx, flushed, formatted_at));
    EXPECT_TRUE(flushed);
    EXPECT_GT(ctx.persist_points, 0u);
}

TEST(SimEngine, ReopensOnCrashImagesAtEveryPoint) {
    std::uint64_t points = 0, formatted_at = 0;
    {
        SimContext ctx;
        SimPmem pmem(testutil::small_pmem_bytes(8), {.context = &ctx});
        SimBlockDevice disk(kBlockBytes, {.context = &ctx});
        bool flushed = false;
        ASSERT_TRUE(workload(pmem, disk, ctx, flushed, formatted_at));
        points = ctx.persist_points;
    }
    ASSERT_GT(points, 0u);
    for (std::uint64_t point = 1; point <= points && point <= 64; ++point) {
        SimContext ctx;
        SimPmem pmem(testutil::small_pmem_bytes(8), {.context = &ctx});
        SimBlockDevice disk(kBlockBytes, {.context = &ctx});
        ctx.crash_at(point);
        bool flushed = false, crashed = false;
        try {
            std::uint64_t unused = 0;
            workload(pmem, disk, ctx, flushed, unused);
        } catch (const SimCrash&) {
            crashed = true;
        }
        ctx.crash_at(0);
        ASSERT_TRUE(crashed) << "crash point " << point << " of " << points << " never reached";
        SystemExplorer ex(pmem, disk, {.seed = point, .samples = 16},
                          {.seed = point, .samples = 4});
        const std::uint64_t states = std::min<std::uint64_t>(ex.state_count(), 64);
        for (std::uint64_t s = 0; s < states; ++s) {
            ex.apply(s);
            // Every crash image must be recoverable; none may be refused. A crash that cut the
            // format itself may leave no complete cache: then (only then) format runs again.
            auto cache =
                recover<SimCache>(pmem, disk, testutil::small_options(), point > formatted_at);
            EXPECT_TRUE(cache.ok()) << "crash point " << point << " state " << s
                                    << ": recovery refused: " << cache.status().to_string();
            if (cache.ok()) {
                std::vector<std::byte> out(4096);
                const Status st = (*cache)->read(0, out);
                EXPECT_TRUE(st.ok()) << st.to_string();
                const bool zero = out == std::vector<std::byte>(4096);
                const bool first = out == testutil::pattern(4096, 1);
                EXPECT_TRUE(first || (zero && !flushed))
                    << "crash point " << point << " state " << s
                    << (zero ? ": lost a flushed write at sector 0" : ": garbage at sector 0");
            }
            cache = Status{Errc::io, "closed"};  // drop the cache before rolling back
            ex.rollback();
        }
    }
}

}  // namespace
