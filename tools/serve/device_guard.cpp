// Device checks and locks before a cache is loaded (see the header).
#include "serve/device_guard.hpp"

#include <blkid.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <utility>

#include "pcache/format/constants.hpp"

namespace pcache::serve {

namespace {

std::string quoted(const char* what, const std::string& path) {
    return std::string(what) + " '" + path + "'";
}
Status errno_status(int e, const std::string& context) {
    return {e == ENOENT ? Errc::not_found : Errc::io, context + ": " + std::strerror(e)};
}

struct flock whole_file(short type) {
    struct flock l {};
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = 0;
    l.l_len = 0;
    return l;
}

// A process whose open file description of (dev, ino) carries a lock (an fdinfo "lock:" line).
std::optional<pid_t> find_lock_holder(dev_t dev, ino_t ino, bool& visible) {
    visible = true;
    DIR* proc = ::opendir("/proc");
    if (!proc) return std::nullopt;
    std::optional<pid_t> found;
    const pid_t self = ::getpid();
    while (dirent* e = ::readdir(proc)) {
        char* end = nullptr;
        const long pid = std::strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == self) continue;
        const std::string base = "/proc/" + std::string(e->d_name);
        DIR* fds = ::opendir((base + "/fd").c_str());
        if (!fds) {
            if (errno == EACCES) visible = false;
            continue;
        }
        while (dirent* f = ::readdir(fds)) {
            if (f->d_name[0] == '.') continue;
            struct stat st {};
            if (::stat((base + "/fd/" + f->d_name).c_str(), &st) != 0) continue;
            const bool same = S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)
                                  ? st.st_rdev == dev && ino == 0
                                  : st.st_dev == dev && st.st_ino == ino;
            if (!same) continue;
            std::ifstream info(base + "/fdinfo/" + f->d_name);
            for (std::string line; std::getline(info, line);)
                if (line.rfind("lock:", 0) == 0 && line.find("WRITE") != std::string::npos)
                    found = static_cast<pid_t>(pid);
            if (found) break;
        }
        ::closedir(fds);
        if (found) break;
    }
    ::closedir(proc);
    return found;
}

// (dev, ino) as find_lock_holder matches them: device nodes by their device number.
std::pair<dev_t, ino_t> identity(const struct stat& st) {
    if (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)) return {st.st_rdev, 0};
    return {st.st_dev, st.st_ino};
}

std::optional<pid_t> holder_of(const struct stat& st) {
    bool visible = true;
    const auto [dev, ino] = identity(st);
    auto pid = find_lock_holder(dev, ino, visible);
    return pid;
}

// The sysfs directory of a block device ("" if none).
std::string sysfs_dir(dev_t rdev) {
    const std::string link =
        "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
    char buf[PATH_MAX];
    if (!::realpath(link.c_str(), buf)) return {};
    return buf;
}

// The whole disk a partition belongs to (itself when it is not a partition).
std::string whole_disk(const std::string& dir) {
    if (::access((dir + "/partition").c_str(), F_OK) == 0) return dir.substr(0, dir.rfind('/'));
    return dir;
}

// The file a loop device reads, if it is one and the file still exists.
std::optional<struct stat> loop_backing(const std::string& dir) {
    std::ifstream f(dir + "/loop/backing_file");
    std::string path;
    if (!std::getline(f, path) || path.empty()) return std::nullopt;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return st;
}

// The devices this process holds locks on: live_holder() does not report them (our own lock
// conflicts with our own F_OFD_GETLK, from another open file description). Never destroyed: a
// DeviceLock held by another static object is released by that object's destructor at exit,
// in an order nobody controls. nbdkit exits that way when it cannot listen, and the plugin's
// backend then released its locks into a destroyed set (SIGSEGV).
struct HeldLocks {
    std::mutex mutex;
    std::set<std::pair<dev_t, ino_t>> ids;
};
HeldLocks& held_locks() {
    static HeldLocks* const h = new HeldLocks;  // NOLINT: leaked on purpose (above)
    return *h;
}

bool held_here(const struct stat& st) {
    HeldLocks& h = held_locks();
    std::lock_guard g(h.mutex);
    return h.ids.count(identity(st)) > 0;
}

}  // namespace

std::string holder_text(pid_t pid) {
    if (pid <= 0) return "in use by another process (its pid is not visible to this user)";
    std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmd, word;
    while (std::getline(f, word, '\0') && cmd.size() < 160) cmd += (cmd.empty() ? "" : " ") + word;
    return "in use by pid " + std::to_string(pid) + (cmd.empty() ? "" : " (" + cmd + ")");
}

