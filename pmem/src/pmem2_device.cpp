// Pmem2Device: see pmem2_device.hpp for what is mapped and how read() stays media-error safe.
#include "pcache/pmem/pmem2_device.hpp"

#include <fcntl.h>
#include <libpmem2.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <memory>
#include <mutex>

namespace pcache {
namespace {

std::string errno_text(int err) { return std::string(std::strerror(err)); }

std::string pmem2_text() {
    const char* msg = pmem2_errormsg();
    return (msg && *msg) ? std::string(msg) : std::string("(libpmem2 gave no message)");
}

pmem2_granularity to_pmem2(PmemGranularity g) {
    switch (g) {
        case PmemGranularity::byte:
            return PMEM2_GRANULARITY_BYTE;
        case PmemGranularity::cache_line:
            return PMEM2_GRANULARITY_CACHE_LINE;
        case PmemGranularity::page:
            return PMEM2_GRANULARITY_PAGE;
    }
    return PMEM2_GRANULARITY_PAGE;
}

PmemGranularity from_pmem2(pmem2_granularity g) {
    switch (g) {
        case PMEM2_GRANULARITY_BYTE:
            return PmemGranularity::byte;
        case PMEM2_GRANULARITY_CACHE_LINE:
            return PmemGranularity::cache_line;
        case PMEM2_GRANULARITY_PAGE:
            return PmemGranularity::page;
    }
    return PmemGranularity::page;
}

// Our flags mirror libpmem2's meanings, not its bit values: translate bit by bit, so neither
// side can drift silently.
unsigned to_pmem2_flags(unsigned flags) {
    unsigned out = 0;
    if (flags & kPmemNoFlush) out |= PMEM2_F_MEM_NOFLUSH;
    if (flags & kPmemNoDrain) out |= PMEM2_F_MEM_NODRAIN;
    if (flags & kPmemNonTemporal) out |= PMEM2_F_MEM_NONTEMPORAL;
    return out;
}
constexpr unsigned kPmemAllFlags = kPmemNoFlush | kPmemNoDrain | kPmemNonTemporal;

struct ConfigDeleter {
    void operator()(pmem2_config* cfg) const noexcept { pmem2_config_delete(&cfg); }
};

// Opens (or creates) the file. Returns the fd, or an error naming the path.
Result<int> open_fd(const std::string& path, const Pmem2OpenOptions& options, bool& created) {
    created = false;
    int fd = -1;
    if (options.create) {
        if (options.size_bytes == 0)
            return {Errc::invalid_argument,
                    "pmem '" + path + "': create needs size_bytes > 0, found 0"};
        fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600);
        created = fd >= 0;
    }
    if (fd < 0 && (!options.create || errno == EEXIST))
        fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        return {err == ENOENT ? Errc::not_found : Errc::io,
                "pmem '" + path + "': cannot open: " + errno_text(err)};
    }
    if (created) {
        // posix_fallocate, not ftruncate: a sparse tmpfs file can run out of memory later, and
        // a store into a page that cannot be allocated is a SIGBUS, not an error we can return.
        const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(options.size_bytes));
        if (err != 0) {
            ::close(fd);
            ::unlink(path.c_str());
            return {err == ENOSPC ? Errc::no_space : Errc::io,
                    "pmem '" + path + "': cannot allocate " + std::to_string(options.size_bytes) +
                        " B: " + errno_text(err)};
        }
    }
    return fd;
}

// ---- media-error-safe copies out of the mapping (see the header) ----
// A thread inside guarded_copy points t_guard at its jump buffer; the SIGBUS handler jumps back
// there. initial-exec TLS: reading it in a signal handler never allocates.
__attribute__((tls_model("initial-exec"))) thread_local sigjmp_buf* volatile t_guard = nullptr;
struct sigaction g_prev_sigbus {};

void on_sigbus(int sig, siginfo_t* info, void* uctx) {
    if (sigjmp_buf* jb = t_guard) {
        t_guard = nullptr;
        siglongjmp(*jb, 1);  // SA_NODEFER: SIGBUS is not blocked here, no mask to restore
    }
    // Not a guarded copy: whatever the process did before us.
    if (g_prev_sigbus.sa_flags & SA_SIGINFO) {
        if (g_prev_sigbus.sa_sigaction) return g_prev_sigbus.sa_sigaction(sig, info, uctx);
    } else if (g_prev_sigbus.sa_handler != SIG_DFL && g_prev_sigbus.sa_handler != SIG_IGN) {
        return g_prev_sigbus.sa_handler(sig);
    }
    // Default action: restore it; returning re-runs the faulting access, which then kills.
    ::signal(SIGBUS, SIG_DFL);
}

