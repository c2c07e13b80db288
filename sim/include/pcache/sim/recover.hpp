// Recovery of a crash image: what a program does after a power cut.
//
// Cache::open never formats. A crash that cut Cache::format itself leaves a blank device, a
// superblock without cache_info, or (cut after its last store) a complete cache: the program
// runs format again when open finds no complete cache. Once format has returned, a device that
// open cannot load is a failure, never a reason to format.
#pragma once

#include <memory>

#include "pcache/cache/cache.hpp"

namespace pcache::sim {

template <class CacheT, class Pmem, class Block>
Result<std::unique_ptr<CacheT>> recover(Pmem& pmem, Block& block, const CacheOptions& opts,
                                        bool format_returned) {
    auto opened = CacheT::open(borrow(pmem), borrow(block), opts);
    if (opened.ok() || format_returned || opened.code() != Errc::not_found) return opened;
    return CacheT::format(borrow(pmem), borrow(block), opts);
}

}  // namespace pcache::sim