Result<DeviceLock> DeviceLock::acquire(const std::string& path, const char* what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno_status(errno, quoted(what, path));
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode))
        return Status(Errc::invalid_argument,
                      quoted(what, path) + " is " +
                          (S_ISDIR(st.st_mode) ? "a directory" : "not a file or a device") +
                          ": expected a regular file or a block device");
    const bool blk = S_ISBLK(st.st_mode);
    DeviceLock lock;
    lock.fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (blk ? O_EXCL : 0));
    if (lock.fd_ < 0) {
        const int e = errno;
        if (blk && e == EBUSY) {
            const auto pid = holder_of(st);
            return Status(Errc::busy,
                          quoted(what, path) + " is " +
                              (pid ? holder_text(*pid)
                                   : "in use (mounted, or opened exclusively by another program)") +
                              ": refusing to open it (nothing was written)");
        }
        return errno_status(e, quoted(what, path));
    }
    struct flock l = whole_file(F_WRLCK);
    if (::fcntl(lock.fd_, F_OFD_SETLK, &l) != 0) {
        const int e = errno;
        if (e != EAGAIN && e != EACCES) return errno_status(e, quoted(what, path) + ": lock");
        const auto pid = holder_of(st);
        return Status(Errc::busy, quoted(what, path) + " is " + holder_text(pid.value_or(0)) +
                                      ": refusing to open it a second time (nothing was written)");
    }
    lock.id_ = identity(st);
    HeldLocks& h = held_locks();
    std::lock_guard g(h.mutex);
    h.ids.insert(lock.id_);
    return lock;
}

DeviceLock::DeviceLock(DeviceLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)), id_(o.id_) {}
DeviceLock& DeviceLock::operator=(DeviceLock&& o) noexcept {
    if (this != &o) {
        release();
        fd_ = std::exchange(o.fd_, -1);
        id_ = o.id_;
    }
    return *this;
}
DeviceLock::~DeviceLock() { release(); }
void DeviceLock::release() {
    if (fd_ < 0) return;
    ::close(fd_);
    fd_ = -1;
    HeldLocks& h = held_locks();
    std::lock_guard g(h.mutex);
    h.ids.erase(id_);
}

std::optional<pid_t> live_holder(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    struct flock l = whole_file(F_WRLCK);
    const int rc = ::fcntl(fd, F_OFD_GETLK, &l);
    struct stat st {};
    const bool stat_ok = ::fstat(fd, &st) == 0;
    ::close(fd);
    if (rc != 0 || l.l_type == F_UNLCK || !stat_ok || held_here(st)) return std::nullopt;
    return holder_of(st).value_or(0);
}

Status check_distinct(const std::string& pmem_path, const std::string& backing_path) {
    struct stat p {
    }, b{};
    if (::stat(pmem_path.c_str(), &p) != 0) return errno_status(errno, quoted("pmem", pmem_path));
    if (::stat(backing_path.c_str(), &b) != 0)
        return errno_status(errno, quoted("backing", backing_path));
    const std::string both = "pmem '" + pmem_path + "' and backing '" + backing_path + "'";
    const auto refuse = [&](const std::string& why) {
        return Status(
            Errc::invalid_argument,
            both + " " + why + ": writeback would overwrite the cache (nothing was written)");
    };
    if (identity(p) == identity(b)) return refuse("are the same file or device");
    const bool pb = S_ISBLK(p.st_mode), bb = S_ISBLK(b.st_mode);
    const std::string pd = pb ? sysfs_dir(p.st_rdev) : "", bd = bb ? sysfs_dir(b.st_rdev) : "";
    if (pb && bb && !pd.empty() && !bd.empty() && (whole_disk(pd) == bd || whole_disk(bd) == pd))
        return refuse("overlap (one is a partition of the other)");
    const auto over = [](const std::string& loop_dir, const struct stat& other) {
        auto lb = loop_dir.empty() ? std::nullopt : loop_backing(loop_dir);
        return lb && identity(*lb) == identity(other);
    };
    if ((pb && over(pd, b)) || (bb && over(bd, p)))
        return refuse("overlap (one is a loop device over the other)");
    return {};
}

namespace {
// The file system or partition-table type libblkid recognises on `path`, "" for none (or a
// device libblkid cannot read: the open that follows reports the reason).
std::string blkid_signature(const std::string& path) {
    blkid_probe pr = blkid_new_probe_from_filename(path.c_str());
    if (!pr) return {};
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE);
    blkid_probe_enable_partitions(pr, 1);
    std::string type;
    const char* value = nullptr;
    if (blkid_do_safeprobe(pr) == 0) {
        if (blkid_probe_lookup_value(pr, "TYPE", &value, nullptr) == 0)
            type = value;
        else if (blkid_probe_lookup_value(pr, "PTTYPE", &value, nullptr) == 0)
            type = std::string(value) + " partition table";
    }
    blkid_free_probe(pr);
    return type;
}
}  // namespace