// Installs the handler once per process (chaining to the previous one for other faults).
Status install_sigbus_handler() {
    static std::once_flag once;
    static int err = 0;
    std::call_once(once, [] {
        struct sigaction sa {};
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (::sigaction(SIGBUS, &sa, &g_prev_sigbus) != 0) err = errno;
    });
    if (err != 0) return {Errc::io, "installing the SIGBUS handler: " + errno_text(err)};
    return {};
}

// memcpy that turns a SIGBUS raised by the source (a poisoned page, a truncated file) into
// false. No sigprocmask: sigsetjmp(.., 0) is a few register stores.
bool guarded_copy(void* dst, const void* src, std::size_t n) {
    sigjmp_buf jb;
    if (sigsetjmp(jb, 0) != 0) return false;  // t_guard was cleared by the handler
    t_guard = &jb;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    std::memcpy(dst, src, n);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    t_guard = nullptr;
    return true;
}

}  // namespace

std::string_view granularity_name(PmemGranularity g) noexcept {
    switch (g) {
        case PmemGranularity::byte:
            return "byte";
        case PmemGranularity::cache_line:
            return "cache_line";
        case PmemGranularity::page:
            return "page";
    }
    return "unknown";
}

Result<Pmem2Device> Pmem2Device::open(const std::string& path, OpenOptions options) {
    Pmem2Device dev;  // owns every resource from here on, so each error path cleans up
    dev.path_ = path;
    bool created = false;
    Result<int> fd = open_fd(path, options, created);
    if (!fd) return fd.status();
    dev.fd_ = *fd;
    if (Status s = dev.map_source(options); !s.ok()) {
        dev.release();
        if (created) ::unlink(path.c_str());  // leave nothing behind that we made
        return s;
    }
    return Result<Pmem2Device>(std::move(dev));
}

