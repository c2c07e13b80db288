// The key log re-enters a segment whose previous use was the key log (M3's state).
//
// A segment switch writes the new kset segment's 24-byte end marker (zeros) at its offset 0,
// then the LAST kset that chains the log to it (dm-pcache-format.md 5.5). If the LAST kset
// could be durable first (mutant M3; the kernel's single fence, quirk 11), a crash in between
// leaves the new segment's old first bytes in place. They only matter when they are a
// CRC-valid kset: the segment was the key log before. The seeded workloads never produce that
// (the data head takes a freed log segment long before the log needs one: a log segment holds
// the keys of about nine data segments), so this test builds the state on purpose:
//
//   1. one-sector FUA writes (one kset each) fill kset segment 0 and chain the log to K1;
//   2. more of them fill K1 up to the last largest-kset of room (data takes every other segment:
//      the cache has exactly as many segments as that needs, so the allocation hand stands on
//      the last segment);
//   3. writeback and GC retire segment 0's ksets and leave it through its LAST kset: segment 0
//      and the data segments of its keys return to the pool (generations bumped);
//   4. one-sector FUA writes close K1: the switch takes the first free segment after the hand,
//      segment 0, whose offset 0 still holds its first kset of step 1.
//
// The campaign then crashes at every persistence point around each fence that writes a LAST
// kset (focus) and checks every image with the oracle. Correct code passes; with M3 an image
// has the LAST kset durable and segment 0's old kset behind it: replay follows the chain into
// the old kset, whose keys point into reclaimed data segments although they lie after
// dirty_tail, and recovery refuses the image (an oracle verdict).
//
// The counts of each step come from a dry run of the same engine (a scratch machine), so the
// workload follows the engine's geometry; the dry run also proves the state is reached (the test
// fails if segment 0 no longer holds a kset when the log re-enters it).
#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "pcache/sim/campaign.hpp"

namespace pcache::sim {
namespace {

constexpr std::uint64_t kSegmentBytes = 128 << 10;
constexpr std::uint64_t kBackingBytes = 1 << 20;
constexpr std::uint64_t kSectors = kBackingBytes / kOracleSectorBytes;

CampaignConfig reuse_config(std::uint32_t segs) {
    CampaignConfig c;
    c.seed = 1;
    c.segment_bytes = kSegmentBytes;
    c.segs = segs;
    c.backing_bytes = kBackingBytes;
    c.focus = true;
    c.explore_one_in = 1u << 30;  // only the focus: the points around every LAST kset
    c.states_per_point_max = 16;
    c.tool = "build/dev/tools/pcache";
    c.replay_cmd =
        "build/dev/tests/crash/crash_campaign_test "
        "--gtest_filter=CrashLogReuse.LastKsetIntoFormerLogSegment";
    return c;
}

// The workload of steps 1-4, built by running it on a scratch machine.
struct ReusePlan {
    std::vector<WorkloadOp> ops;
    std::uint32_t segs_used_at_step2 = 0;  // every segment the cache needs (steps 1-2)
    std::uint64_t head_fill_sectors = 0;   // data head fill at the end of step 2
    bool old_kset_at_seg0 = false;         // before step 4: segment 0 starts with a kset
    std::uint32_t new_log_seg = ~0u;       // where step 4 took the log
    std::string error;
};

class PlanBuilder {
public:
    PlanBuilder(std::uint32_t segs, std::uint32_t pad_sectors)
        : cfg_(reuse_config(segs)),
          m_(MachineConfig{cfg_.pmem_bytes(), cfg_.backing_bytes, false}, cfg_.mode),
          pad_(pad_sectors) {}

