// The simulated devices as seen by cooperative tasks: SimPmem and SimBlockDevice with a
// scheduling point before every call the engine makes (pmem write, flush, drain, read; block
// read, write, flush), CoopPmem::current_cpu() = the running task's index (the lane seam), and
// CoopPmem::Mutex = CoopMutex and CoopPmem::SharedMutex =
// CoopSharedMutex, which the engine picks up through pcache/sync.hpp for every lock it takes. The
// scheduling point comes before the call takes effect, like the crash hook: another task may run
// between an engine decision and its I/O.
#pragma once

#include "pcache/sim/coop.hpp"
#include "pcache/sim/sim_block_device.hpp"
#include "pcache/sim/sim_pmem.hpp"

namespace pcache::sim {

class CoopPmem : public SimPmem {
public:
    using Mutex = CoopMutex;
    using SharedMutex = CoopSharedMutex;
    using SimPmem::SimPmem;

    // The lane seam: a task's simulated CPU is its task index (writer i, reader j, ...), so the
    // seeded schedule alone decides lanes.
    std::uint32_t current_cpu() const { return CoopScheduler::current_task_index(); }

    Status write(std::uint64_t off, std::span<const std::byte> src, unsigned flags) {
        CoopScheduler::sync_point();
        return SimPmem::write(off, src, flags);
    }
    Status flush(std::uint64_t off, std::uint64_t len) {
        CoopScheduler::sync_point();
        return SimPmem::flush(off, len);
    }
    Status drain() {
        CoopScheduler::sync_point();
        return SimPmem::drain();
    }
    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        CoopScheduler::sync_point();
        return SimPmem::read(off, dst);
    }
};
static_assert(PmemDevice<CoopPmem>);

class CoopBlock : public SimBlockDevice {
public:
    using SimBlockDevice::SimBlockDevice;

    Status read(std::uint64_t off, std::span<std::byte> dst) {
        CoopScheduler::sync_point();
        return SimBlockDevice::read(off, dst);
    }
    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        CoopScheduler::sync_point();
        return SimBlockDevice::write(off, src, fua);
    }
    Status flush() {
        CoopScheduler::sync_point();
        return SimBlockDevice::flush();
    }
};
static_assert(BlockDevice<CoopBlock>);

// One simulated machine for concurrent runs.
struct CoopMachine {
    CoopMachine(std::uint64_t pmem_bytes, std::uint64_t block_bytes, PmemMode mode)
        : pmem(pmem_bytes, {.mode = mode, .context = &ctx}),
          block(block_bytes, {.context = &ctx}) {}
    CoopMachine(const CoopMachine&) = delete;
    CoopMachine& operator=(const CoopMachine&) = delete;
    SimContext ctx;  // first: the devices hold its address
    CoopPmem pmem;
    CoopBlock block;
};

}  // namespace pcache::sim
