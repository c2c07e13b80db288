// The public lifecycle of a cache: Cache::format, Cache::open, Cache::open_read_only, the
// destructor's close, and the refusal of mutations on a read-only cache (docs/api.md). The
// work itself (format_device, load_device) is in cache_open.hpp.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
Cache<Pmem, Block>::Cache(PmemPtr pmem, BlockPtr backing, CacheOptions opts)
    : pmem_owner_(std::move(pmem)),
      backing_owner_(std::move(backing)),
      pmem_(*pmem_owner_),
      backing_(*backing_owner_),
      opts_(std::move(opts)),
      backing_bytes_(backing_.size()) {}

template <PmemDevice Pmem, BlockDevice Block>
Cache<Pmem, Block>::~Cache() {
    if (runtime_attached_.load() != 0) {
        // Not recoverable: the Runtime's threads are running steps on this object.
        constexpr const char* kWhy = "pcache: a Cache destroyed before the Runtime over it\n";
        if (opts_.log) opts_.log(kWhy);
        std::fputs(kWhy, stderr);
        std::abort();
    }
    if (read_only_ || !opts_.close_on_destroy || !needs_close_.load()) return;
    if (Status s = close(); !s.ok() && opts_.log)
        opts_.log("pcache: closing the cache on destruction failed: " + s.to_string());
}

template <PmemDevice Pmem, BlockDevice Block>
Result<std::unique_ptr<Cache<Pmem, Block>>> Cache<Pmem, Block>::format(PmemPtr pmem,
                                                                       BlockPtr backing,
                                                                       CacheOptions opts) {
    return create(std::move(pmem), std::move(backing), std::move(opts), Mode::format);
}

template <PmemDevice Pmem, BlockDevice Block>
Result<std::unique_ptr<Cache<Pmem, Block>>> Cache<Pmem, Block>::open(PmemPtr pmem, BlockPtr backing,
                                                                     CacheOptions opts) {
    return create(std::move(pmem), std::move(backing), std::move(opts), Mode::open);
}

template <PmemDevice Pmem, BlockDevice Block>
Result<std::unique_ptr<Cache<Pmem, Block>>> Cache<Pmem, Block>::open_read_only(PmemPtr pmem,
                                                                               BlockPtr backing,
                                                                               CacheOptions opts) {
    return create(std::move(pmem), std::move(backing), std::move(opts), Mode::read_only);
}

template <PmemDevice Pmem, BlockDevice Block>
Result<std::unique_ptr<Cache<Pmem, Block>>> Cache<Pmem, Block>::create(PmemPtr pmem,
                                                                       BlockPtr backing,
                                                                       CacheOptions opts,
                                                                       Mode mode) {
    if (!pmem || !backing)
        return Status(Errc::invalid_argument, "a null device pointer (pass a device or borrow(d))");
    PCACHE_TRY(opts.geometry.validate());
    if (opts.n_lanes > kLanesMax || (opts.n_lanes == 0 && opts.n_ksets > kLanesMax))
        return Status(Errc::invalid_argument,
                      "n_lanes " + std::to_string(opts.n_lanes ? opts.n_lanes : opts.n_ksets) +
                          ": expected 1..1024 (or 0: one per CPU)");
    if (opts.writeback_low_percent == 0 ||
        opts.writeback_low_percent > opts.writeback_high_percent ||
        opts.writeback_high_percent > 100)
        return Status(Errc::invalid_argument,
                      "writeback watermarks low " + std::to_string(opts.writeback_low_percent) +
                          "% high " + std::to_string(opts.writeback_high_percent) +
                          "%: expected 0 < low <= high <= 100");
    if (pmem->size() < opts.geometry.device_bytes_min())
        return Status(Errc::no_space, "cache device of " + std::to_string(pmem->size()) +
                                          " B is smaller than the minimum of " +
                                          std::to_string(opts.geometry.device_bytes_min()) + " B");
    if (backing->size() == 0 || backing->size() % format::kSectorBytes != 0)
        return Status(Errc::invalid_argument, "backing device of " +
                                                  std::to_string(backing->size()) +
                                                  " B: expected a non-zero multiple of 512 B");
    if (mode == Mode::read_only) opts.fill_on_read_miss = false;  // a fill writes pmem
    std::unique_ptr<Cache> c(new Cache(std::move(pmem), std::move(backing), std::move(opts)));
    c->read_only_ = mode == Mode::read_only;
    if (mode == Mode::format) {
        PCACHE_TRY(c->format_device().with_context("formatting cache"));
    } else {
        PCACHE_TRY(c->load_device().with_context(mode == Mode::open ? "opening cache"
                                                                    : "opening cache read-only"));
    }
    return c;
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::refuse_read_only(const char* what) const {
    if (!read_only_) return {};
    return {Errc::read_only,
            std::string(what) + ": the cache was opened read-only (Cache::open_read_only)"};
}

}  // namespace pcache