    ReusePlan build() {
        auto opened = SimCache::format(borrow(m_.pmem), borrow(m_.block), cfg_.cache_options());
        if (!opened.ok()) return fail("open: " + opened.status().to_string());
        c_ = std::move(opened.value());
        const std::uint64_t data_bytes = c_->geometry().seg_data_bytes();
        // 1. fill kset segment 0 (one kset per write)
        while (c_->key_head().seg == 0 && plan_.error.empty()) write(1);
        const std::uint32_t k1 = c_->key_head().seg;
        // 2. fill K1 to its last largest kset of room (the padding sets the data head's fill)
        if (pad_ > 0) write(pad_);
        while (data_bytes - c_->key_head().off >
                   format::kKsetBytesMax + 4 * format::kset_bytes(1) &&
               plan_.error.empty())
            write(1);
        plan_.segs_used_at_step2 = c_->segs_used();
        plan_.head_fill_sectors = sectors_ % (data_bytes / kOracleSectorBytes);
        // 3. write back everything, then GC until key_tail leaves segment 0
        step(WorkloadOp{WorkloadOp::Kind::gc_percent, 0, 0, false, 0});
        while (!(c_->dirty_tail() == c_->key_head()) && plan_.error.empty())
            step(WorkloadOp{WorkloadOp::Kind::writeback});
        while (c_->key_tail().seg == 0 && plan_.error.empty())
            step(WorkloadOp{WorkloadOp::Kind::gc});
        // 4. close K1: the log takes the next free segment
        std::array<std::byte, format::kKsetHeaderBytes> h{};
        if (!m_.pmem.read(cfg_.cache_options().geometry.data_offset(0), h).ok())
            return fail("reading segment 0");
        plan_.old_kset_at_seg0 = format::load<format::KsetHeader>(h).magic == format::kKsetMagic;
        while (c_->key_head().seg == k1 && plan_.error.empty()) write(1);
        plan_.new_log_seg = c_->key_head().seg;
        write(1);  // a kset in the new segment
        return plan_;
    }

private:
    ReusePlan fail(std::string why) {
        plan_.error = std::move(why);
        return plan_;
    }
    void write(std::uint32_t sectors) {
        WorkloadOp op;
        op.kind = WorkloadOp::Kind::write;
        op.off_bytes = (next_sector_ % (kSectors - sectors)) * kOracleSectorBytes;
        op.len_bytes = sectors * static_cast<std::uint32_t>(kOracleSectorBytes);
        op.fua = true;
        next_sector_ += 7;  // overlapping rewrites: newer keys cover older ones
        sectors_ += sectors;
        buf_.assign(op.len_bytes, std::byte{0x5a});
        if (Status s = c_->write(op.off_bytes, buf_, {.fua = true}).status; !s.ok())
            plan_.error =
                "dry run, write " + std::to_string(plan_.ops.size()) + ": " + s.to_string();
        plan_.ops.push_back(op);
    }
    void step(const WorkloadOp& op) {
        Status s;
        if (op.kind == WorkloadOp::Kind::gc_percent) s = c_->set_gc_percent(op.value);
        if (op.kind == WorkloadOp::Kind::writeback) s = c_->writeback_step().status;
        if (op.kind == WorkloadOp::Kind::gc) s = c_->gc_step().status;
        if (!s.ok())
            plan_.error =
                "dry run, step " + std::to_string(plan_.ops.size()) + ": " + s.to_string();
        plan_.ops.push_back(op);
    }

    CampaignConfig cfg_;
    Machine m_;
    std::unique_ptr<SimCache> c_;
    std::uint32_t pad_;
    ReusePlan plan_;
    std::uint64_t next_sector_ = 0, sectors_ = 0;
    std::vector<std::byte> buf_;
};

TEST(CrashLogReuse, LastKsetIntoFormerLogSegment) {
    // Find the padding that leaves the data head room for step 4 and the segment count that
    // puts the allocation hand on the last segment (first on a roomy cache, then exactly).
    constexpr std::uint32_t kRoomySegs = 64;
    ReusePlan plan;
    std::uint32_t segs = 0;
    for (std::uint32_t pad = 0; pad <= 232 && segs == 0; pad += 8) {
        const ReusePlan roomy = PlanBuilder(kRoomySegs, pad).build();
        ASSERT_EQ(roomy.error, "");
        if (roomy.head_fill_sectors == 0 || roomy.head_fill_sectors > 96) continue;
        plan = PlanBuilder(roomy.segs_used_at_step2, pad).build();
        ASSERT_EQ(plan.error, "") << "segs " << roomy.segs_used_at_step2 << " pad " << pad;
        segs = roomy.segs_used_at_step2;
    }
    ASSERT_NE(segs, 0u) << "no padding leaves the data head room for step 4";
    // The state M3 needs is reached: the log re-enters segment 0, which starts with a kset.
    ASSERT_TRUE(plan.old_kset_at_seg0);
    ASSERT_EQ(plan.new_log_seg, 0u) << "segs " << segs;

    CampaignConfig c = reuse_config(segs);
    c.ops = plan.ops.size();
    const CampaignResult r = Campaign(c).run(plan.ops);
    std::string failures;
    for (const auto& f : r.failures) failures += "\n  " + f;
    EXPECT_TRUE(r.failures.empty()) << "segs " << segs << ", ops " << r.ops_run << failures;
    EXPECT_EQ(r.ops_run, plan.ops.size());
    EXPECT_GE(r.reach.seg_switches, 2u);
    EXPECT_GE(r.reach.log_wraps, 1u);
    EXPECT_GT(r.crash_points_explored, 0u);
    std::printf("log reuse: %u segments, %zu ops, %lu points, %lu explored, %lu states\n", segs,
                plan.ops.size(), static_cast<unsigned long>(r.persist_points),
                static_cast<unsigned long>(r.crash_points_explored),
                static_cast<unsigned long>(r.states_checked));
}

}  // namespace
}  // namespace pcache::sim
