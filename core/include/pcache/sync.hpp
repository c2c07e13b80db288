// The engine's synchronisation seam: which mutex the engine uses, taken from the PmemDevice
// policy.
//
// A policy may declare `using Mutex = ...;` (a type with lock() and unlock()) and
// `using SharedMutex = ...;` (also lock_shared() and unlock_shared()); the engine then uses
// them for every lock it owns. A policy that declares none (Pmem2Device, FilePmem, SimPmem)
// gets std::mutex and std::shared_mutex: production code compiles to exactly those. The concurrent
// simulator's policy declares a cooperative mutex whose lock() is a scheduling point, so a
// seeded scheduler can switch simulated threads at every lock acquisition (its device calls are
// the other scheduling points: the engine needs no hook calls). See docs/simulator.md.
#pragma once

#include <sched.h>

#include <concepts>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <thread>

namespace pcache {

namespace detail {
template <class P>
struct MutexOf {
    using type = std::mutex;
};
template <class P>
requires requires { typename P::Mutex; }
struct MutexOf<P> {
    using type = typename P::Mutex;
};
template <class P>
struct SharedMutexOf {
    using type = std::shared_mutex;
};
template <class P>
requires requires { typename P::SharedMutex; }
struct SharedMutexOf<P> {
    using type = typename P::SharedMutex;
};
}  // namespace detail

// The mutex type the engine uses with policy P: P::Mutex if declared, else std::mutex.
template <class P>
using MutexFor = typename detail::MutexOf<P>::type;
// The reader-writer mutex type: P::SharedMutex if declared, else std::shared_mutex.
template <class P>
using SharedMutexFor = typename detail::SharedMutexOf<P>::type;

// The lane seam (docs/design.md "Lanes"): which CPU the calling thread runs on and how many CPUs
// there are. A policy may declare `std::uint32_t current_cpu() const` and
// `std::uint32_t cpu_count() const`; the simulators do (the sequential one from its seeded
// workload, the concurrent one from the cooperative task id), so no OS call decides a lane in a
// simulated run. Otherwise sched_getcpu() and std::thread::hardware_concurrency().
template <class P>
std::uint32_t current_cpu_of(const P& p) {
    if constexpr (requires {
                      { p.current_cpu() } -> std::convertible_to<std::uint32_t>;
                  }) {
        return p.current_cpu();
    } else {
        const int cpu = ::sched_getcpu();
        return cpu < 0 ? 0u : static_cast<std::uint32_t>(cpu);
    }
}
template <class P>
std::uint32_t cpu_count_of(const P& p) {
    if constexpr (requires {
                      { p.cpu_count() } -> std::convertible_to<std::uint32_t>;
                  }) {
        return p.cpu_count();
    } else {
        const unsigned n = std::thread::hardware_concurrency();
        return n == 0 ? 1u : static_cast<std::uint32_t>(n);
    }
}

}  // namespace pcache
