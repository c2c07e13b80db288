// borrow(): hands a device the caller keeps alive to an API that takes shared ownership.
//
// Cache::format/open/open_read_only take std::shared_ptr<Device>: a cache keeps its devices
// alive, so they cannot be destroyed under it. A program that owns its devices some other way
// (on the stack, in a simulator's machine) passes borrow(device) instead: a non-owning
// shared_ptr. The caller then promises the device outlives the cache; the call site says so.
#pragma once

#include <memory>

namespace pcache {

template <class T>
std::shared_ptr<T> borrow(T& device) noexcept {
    return std::shared_ptr<T>(std::shared_ptr<T>(), &device);  // aliasing, no owner
}

}  // namespace pcache