Status Pmem2Device::map_source(const OpenOptions& options) {
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
        return {Errc::io, "pmem '" + path_ + "': fstat: " + errno_text(errno)};
    const bool devdax = S_ISCHR(st.st_mode);
    file_mode_ = st.st_mode;
    struct statfs fs {};
    in_memory_fs_ = !devdax && ::fstatfs(fd_, &fs) == 0 &&
                    (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
    if (!devdax && !S_ISREG(st.st_mode))
        return {Errc::invalid_argument,
                "pmem '" + path_ + "': expected a regular file or a device-DAX character device"};

    if (pmem2_source_from_fd(&source_, fd_) != 0)
        return {Errc::io, "pmem '" + path_ + "': pmem2_source_from_fd: " + pmem2_text()};
    std::size_t source_bytes = 0;
    std::size_t align_bytes = 0;
    if (pmem2_source_size(source_, &source_bytes) != 0 ||
        pmem2_source_alignment(source_, &align_bytes) != 0)
        return {Errc::io, "pmem '" + path_ + "': reading size and alignment: " + pmem2_text()};
    if (source_bytes == 0 || options.size_bytes > source_bytes)
        return {Errc::invalid_argument,
                "pmem '" + path_ + "' is " + std::to_string(source_bytes) +
                    " B, expected at least " +
                    std::to_string(options.size_bytes == 0 ? 1 : options.size_bytes) + " B"};
    const std::uint64_t map_bytes = options.size_bytes ? options.size_bytes : source_bytes;
    if (align_bytes != 0 && map_bytes % align_bytes != 0)
        return {Errc::invalid_argument, "pmem '" + path_ + "': mapping length " +
                                            std::to_string(map_bytes) +
                                            " B is not a multiple of the source alignment " +
                                            std::to_string(align_bytes) + " B"};

    pmem2_config* raw_cfg = nullptr;
    if (pmem2_config_new(&raw_cfg) != 0)
        return {Errc::io, "pmem '" + path_ + "': pmem2_config_new: " + pmem2_text()};
    std::unique_ptr<pmem2_config, ConfigDeleter> cfg(raw_cfg);
    if (pmem2_config_set_required_store_granularity(cfg.get(),
                                                    to_pmem2(options.required_granularity)) != 0 ||
        pmem2_config_set_length(cfg.get(), map_bytes) != 0)
        return {Errc::io, "pmem '" + path_ + "': configuring the mapping: " + pmem2_text()};
    if (const int rc = pmem2_map_new(&map_, cfg.get(), source_); rc != 0) {
        map_ = nullptr;
        return {rc == PMEM2_E_GRANULARITY_NOT_SUPPORTED ? Errc::unsupported : Errc::io,
                "pmem '" + path_ + "': mapping at " +
                    std::string(granularity_name(options.required_granularity)) +
                    " granularity: " + pmem2_text()};
    }

    base_ = static_cast<std::byte*>(pmem2_map_get_address(map_));
    size_bytes_ = pmem2_map_get_size(map_);
    granularity_ = from_pmem2(pmem2_map_get_store_granularity(map_));
    memcpy_fn_ = pmem2_get_memcpy_fn(map_);
    flush_fn_ = pmem2_get_flush_fn(map_);
    drain_fn_ = pmem2_get_drain_fn(map_);
    assert(base_ != nullptr && size_bytes_ == map_bytes);
    assert(memcpy_fn_ && flush_fn_ && drain_fn_);

    PCACHE_TRY(install_sigbus_handler().with_context("pmem '" + path_ + "'"));
    read_mode_ = ReadMode::guarded_copy;
    // The bad-block list is known at open for device DAX (ndctl region info); reads of listed
    // blocks are refused without touching them. No list is not fatal: the SIGBUS guard remains.
    if (devdax) has_badblock_list_ = load_badblocks().ok();
    return {};
}

Status Pmem2Device::load_badblocks() {
    pmem2_badblock_context* ctx = nullptr;
    if (pmem2_badblock_context_new(&ctx, source_) != 0)
        return {Errc::unsupported, "pmem '" + path_ + "': no bad-block list: " + pmem2_text()};
    pmem2_badblock bb{};
    int rc = 0;
    // Bounded: a device has at most size/512 bad sectors.
    for (std::uint64_t n = 0; n <= size_bytes_ / 512; ++n) {
        rc = pmem2_badblock_next(ctx, &bb);
        if (rc != 0) break;
        badblocks_.push_back({bb.offset, bb.length});
    }
    pmem2_badblock_context_delete(&ctx);
    if (rc != 0 && rc != PMEM2_E_NO_BAD_BLOCK_FOUND)
        return {Errc::io, "pmem '" + path_ + "': reading bad blocks: " + pmem2_text()};
    return {};
}

Pmem2Device::Pmem2Device(Pmem2Device&& other) noexcept { *this = std::move(other); }

Pmem2Device& Pmem2Device::operator=(Pmem2Device&& other) noexcept {
    if (this == &other) return *this;
    release();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    source_ = std::exchange(other.source_, nullptr);
    map_ = std::exchange(other.map_, nullptr);
    base_ = std::exchange(other.base_, nullptr);
    size_bytes_ = std::exchange(other.size_bytes_, 0);
    granularity_ = other.granularity_;
    read_mode_ = other.read_mode_;
    file_mode_ = other.file_mode_;
    in_memory_fs_ = other.in_memory_fs_;
    has_badblock_list_ = std::exchange(other.has_badblock_list_, false);
    badblocks_ = std::move(other.badblocks_);
    memcpy_fn_ = std::exchange(other.memcpy_fn_, nullptr);
    flush_fn_ = std::exchange(other.flush_fn_, nullptr);
    drain_fn_ = std::exchange(other.drain_fn_, nullptr);
    sync_errno_ = other.sync_errno_.exchange(0);
    return *this;
}

Pmem2Device::~Pmem2Device() { release(); }

void Pmem2Device::release() noexcept {
    // Unmapping a shared file mapping does not lose data (the page cache keeps it), so there is
    // no implicit persist here: durability is the caller's flush + drain, as on real pmem.
    if (map_) pmem2_map_delete(&map_);
    if (source_) pmem2_source_delete(&source_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    base_ = nullptr;
    size_bytes_ = 0;
}

Status Pmem2Device::write(std::uint64_t off, std::span<const std::byte> src, unsigned flags) {
    PCACHE_TRY(check_range("pmem write", off, src.size(), size_bytes_));
    if (flags & ~kPmemAllFlags)
        return {Errc::invalid_argument,
                "pmem write: unknown flag bits " + std::to_string(flags & ~kPmemAllFlags)};
    if (src.empty()) return {};
    if (granularity_ != PmemGranularity::page) {
        memcpy_fn_(base_ + off, src.data(), src.size(), to_pmem2_flags(flags));
        return {};
    }
    // Page granularity: libpmem2 would msync inside its memcpy and drop the error. Copy without
    // its flush and msync here instead, so that a failed msync reaches the caller.
    memcpy_fn_(base_ + off, src.data(), src.size(), PMEM2_F_MEM_NOFLUSH | PMEM2_F_MEM_NODRAIN);
    if (flags & kPmemNoFlush) return {};
    return msync_range(off, src.size());
}

Status Pmem2Device::msync_range(std::uint64_t off, std::uint64_t len) {
    static const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    const std::uint64_t first = off / page * page;
    if (::msync(base_ + first, off + len - first, MS_SYNC) != 0) {
        int expected = 0;
        sync_errno_.compare_exchange_strong(expected, errno);
    }
    const int e = sync_errno_.load();
    if (e != 0)
        return {Errc::io, "pmem '" + path_ + "': msync failed (" + std::strerror(e) +
                              "): writes since the failure are not durable"};
    return {};
}

Status Pmem2Device::flush(std::uint64_t off, std::uint64_t len) {
    PCACHE_TRY(check_range("pmem flush", off, len, size_bytes_));
    if (len == 0) return {};
    if (granularity_ == PmemGranularity::page) return msync_range(off, len);
    flush_fn_(base_ + off, len);
    return {};
}

Status Pmem2Device::drain() {
    if (drain_fn_) drain_fn_();
    if (const int e = sync_errno_.load(); e != 0)
        return {Errc::io, "pmem '" + path_ + "': msync failed (" + std::strerror(e) +
                              "): writes since the failure are not durable"};
    return {};
}

#if PCACHE_TSAN
Status Pmem2Device::pread_all(std::uint64_t off, std::span<std::byte> dst) const {
    std::size_t done_bytes = 0;
    while (done_bytes < dst.size()) {
        const ssize_t n = ::pread(fd_, dst.data() + done_bytes, dst.size() - done_bytes,
                                  static_cast<off_t>(off + done_bytes));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int err = n == 0 ? 0 : errno;
            return {Errc::io, "pmem read at " + std::to_string(off + done_bytes) + " of '" + path_ +
                                  "': " + (err == EIO ? "media error (bad block): " : "") +
                                  (err ? errno_text(err) : std::string("unexpected end of file")) +
                                  " (pread: SIGBUS guard off under ThreadSanitizer)"};
        }
        done_bytes += static_cast<std::size_t>(n);
    }
    return {};
}
#endif

Status Pmem2Device::read(std::uint64_t off, std::span<std::byte> dst) const {
    PCACHE_TRY(check_range("pmem read", off, dst.size(), size_bytes_));
    if (dst.empty()) return {};
    for (const BadBlock& bb : badblocks_) {
        if (bb.offset_bytes < off + dst.size() && off < bb.offset_bytes + bb.length_bytes)
            return {Errc::io, "pmem read [" + std::to_string(off) + ", +" +
                                  std::to_string(dst.size()) + ") overlaps bad block [" +
                                  std::to_string(bb.offset_bytes) + ", +" +
                                  std::to_string(bb.length_bytes) + ") of '" + path_ + "'"};
    }
#if PCACHE_TSAN
    // ThreadSanitizer never lets a SIGBUS reach our handler (the process dies): under TSan a
    // regular file is read with pread, as before issue 17 (EIO = bad block).
    if (fd_ >= 0 && !S_ISCHR(file_mode_)) return pread_all(off, dst);
#endif
    if (!guarded_copy(dst.data(), base_ + off, dst.size()))
        return {Errc::io, "pmem read [" + std::to_string(off) + ", +" + std::to_string(dst.size()) +
                              ") of '" + path_ +
                              "': media error (SIGBUS while copying from the mapping)"};
    return {};
}

}  // namespace pcache
