// Checks and locks every command runs before it loads a cache (issue 15): the operating mistakes
// that lose data are refused here, before the first byte is written.
//
//   DeviceLock       an exclusive lock held for the command's whole life: an OFD write lock
//                    (F_OFD_SETLK) on the file or device node, plus O_EXCL on block devices. A
//                    second opener is refused naming the holder's pid (found through
//                    /proc/PID/fdinfo, since F_OFD_GETLK reports no pid) when it can be seen.
//   live_holder      for the read-only commands: is someone holding the lock right now?
//   check_distinct   pmem and backing must not be the same file or device, nor overlap
//                    (a partition of the other, a loop device over the other).
//   check_backing    a backing that holds a pcache superblock (pmem and backing swapped?) is
//                    refused; when a new cache is created, so is any signature libblkid knows.
//                    One function: the NBD/RBD backing specs plug in beside it.
//   check_new_pmem   a device about to be formatted must hold no recognisable signature.
//   ensure_allocated a sparse pmem file is allocated before it is mapped (SIGBUS otherwise
//                    when its file system runs out of room).
//   medium_warning   a pmem file on a disk file system without DAX works at fsync speed.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>

#include "pcache/blockdev/backing.hpp"
#include "pcache/result.hpp"

namespace pcache::serve {

class DeviceLock {
public:
    // Errors: busy (held by another process; the message names it), not_found, io.
    // `what` names the role ("pmem", "backing") in messages.
    static Result<DeviceLock> acquire(const std::string& path, const char* what);
    DeviceLock() = default;
    DeviceLock(DeviceLock&& o) noexcept;
    DeviceLock& operator=(DeviceLock&& o) noexcept;
    DeviceLock(const DeviceLock&) = delete;
    DeviceLock& operator=(const DeviceLock&) = delete;
    ~DeviceLock();
    bool held() const { return fd_ >= 0; }

private:
    void release();
    int fd_ = -1;
    std::pair<dev_t, ino_t> id_{};
};

// The pid of the process holding `path`'s lock: nullopt when unlocked; 0 when locked by a
// process this one cannot see (another user's, without root).
std::optional<pid_t> live_holder(const std::string& path);

// "in use by pid N (cmdline)" or "in use by another process" for messages.
std::string holder_text(pid_t pid);

// Errors: invalid_argument (same file, same device, or overlapping), not_found, io.
Status check_distinct(const std::string& pmem_path, const std::string& backing_path);

// Errors: invalid_argument (a pcache superblock; with `new_cache`, any libblkid signature),
// not_found, io. `force` skips the check.
Status check_backing(const std::string& backing_path, bool new_cache, bool force);

// Errors: invalid_argument when libblkid recognises a signature on the device.
Status check_new_pmem(const std::string& pmem_path);

// True when the pmem holds no pcache superblock magic (read with pread: never maps the file).
bool pmem_blank(const std::string& pmem_path);

// Allocates a sparse regular pmem file in place (data kept). Returns true in `allocated` when
// it did. Errors: no_space (with the exact command that fixes it), io.
Status ensure_allocated(const std::string& pmem_path, bool& allocated);

// One warning line when the pmem is a regular file on ext4/xfs/btrfs (not DAX), else "".
std::string medium_warning(const std::string& pmem_path);

// Everything above for a command that loads (or creates) a cache, in order: locks, distinct
// devices, backing, allocation. Diagnostics that are not errors (allocation done, medium
// warning) go to `note`.
struct GuardOptions {
    bool new_cache = false;      // the pmem is blank and this command formats it
    bool force_backing = false;  // --force-backing
    bool force_pmem = false;     // format --force: a signature on the pmem is overwritten
    // false for a backing that is not a local path (an NBD/RBD URI): only the pmem is locked
    // and checked here; the remote side has its own exclusivity.
    bool backing_is_path = true;
};
struct DeviceGuard {
    DeviceLock pmem_lock;
    DeviceLock backing_lock;
};
template <class Note>
Result<DeviceGuard> guard_devices(const std::string& pmem_path, const std::string& backing_path,
                                  const GuardOptions& o, Note&& note) {
    DeviceGuard g;
    auto p = DeviceLock::acquire(pmem_path, "pmem");
    if (!p.ok()) return p.status();
    g.pmem_lock = std::move(*p);
    // An NBD/RBD spec is not a local path: the remote side has its own exclusivity.
    const auto spec = parse_backing_spec(backing_path);
    if (o.backing_is_path && (!spec.ok() || spec->kind == BackingSpec::Kind::file)) {
        PCACHE_TRY(check_distinct(pmem_path, backing_path));
        auto b = DeviceLock::acquire(backing_path, "backing");
        if (!b.ok()) return b.status();
        g.backing_lock = std::move(*b);
        PCACHE_TRY(check_backing(backing_path, o.new_cache, o.force_backing));
    }
    if (o.new_cache && !o.force_pmem) PCACHE_TRY(check_new_pmem(pmem_path));
    bool allocated = false;
    PCACHE_TRY(ensure_allocated(pmem_path, allocated));
    if (allocated) note("pmem '" + pmem_path + "' was a sparse file: allocated it in full");
    if (auto w = medium_warning(pmem_path); !w.empty()) note(w);
    return g;
}

}  // namespace pcache::serve
