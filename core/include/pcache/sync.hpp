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

#include <mutex>
#include <shared_mutex>

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

}  // namespace pcache
