// The FUSE front end of `pcache serve`: one regular file, MOUNTPOINT/<name>, whose bytes are
// the backend's. `losetup --direct-io=on` on it gives a block device for mkfs and mount.
//
// Request mapping (libfuse low-level API, multi-threaded loop):
//   read            backend.read, clipped at the end of the device
//   write           backend.write; fua when the opener asked for O_DSYNC or O_SYNC
//   fsync/fdatasync backend.flush: the loop driver turns REQ_PREFLUSH and REQ_FUA into vfs_fsync,
//                   so a file system's barriers reach the cache as flushes
//   flush (close)   nothing: close(2) promises no durability
// The file never changes size; the kernel's writeback cache stays off, so an acknowledged
// write is in the backend, and the loop device's direct I/O bypasses the page cache.
#pragma once

#include <string>

#include "pcache/result.hpp"
#include "serve/backend.hpp"

namespace pcache::serve {

struct FuseOptions {
    std::string mountpoint;  // an existing directory
    std::string file_name = "pcache";
    unsigned max_threads = 16;  // FUSE worker threads at most
    bool allow_other = false;   // let other users open the file (root always can)
    bool debug = false;         // libfuse's request trace on stderr
};

// SIGINT, SIGTERM and SIGHUP end serve_fuse's loop (the first one; later ones print "already
// stopping" and are otherwise ignored until the process exits). Call once, early: a signal
// before the loop starts makes serve_fuse return at once.
void install_stop_handlers();
bool stop_requested();

// Mounts, serves until SIGINT, SIGTERM or SIGHUP (or an unmount), then unmounts. The caller
// opens the backend before and closes it after. Errors: invalid_argument for a bad mount point,
// io when mounting or the loop fails.
Status serve_fuse(Backend& backend, const FuseOptions& options);

}  // namespace pcache::serve
