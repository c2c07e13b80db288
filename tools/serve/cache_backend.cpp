// CacheBackend: opening a pcache device for serving, and the request path (see the header).
#include "serve/cache_backend.hpp"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "pcache/inspect.hpp"

namespace pcache::serve {

namespace {

constexpr std::uint64_t kSector = format::kSectorBytes;

// Decides from the image (read-only) whether and how Cache::open may run on it.
Status admit_image(const Pmem2Device& pmem, ServeOptions& o, bool& blank) {
    auto h = inspect::read_header(pmem, o.geometry);
    if (!h.ok()) return h.status().with_context("reading the cache device '" + o.pmem_path + "'");
    blank = h->state == inspect::State::blank;
    if (blank) {
        if (!o.format)
            return {Errc::invalid_argument,
                    "'" + o.pmem_path +
                        "' holds no cache (superblock magic is 0); pass --format to "
                        "create one there, or run pcache format first (nothing was written)"};
        return {};
    }
    if (h->state != inspect::State::cache)
        return {Errc::corrupt, "'" + o.pmem_path + "' does not hold a usable pcache cache (" +
                                   inspect::state_name(h->state) + "): " + h->state_reason +
                                   " (nothing was written)"};
    if (o.data_crc && *o.data_crc != h->data_crc())
        return {Errc::invalid_argument,
                std::string("--data-crc ") + (*o.data_crc ? "on" : "off") + " but the cache on '" +
                    o.pmem_path + "' was created with data_crc " + (h->data_crc() ? "on" : "off") +
                    " (nothing was written)"};
    o.data_crc = h->data_crc();
    return {};
}

// Runs `f` with the termination signals blocked, so threads it creates never receive them.
template <class F>
void with_signals_blocked(F&& f) {
    sigset_t set, old;
    sigemptyset(&set);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    f();
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

}  // namespace

Result<std::unique_ptr<CacheBackend>> CacheBackend::open(const ServeOptions& options) {
    std::unique_ptr<CacheBackend> b(new CacheBackend());
    b->options_ = options;
    ServeOptions& o = b->options_;
    GuardOptions go;
    go.new_cache = o.format && pmem_blank(o.pmem_path);
    go.force_backing = o.force_backing;
    auto guard = guard_devices(o.pmem_path, o.backing_path, go,
                               [&b](const std::string& line) { b->note(line); });
    if (!guard.ok()) return guard.status();
    b->guard_ = std::move(*guard);
    auto p = Pmem2Device::open(o.pmem_path);
    if (!p.ok()) return p.status().with_context("opening the cache device '" + o.pmem_path + "'");
    b->pmem_ = std::make_shared<Pmem2Device>(std::move(*p));
    BackingOpenOptions bo;
    bo.queue_depth = o.writeback_queue_depth;
    auto f = open_backing(o.backing_path, bo);
    if (!f.ok())
        return f.status().with_context("opening the backing device '" + o.backing_path + "'");
    b->backing_ = std::shared_ptr<BackingDevice>(std::move(*f));
    bool blank = false;
    PCACHE_TRY(admit_image(*b->pmem_, o, blank));

    CacheOptions co;
    co.data_crc = o.data_crc.value_or(false);
    co.geometry = o.geometry;
    co.writeback_queue_depth = o.writeback_queue_depth;
    co.n_lanes = o.n_ksets;  // 0: one lane per CPU, as many as the cache can carry
    CacheBackend* self = b.get();
    co.log = [self](const std::string& line) { self->note(line); };  // lost dirty data
    co.clock_ns = [] {  // for writeback_health().since_ns; the engine itself reads no clock
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::steady_clock::now().time_since_epoch())
                                              .count());
    };
    auto c =
        blank ? CacheT::format(b->pmem_, b->backing_, co) : CacheT::open(b->pmem_, b->backing_, co);
    if (!c.ok()) return c.status();
    b->cache_ = std::move(*c);
    b->formatted_now_ = blank;
    b->runtime_ = std::make_unique<Runtime<CacheT>>(*b->cache_);
    return b;
}

void CacheBackend::note(const std::string& line) const {
    if (options_.note)
        options_.note(line);
    else
        std::fprintf(stderr, "pcache serve: %s\n", line.c_str());
}

