// Example: run the crash simulator on your own workload. A Campaign runs the workload once on
// simulated pmem and a simulated disk; at every persistence point (each pmem fence and disk
// flush) it enumerates or samples the crash images, recovers each one and checks it against the
// crash model's oracle: every acknowledged-durable write is there, nothing else is garbage.
// Deterministic: the seed fixes every choice. Exit code 0 only if the campaign explored crash
// points, checked images and found no violation.
#include <cstdio>
#include <vector>

#include "pcache/sim/campaign.hpp"

int main() {
    using pcache::sim::WorkloadOp;
    using K = WorkloadOp::Kind;
    pcache::sim::CampaignConfig cfg;
    cfg.seed = 42;                 // crash-image sampling; printed in every failure
    cfg.segment_bytes = 64 << 10;  // a tiny cache: 8 segments of 64 KiB
    cfg.segs = 8;
    cfg.backing_bytes = 1 << 20;
    cfg.data_crc = true;
    cfg.tool = "example_crash_sim";
    // Your workload: byte offsets and lengths (multiples of 512) on the 1 MiB backing device.
    const std::vector<WorkloadOp> ops = {
        {.kind = K::write, .off_bytes = 0, .len_bytes = 8192},
        {.kind = K::write, .off_bytes = 4096, .len_bytes = 4096, .fua = true},  // overlaps
        {.kind = K::flush},
        {.kind = K::write, .off_bytes = 65536, .len_bytes = 32768},
        {.kind = K::writeback},
        {.kind = K::gc},
        {.kind = K::write, .off_bytes = 512, .len_bytes = 1024},
        {.kind = K::read, .off_bytes = 0, .len_bytes = 16384},
        {.kind = K::reopen},  // clean close and reopen
        {.kind = K::write, .off_bytes = 131072, .len_bytes = 4096, .fua = true},
    };
    pcache::sim::Campaign campaign(cfg);
    const pcache::sim::CampaignResult r = campaign.run(ops);
    std::printf(
        "example_crash_sim: %llu ops, %llu persistence points, %llu explored, %llu crash "
        "images recovered and checked, %zu failures\n",
        static_cast<unsigned long long>(r.ops_run),
        static_cast<unsigned long long>(r.persist_points),
        static_cast<unsigned long long>(r.crash_points_explored),
        static_cast<unsigned long long>(r.states_checked), r.failures.size());
    for (const auto& f : r.failures) std::printf("  %s\n", f.c_str());
    const bool ok = r.failures.empty() && r.ops_run == ops.size() && r.crash_points_explored > 0 &&
                    r.states_checked >= r.crash_points_explored;
    return ok ? 0 : 1;
}
