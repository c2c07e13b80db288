// Issue 17, sustained writes: near full, Runtime::write_blocking paces writes to writeback
// progress instead of letting them run into busy, where a writer waited for a whole segment of
// writeback and GC (the 8-25 ms stalls of the sustained benchmark). No timing assertion here:
// the Runtime test holds the backing device shut, so what a write waits for is decided by the
// test, not by the clock.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cache_fixture.hpp"
#include "gated_block.hpp"
#include "pcache/runtime.hpp"

namespace pcache {
namespace {

using testutil::MemCache;
using testutil::pattern;

// The engine: throttle_wanted() turns on before the first busy, with at least throttle_segs()
// segments of writes left, and off again once writeback and GC gave the space back.
TEST(Pacing, ThrottleTurnsOnBeforeBusyAndOffAfterGc) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    MemBlockDevice disk(64 << 20);
    auto c = testutil::format_or_fail(pmem, disk);
    ASSERT_FALSE(c->throttle_wanted());
    const auto d = pattern(4096, 7);
    std::uint64_t off = 0, after_mark = 0;
    Status s;
    for (; s.ok(); off += 4096) {
        const bool throttled = c->throttle_wanted();
        s = c->write(off % (64 << 20), d, {.lane = 0}).status;
        if (throttled && s.ok()) ++after_mark;
        if (!throttled) {
            ASSERT_TRUE(s.ok()) << "busy before the throttle mark: " << s.to_string();
        }
    }
    ASSERT_EQ(s.code(), Errc::busy) << s.to_string();
    EXPECT_TRUE(c->throttle_wanted());
    const std::uint64_t seg_keys = c->geometry().seg_data_bytes() / 4096;
    EXPECT_GE(after_mark, (c->throttle_segs() - 1) * seg_keys)
        << "the mark leaves about throttle_segs() segments before busy";
    ASSERT_TRUE(c->flush().ok());
    while (c->writeback_step().progressed) {
    }
    while (c->gc_step().progressed) {
    }
    EXPECT_FALSE(c->throttle_wanted()) << "segs_used " << c->segs_used();
    ASSERT_TRUE(c->check_invariants().ok());
}

// The progress hook reports each batch of backing writes as it completes, before the step
// commits dirty_tail: finer than a step, and adding up to what the step wrote.
TEST(Pacing, ProgressHookReportsBatchesBeforeTheStepCommits) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    MemBlockDevice disk(64 << 20);
    CacheOptions o = testutil::small_options();
    o.writeback_queue_depth = 4;
    auto c = testutil::format_or_fail(pmem, disk, o);
    const auto d = pattern(4096, 3);
    for (std::uint64_t i = 0; i < 256; ++i)  // scattered: one backing write per key
        ASSERT_TRUE(c->write((i * 37 % 4096) * 16384, d, {.lane = 0}).ok());
    ASSERT_TRUE(c->flush().ok());
    struct Seen {
        MemCache* c;
        LogPos tail;
        std::uint64_t calls = 0, bytes = 0, after_commit = 0;
    } seen{c.get(), c->dirty_tail()};
    c->set_progress_hook(
        [](void* ctx, std::uint64_t bytes) {
            auto* s = static_cast<Seen*>(ctx);
            ++s->calls;
            s->bytes += bytes;
            if (!(s->c->dirty_tail() == s->tail)) ++s->after_commit;
        },
        &seen);
    const auto before = c->counters().backing_written_bytes;
    ASSERT_TRUE(c->writeback_step().progressed);
    EXPECT_GE(seen.calls, 256u / 4) << "one call per batch of queue_depth writes";
    EXPECT_EQ(seen.bytes, c->counters().backing_written_bytes - before);
    EXPECT_EQ(seen.after_commit, 0u);
    EXPECT_FALSE(c->dirty_tail() == seen.tail);
    c->set_progress_hook(nullptr, nullptr);
    const std::uint64_t calls = seen.calls;
    while (c->writeback_step().progressed) {
    }
    EXPECT_EQ(seen.calls, calls) << "a removed hook is not called";
}

// A backing device whose writes wait until the test opens it.
using testutil::GatedBlock;
using GateCache = Cache<MemPmem, GatedBlock>;

// Near full with writeback at work, a write waits for writeback credit: it does not land while
// the backing device is shut (before issue 17's pacing it did at once, and the writes after it
// ran into busy together), and it lands once writeback moves.
TEST(Pacing, ANearlyFullWriteWaitsForWritebackProgress) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    GatedBlock disk(64 << 20, GatedBlock::Gate::writes, true);
    auto c = testutil::format_or_fail(pmem, disk);
    RuntimeOptions ro{std::chrono::hours(1), std::chrono::hours(1)};
    ro.pace_max = std::chrono::hours(1);  // only credit, an idle writeback or stop end a wait
    Runtime<GateCache> rt(*c, ro);
    ASSERT_TRUE(rt.start().ok());
    const auto d = pattern(4096, 5);
    std::uint64_t off = 0;
    for (; !c->throttle_wanted(); off += 4096) ASSERT_TRUE(c->write(off, d, {.lane = 0}).ok());
    ASSERT_TRUE(c->flush().ok());  // closed ksets: writeback has work
    rt.wake();
    ASSERT_TRUE(disk.wait_held());  // the writeback thread is inside a step, held at the gate
    std::atomic<bool> done{false};
    std::thread w([&] {
        EXPECT_TRUE(rt.write_blocking(off, pattern(4096, 6), {.lane = 0}).ok());
        done = true;
    });
    while (rt.stats().pace_waits == 0 && !done) std::this_thread::yield();
    EXPECT_FALSE(done.load()) << "a paced write landed with no writeback progress";
    EXPECT_EQ(rt.stats().paced_writes, 1u);
    disk.open();
    w.join();
    EXPECT_TRUE(done.load());
    EXPECT_EQ(rt.stats().busy_waits, 0u);
    std::vector<std::byte> out(4096);
    ASSERT_TRUE(c->read(off, out).ok());
    EXPECT_TRUE(out == pattern(4096, 6));
    ASSERT_TRUE(rt.flush_all().ok());
    rt.stop();
    EXPECT_TRUE(c->is_clean());
    ASSERT_TRUE(c->check_invariants().ok());
}

// While writeback fails (and backs off), a write near full does not wait for credit that cannot
// come: with pace_max an hour it still completes, as it did before pacing.
TEST(Pacing, NoWaitForCreditWhileWritebackFails) {
    MemPmem pmem(testutil::small_pmem_bytes(32));
    MemBlockDevice disk(64 << 20);
    disk.set_fail_io(true);  // before any thread reads it
    auto c = testutil::format_or_fail(pmem, disk);
    RuntimeOptions ro{std::chrono::hours(1), std::chrono::hours(1)};
    ro.pace_max = std::chrono::hours(1);
    Runtime<MemCache> rt(*c, ro);
    ASSERT_TRUE(rt.start().ok());
    const auto d = pattern(4096, 8);
    std::uint64_t off = 0;
    for (; !c->throttle_wanted(); off += 4096) ASSERT_TRUE(c->write(off, d, {.lane = 0}).ok());
    ASSERT_TRUE(c->flush().ok());
    rt.wake();
    while (rt.last_error().ok()) std::this_thread::yield();  // a step failed
    for (int i = 0; i < 4; ++i, off += 4096) {
        const WriteResult r = rt.write_blocking(off, d, {.lane = 0});
        ASSERT_TRUE(r.ok()) << r.status.to_string();
    }
    EXPECT_EQ(rt.stats().paced_writes, 4u);
    rt.stop();
}

}  // namespace
}  // namespace pcache
