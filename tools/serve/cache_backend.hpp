// CacheBackend: a pcache device (pmem file + backing file) as a serve::Backend.
//
// Opening: the devices are locked and checked first (device_guard.hpp: a second opener, the
// same file twice, a swapped or foreign backing, a sparse pmem file); then the pmem image is
// inspected read-only first, so a typo in a path never formats anything: a blank image is formatted
// only when asked (ServeOptions::format), a foreign or damaged one is refused with the inspector's
// reason, and an existing cache is opened with the data_crc setting it records (Cache::open replays
// its key log: this is the recovery after a SIGKILL). Background writeback, GC and the 1 s kset
// flush run on Runtime threads, started by start() with the termination signals blocked so that
// only the front end's threads see them.
//
// Backing failures are logged when they start (the engine's error: errno and offset) and when
// writeback recovers; close() fails only if writeback is still failing then (an error that
// healed does not make a clean shutdown exit non-zero).
//
// Semantics (backend.hpp): write() waits for room when the cache is full (Runtime::
// write_blocking); flush() closes every kset buffer, after which every acknowledged write is in
// the durable key log on pmem; close() stops the threads and does Cache::close(). Requests that
// are not 512-byte aligned are widened to whole sectors (read-modify-write under one mutex, so
// two unaligned writes into one sector never lose each other's bytes).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "pcache/blockdev/backing.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"
#include "pcache/runtime.hpp"
#include "serve/backend.hpp"
#include "serve/device_guard.hpp"

namespace pcache::serve {

struct ServeOptions {
    std::string pmem_path;
    std::string backing_path;  // a path, an NBD URI or rbd:POOL/IMAGE (blockdev/backing.hpp)
    std::uint32_t writeback_queue_depth = 32;  // writes in flight during writeback
    bool format = false;                       // format the pmem image if it is blank
    std::optional<bool> data_crc;  // new caches: default off; existing: must match if given
    format::Geometry geometry = format::Geometry::kernel();
    std::uint32_t n_ksets = 0;   // 0: one per online CPU, as the kernel does
    bool force_backing = false;  // use a backing that holds a pcache superblock or a signature
    // Non-fatal notes (a sparse pmem allocated, a slow medium): default "pcache serve: ..." on
    // stderr.
    std::function<void(const std::string&)> note;
};

class CacheBackend final : public Backend {
public:
    using CacheT = Cache<Pmem2Device, BackingDevice>;

    // Errors: the devices' (not_found, io, ...) with the path, invalid_argument for a blank image
    // without ServeOptions::format or a data_crc mismatch, corrupt for a foreign or damaged image.
    static Result<std::unique_ptr<CacheBackend>> open(const ServeOptions& options);
    ~CacheBackend() override;

    void start();  // background threads; call once, after any fork
    std::uint64_t size_bytes() const override { return cache_->backing_bytes(); }
    Status read(std::uint64_t off, std::span<std::byte> out) override;
    Status write(std::uint64_t off, std::span<const std::byte> data, bool fua) override;
    Status flush() override;
    Status close() override;
    std::string describe() const override;
    bool formatted_now() const { return formatted_now_; }
    std::string status_line() const { return cache_->status_line(); }

private:
    CacheBackend() = default;
    Status write_unaligned(std::uint64_t off, std::span<const std::byte> data, bool fua);
    void watch_health();  // the health watcher thread's body
    void stop_watcher();
    void note(const std::string& line) const;

    DeviceGuard guard_;  // first member: the locks outlive the devices and the cache
    std::shared_ptr<Pmem2Device> pmem_;  // shared with the cache, which owns them too
    std::shared_ptr<BackingDevice> backing_;
    std::unique_ptr<CacheT> cache_;
    std::unique_ptr<Runtime<CacheT>> runtime_;
    ServeOptions options_;
    bool formatted_now_ = false;
    std::mutex rmw_mutex_;    // serialises read-modify-write of partial sectors
    std::mutex close_mutex_;  // guards closed_
    bool closed_ = false;
    // Logs writeback's health transitions (failing with the error, recovered) as they happen.
    std::thread watcher_;
    std::mutex watch_mutex_;
    std::condition_variable watch_cv_;
    bool watch_stop_ = false;
};

}  // namespace pcache::serve