Status check_backing(const std::string& backing_path, bool new_cache, bool force) {
    const int fd = ::open(backing_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_status(errno, quoted("backing", backing_path));
    struct stat st {};
    std::uint64_t size = 0;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) size = static_cast<std::uint64_t>(st.st_size);
    if (S_ISBLK(st.st_mode) && ::ioctl(fd, BLKGETSIZE64, &size) != 0) size = 0;
    if (size == 0 || size % format::kSectorBytes != 0) {
        ::close(fd);
        return {Errc::invalid_argument, "backing '" + backing_path + "' is " +
                                            std::to_string(size) +
                                            " B: expected a non-zero multiple of 512 B"};
    }
    if (force) {
        ::close(fd);
        return {};
    }
    std::uint64_t magic = 0;
    const ssize_t n = ::pread(fd, &magic, sizeof magic, format::kSuperblockOffsetBytes + 8);
    ::close(fd);
    const std::string refuse_tail =
        " (nothing was written; --force-backing uses it anyway, overwriting what is there)";
    if (n == static_cast<ssize_t>(sizeof magic) && magic == format::kSuperblockMagic)
        return {Errc::invalid_argument,
                "backing '" + backing_path +
                    "' holds a pcache cache superblock: are --pmem and --backing swapped?" +
                    refuse_tail};
    if (!new_cache) return {};
    const std::string type = blkid_signature(backing_path);
    if (type.empty()) return {};
    return {Errc::invalid_argument,
            "backing '" + backing_path + "' holds a " + type +
                " signature (libblkid), and a new cache is being created over it: is it the "
                "device you mean to cache?" +
                refuse_tail};
}

Status check_new_pmem(const std::string& pmem_path) {
    const std::string type = blkid_signature(pmem_path);
    if (type.empty()) return {};
    return {Errc::invalid_argument, "pmem '" + pmem_path + "' holds a " + type +
                                        " signature (libblkid): is it the backing device? "
                                        "(nothing was written)"};
}

bool pmem_blank(const std::string& pmem_path) {
    const int fd = ::open(pmem_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::uint64_t magic = 0;
    const ssize_t n = ::pread(fd, &magic, sizeof magic, format::kSuperblockOffsetBytes + 8);
    ::close(fd);
    return n != static_cast<ssize_t>(sizeof magic) || magic == 0;
}

Status ensure_allocated(const std::string& pmem_path, bool& allocated) {
    allocated = false;
    struct stat st {};
    if (::stat(pmem_path.c_str(), &st) != 0) return errno_status(errno, quoted("pmem", pmem_path));
    if (!S_ISREG(st.st_mode) || st.st_size == 0) return {};
    // st_blocks, not SEEK_HOLE: tmpfs reports fallocated, never written pages as holes.
    if (static_cast<std::uint64_t>(st.st_blocks) * 512 >= static_cast<std::uint64_t>(st.st_size))
        return {};
    const int fd = ::open(pmem_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno_status(errno, quoted("pmem", pmem_path));
    const int rc = ::posix_fallocate(fd, 0, st.st_size);
    ::close(fd);
    if (rc == 0) {
        allocated = true;
        return {};
    }
    std::ostringstream s;
    s << "pmem '" << pmem_path << "' is a sparse file (" << st.st_blocks * 512ull << " of "
      << st.st_size << " B allocated) and allocating it failed: " << std::strerror(rc)
      << ". Mapped, it would die with SIGBUS when its file system runs out of room; free "
      << st.st_size << " B there, or recreate it smaller: fallocate -l SIZE '" << pmem_path
      << "' on a new file (nothing was written)";
    return {rc == ENOSPC ? Errc::no_space : Errc::io, s.str()};
}

std::string medium_warning(const std::string& pmem_path) {
    struct stat st {};
    if (::stat(pmem_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
    struct statfs fs {};
    if (::statfs(pmem_path.c_str(), &fs) != 0) return {};
    const char* name = nullptr;
    switch (static_cast<unsigned long>(fs.f_type)) {
        case EXT4_SUPER_MAGIC:
            name = "ext4";
            break;
        case XFS_SUPER_MAGIC:
            name = "xfs";
            break;
        case BTRFS_SUPER_MAGIC:
            name = "btrfs";
            break;
        default:
            return {};
    }
    struct statx sx {};
    if (::statx(AT_FDCWD, pmem_path.c_str(), 0, STATX_BASIC_STATS, &sx) == 0 &&
        (sx.stx_attributes_mask & STATX_ATTR_DAX) && (sx.stx_attributes & STATX_ATTR_DAX))
        return {};
    return std::string("warning: pmem '") + pmem_path + "' is a file on " + name +
           " without DAX: every flush is a disk fsync (about 100 writes/s); put it on tmpfs "
           "(/dev/shm) or a DAX mount for memory speed";
}

}  // namespace pcache::serve