void CacheBackend::watch_health() {
    bool failing = false;
    std::uint64_t steps = 0;
    std::unique_lock l(watch_mutex_);
    while (!watch_stop_) {
        watch_cv_.wait_for(l, std::chrono::milliseconds(100), [&] { return watch_stop_; });
        const WritebackHealth h = cache_->writeback_health();
        if (h.failing && !failing)
            note("writeback to the backing device is failing: " + h.last_error +
                 " (retried with backoff; dirty data stays in the cache, client writes wait for "
                 "room once it is full)");
        else if (!h.failing && failing)
            note("writeback recovered after " + std::to_string(steps) + " failed attempt(s)");
        failing = h.failing;
        steps = h.failed_steps;
    }
}

CacheBackend::~CacheBackend() {
    // A front end that skipped close() (an error path) still must not leave threads running
    // over a destroyed cache. The Runtime goes first, then the cache, which closes itself (its
    // log calls note(), which needs options_: destroyed here, before the members).
    stop_watcher();
    runtime_.reset();
    cache_.reset();
}

void CacheBackend::start() {
    with_signals_blocked([&] {
        if (Status s = runtime_->start(); !s.ok())
            note("background work not started: " + s.to_string());
        watcher_ = std::thread([this] { watch_health(); });
    });
}

void CacheBackend::stop_watcher() {
    {
        std::lock_guard g(watch_mutex_);
        watch_stop_ = true;
    }
    watch_cv_.notify_all();
    if (watcher_.joinable()) watcher_.join();
}

Status CacheBackend::read(std::uint64_t off, std::span<std::byte> out) {
    if (out.empty()) return {};
    const std::uint64_t begin = off / kSector * kSector;
    const std::uint64_t end = (off + out.size() + kSector - 1) / kSector * kSector;
    if (begin == off && end == off + out.size()) return cache_->read(off, out);
    std::vector<std::byte> buf(end - begin);
    PCACHE_TRY(cache_->read(begin, buf));
    std::memcpy(out.data(), buf.data() + (off - begin), out.size());
    return {};
}

Status CacheBackend::write(std::uint64_t off, std::span<const std::byte> data, bool fua) {
    if (data.empty()) return fua ? flush() : Status{};
    if (off % kSector || data.size() % kSector) return write_unaligned(off, data, fua);
    Status s = runtime_->write_blocking(off, data, {.fua = fua}).status;
    if (s.code() == Errc::busy) runtime_->wake();
    return s;
}

Status CacheBackend::write_unaligned(std::uint64_t off, std::span<const std::byte> data, bool fua) {
    std::lock_guard g(rmw_mutex_);
    const std::uint64_t begin = off / kSector * kSector;
    const std::uint64_t end = (off + data.size() + kSector - 1) / kSector * kSector;
    std::vector<std::byte> buf(end - begin);
    const auto first = std::span<std::byte>(buf).first(kSector);
    const auto last = std::span<std::byte>(buf).last(kSector);
    if (begin != off) PCACHE_TRY(cache_->read(begin, first));
    if (end != off + data.size() && (end - kSector != begin || begin == off))
        PCACHE_TRY(cache_->read(end - kSector, last));
    std::memcpy(buf.data() + (off - begin), data.data(), data.size());
    return runtime_->write_blocking(begin, buf, {.fua = fua}).status;
}

Status CacheBackend::flush() { return runtime_->flush_blocking(); }

Status CacheBackend::close() {
    std::lock_guard g(close_mutex_);
    if (closed_) return {};
    closed_ = true;
    runtime_->stop();
    stop_watcher();
    // The state at shutdown decides, not history: a backing error that healed (writeback
    // retried and caught up) is not a failed shutdown; one still failing is.
    const WritebackHealth h = cache_->writeback_health();
    Status bg = runtime_->last_error();
    Status s = cache_->close();
    if (!s.ok()) return s.with_context("closing the cache");
    if (h.failing)
        return {Errc::io, "writeback to the backing device was still failing at shutdown (" +
                              h.last_error +
                              "); the dirty data is safe in the cache and is written back at the "
                              "next start"};
    // Device errors (io, no_space) are what writeback retries; healed, they are history.
    if (!bg.ok() && bg.code() != Errc::io && bg.code() != Errc::no_space)
        return bg.with_context("background writeback/GC failed earlier");
    return {};
}

std::string CacheBackend::describe() const {
    return "pcache cache on '" + options_.pmem_path + "' (" + std::to_string(pmem_->size()) +
           " B, " + std::to_string(cache_->n_segs()) + " segments, data_crc " +
           (options_.data_crc.value_or(false) ? "on" : "off") + ") over " + backing_->describe() +
           " (" + std::to_string(size_bytes()) + " B)";
}

}  // namespace pcache::serve
