// The engine's synchronisation seam: which mutex the engine uses, taken from the PmemDevice
// policy.
//
// A policy may declare `using Mutex = ...;` (a type with lock() and unlock()); the engine then
// uses it for every lock it owns. A policy that declares none (Pmem2Device, FilePmem, SimPmem)
// gets std::mutex: production code compiles to exactly a std::mutex per lock. The concurrent
// simulator's policy declares a cooperative mutex whose lock() is a scheduling point, so a
// seeded scheduler can switch simulated threads at every lock acquisition (its device calls are
// the other scheduling points: the engine needs no hook calls). See docs/simulator.md.
#pragma once

#include <mutex>

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
}  // namespace detail

// The mutex type the engine uses with policy P: P::Mutex if declared, else std::mutex.
template <class P>
using MutexFor = typename detail::MutexOf<P>::type;

}  // namespace pcache
