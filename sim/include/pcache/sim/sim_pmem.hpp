// SimPmem: a PmemDevice that remembers what is merely visible and what is durable.
//
// FAULT MODEL (the contract is docs/crash-model.md; docs/simulator.md explains the design)
//  * Granularity: a store is split into aligned 8-byte words; a word never tears, so an aligned
//    store of <= 8 bytes is atomic and anything wider or misaligned may tear at 8-byte
//    boundaries. Durability is tracked per 64-byte line.
//  * x86 (default, ADR): ordinary stores to one line persist in program order, so after a crash
//    a line holds some prefix of its stores since its last durable point; lines are independent.
//    flush() (clwb) snapshots a line's stores so far; the snapshot becomes durable at the next
//    drain() (sfence). A store after the flush is not covered. Non-temporal stores are pending
//    until the next drain; before it any subset of their words may be durable.
//  * eadr: caches are persistent; the crash image is a program-order prefix of all cached
//    stores since the last drain; flush() is a no-op; non-temporal words as in x86.
//  * any: every pending word independently holds its durable value or any pending store's value
//    (stress; produces images no x86 machine can).
//  * unsafe_shutdown: like x86, but drain() makes nothing durable: even fenced lines may revert.
//    Recovery must detect this (it cannot survive it).
//  * Media errors: bad ranges make read() report Errc::io (tag must-detect). data() is not
//    checked, as a real load from a poisoned line would machine-check.
//
// REPRESENTATION: the CPU view is one anonymous mapping. Pending stores form an undo log
// (word, old value, new value, program order), so the durable image is the CPU view with the
// log undone, and a crash image is the CPU view with part of the log undone: no copy of the
// device is ever made. While a crash image is applied (see pmem_explorer.hpp) every word
// changed is journaled, so the image and whatever recovery wrote to it can be rolled back.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "pcache/pmem_device.hpp"
#include "pcache/sim/sim_common.hpp"

namespace pcache::sim {

enum class PmemMode { x86, eadr, any, unsafe_shutdown };

constexpr std::string_view pmem_mode_name(PmemMode m) noexcept {
    switch (m) {
        case PmemMode::x86:
            return "x86";
        case PmemMode::eadr:
            return "eadr";
        case PmemMode::any:
            return "any";
        case PmemMode::unsafe_shutdown:
            return "unsafe_shutdown";
    }
    return "?";
}
inline std::optional<PmemMode> parse_pmem_mode(std::string_view s) {
    for (PmemMode m : {PmemMode::x86, PmemMode::eadr, PmemMode::any, PmemMode::unsafe_shutdown})
        if (pmem_mode_name(m) == s) return m;
    return std::nullopt;
}

inline constexpr std::uint64_t kPmemLineBytes = 64;
inline constexpr std::uint64_t kPmemWordBytes = 8;

// One pending 8-byte word store: an undo-log entry.
struct PmemStore {
    std::uint64_t word_index = 0;  // byte offset / 8
    std::uint64_t old_value = 0;   // the word as the CPU saw it before this store
    std::uint64_t new_value = 0;
    std::uint64_t seq = 0;  // program order, strictly increasing along the log
    bool non_temporal = false;
    std::uint64_t line() const noexcept { return word_index * kPmemWordBytes / kPmemLineBytes; }
};

// Everything pending at one instant: what a crash explorer needs. Small: no device bytes.
struct CrashPoint {
    PmemMode mode = PmemMode::x86;
    std::vector<PmemStore> log;  // in program order
    std::uint64_t drains = 0;    // drains executed before the capture
    // (line, seq): cached stores of the line below seq were flushed, not yet fenced. A crash
    // image does not depend on them; they let a rolled-back device continue exactly.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> flush_marks;
};

struct SimPmemOptions {
    PmemMode mode = PmemMode::x86;
    bool protect_view = false;  // map the CPU view read-only except inside write()/apply
    std::uint64_t log_entries_max = std::uint64_t{1} << 24;  // bound on pending + journal words
    SimContext* context = nullptr;                           // trace and crash hook (optional)
};

class SimPmem {
public:
    explicit SimPmem(std::uint64_t size_bytes, SimPmemOptions options = {})
        : options_(options), size_bytes_(size_bytes) {
        PCACHE_SIM_ASSERT(size_bytes % kPmemLineBytes == 0);
        if (size_bytes_ == 0) return;
        const int prot = options_.protect_view ? PROT_READ : PROT_READ | PROT_WRITE;
        void* p =
            ::mmap(nullptr, size_bytes_, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        PCACHE_SIM_ASSERT(p != MAP_FAILED);
        base_ = static_cast<std::byte*>(p);
    }
    SimPmem(const SimPmem&) = delete;
    SimPmem& operator=(const SimPmem&) = delete;
    ~SimPmem() {
        if (base_ != nullptr) ::munmap(base_, size_bytes_);
    }

    // ---- the lane seam (pcache/sync.hpp): the simulated CPU a call runs on ----
    // The sequential simulator sets it from its seeded workload; nothing reads the real CPU.
    std::uint32_t current_cpu() const { return cpu_; }
    std::uint32_t cpu_count() const { return 1; }  // n_lanes = 0 gives one lane
    void set_cpu(std::uint32_t cpu) { cpu_ = cpu; }

    // ---- PmemDevice ----
    std::uint64_t size() const { return size_bytes_; }
    const std::byte* data() const { return base_; }

    Status write(std::uint64_t off, std::span<const std::byte> src, unsigned flags) {
        PCACHE_TRY(check_range("pmem write", off, src.size(), size_bytes_));
        const bool nt = (flags & kPmemNonTemporal) != 0;
        if (!src.empty()) {
            const std::uint64_t words =
                (off + src.size() - 1) / kPmemWordBytes - off / kPmemWordBytes + 1;
            if (log_.size() + journal_.size() + words > options_.log_entries_max)
                return {Errc::no_space, "sim pmem: undo log would exceed " +
                                            std::to_string(options_.log_entries_max) +
                                            " words; flush and drain more often"};
            if (context() != nullptr) context()->record(EventKind::pmem_write, off, src.size());
            Unprotect guard(*this, off, src.size());
            store_bytes(off, src, nt);
        }
        if (!nt && (flags & kPmemNoFlush) == 0) PCACHE_TRY(flush(off, src.size()));
        if ((flags & kPmemNoDrain) == 0) return drain();
        return {};
    }

    Status flush(std::uint64_t off, std::uint64_t len) {
        PCACHE_TRY(check_range("pmem flush", off, len, size_bytes_));
        if (len == 0 || options_.mode == PmemMode::eadr) return {};  // eADR: caches persist
        if (context() != nullptr) context()->record(EventKind::pmem_flush, off, len);
        ensure_lines();
        const std::uint64_t line_first = off / kPmemLineBytes;
        const std::uint64_t line_last = (off + len - 1) / kPmemLineBytes;
        // Only lines with pending stores are in the map, so the walk is bounded by the log.
        for (auto it = lines_.lower_bound(line_first); it != lines_.end() && it->first <= line_last;
             ++it)
            it->second.flushed_below_seq = next_seq_;
        return {};
    }

    Status drain() {
        if (context() != nullptr) context()->on_persist(EventKind::pmem_drain);  // may throw
        if (fail_drains_ > 0) {  // injected: the fence reports an error, nothing becomes durable
            --fail_drains_;
            return {Errc::io, "sim pmem: injected drain (persist) failure"};
        }
        ++drains_;
        if (options_.mode == PmemMode::unsafe_shutdown) return {};  // nothing is ever safe
        ensure_lines();
        const bool eadr = options_.mode == PmemMode::eadr;
        std::size_t kept = 0;
        for (std::size_t i = 0; i < log_.size(); ++i) {
            const PmemStore& s = log_[i];
            const bool durable =
                eadr || s.non_temporal || s.seq < lines_.at(s.line()).flushed_below_seq;
            if (!durable) log_[kept++] = s;  // survivors keep program order
        }
        log_.resize(kept);
        lines_valid_ = false;
        PCACHE_SIM_ASSERT(eadr ? log_.empty() : true);
        return {};
    }
    // Fault injection: the next `n` drains fail (as a failed msync would).
    void fail_next_drains(std::uint64_t n) { fail_drains_ = n; }

    Status read(std::uint64_t off, std::span<std::byte> dst) const {
        PCACHE_TRY(check_range("pmem read", off, dst.size(), size_bytes_));
        for (const auto& [bad_off, bad_len] : bad_ranges_)
            if (off < bad_off + bad_len && bad_off < off + dst.size())
                return {Errc::io, "pmem read [" + std::to_string(off) + ", +" +
                                      std::to_string(dst.size()) + "): media error (bad range at " +
                                      std::to_string(bad_off) + ", +" + std::to_string(bad_len) +
                                      ")"};
        if (!dst.empty()) std::memcpy(dst.data(), base_ + off, dst.size());
        return {};
    }

    // ---- simulator surface ----
    PmemMode mode() const { return options_.mode; }
    std::uint64_t pending_words() const { return log_.size(); }
    std::uint64_t drain_count() const { return drains_; }
    const std::vector<PmemStore>& pending_log() const { return log_; }
    CrashPoint capture() {
        ensure_lines();
        CrashPoint cp{options_.mode, log_, drains_, {}};
        for (const auto& [line, state] : lines_)
            if (state.flushed_below_seq != 0)
                cp.flush_marks.emplace_back(line, state.flushed_below_seq);
        return cp;
    }

    // Media errors (tag must-detect): reads overlapping a bad range fail with Errc::io.
    void add_bad_range(std::uint64_t off, std::uint64_t len) {
        PCACHE_SIM_ASSERT(check_range("bad range", off, len, size_bytes_).ok());
        PCACHE_SIM_ASSERT(bad_ranges_.size() < 4096);
        bad_ranges_.emplace_back(off, len);
    }
    void clear_bad_ranges() { bad_ranges_.clear(); }

    // The durable image of [off, off+len): the CPU view with the whole undo log undone.
    Status read_durable(std::uint64_t off, std::span<std::byte> dst) const {
        PCACHE_TRY(check_range("pmem read_durable", off, dst.size(), size_bytes_));
        if (!dst.empty()) std::memcpy(dst.data(), base_ + off, dst.size());
        for (std::size_t i = log_.size(); i-- > 0;)  // newest first: the oldest old_value wins
            patch_word(off, dst, log_[i].word_index, log_[i].old_value);
        return {};
    }

    // Makes every pending store durable (a clean shutdown; also ends unsafe_shutdown epochs).
    void mark_all_durable() {
        log_.clear();
        restore_marks_.clear();
        lines_valid_ = false;
    }

    // ---- used by PmemExplorer: apply an image, journal changes, roll back ----
    std::size_t begin_image() {
        PCACHE_SIM_ASSERT(journal_marks_.size() < 64);  // nesting depth of crash-in-recovery
        journal_marks_.push_back(journal_.size());
        set_writable(true);
        return journal_marks_.size();
    }
    void set_word(std::uint64_t word_index, std::uint64_t value) {
        PCACHE_SIM_ASSERT(word_index < size_bytes_ / kPmemWordBytes);
        const std::uint64_t old = load_word(word_index);
        if (!journal_marks_.empty()) journal_.emplace_back(word_index, old);
        std::memcpy(base_ + word_index * kPmemWordBytes, &value, sizeof value);
    }
    // After a crash image is in place: the CPU view is the durable image (a reboot).
    void end_image() {
        log_.clear();
        restore_marks_.clear();
        lines_valid_ = false;
        set_writable(false);
    }
    void rollback_image(std::size_t depth, const CrashPoint& cp) {
        PCACHE_SIM_ASSERT(depth == journal_marks_.size() && depth > 0);
        const std::size_t mark = journal_marks_.back();
        PCACHE_SIM_ASSERT(mark <= journal_.size());
        set_writable(true);
        for (std::size_t i = journal_.size(); i-- > mark;)
            std::memcpy(base_ + journal_[i].first * kPmemWordBytes, &journal_[i].second, 8);
        set_writable(false);
        journal_.resize(mark);
        journal_marks_.pop_back();
        log_ = cp.log;  // assignment reuses capacity: no allocation in the steady state
        drains_ = cp.drains;
        restore_marks_ = cp.flush_marks;
        lines_valid_ = false;
    }

    std::uint64_t load_word(std::uint64_t word_index) const {
        std::uint64_t v = 0;
        std::memcpy(&v, base_ + word_index * kPmemWordBytes, sizeof v);
        return v;
    }

private:
    struct LineState {
        std::uint64_t flushed_below_seq = 0;  // cached stores with seq below this are flushed
    };

    // Makes [off, off+len) writable for the duration of a write() when the view is protected.
    class Unprotect {
    public:
        Unprotect(SimPmem& p, std::uint64_t off, std::uint64_t len) : p_(p) {
            if (!p_.options_.protect_view || p_.writable_) return;
            const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
            first_ = off / page * page;
            len_ = (off + len + page - 1) / page * page - first_;
            PCACHE_SIM_ASSERT(::mprotect(p_.base_ + first_, len_, PROT_READ | PROT_WRITE) == 0);
        }
        ~Unprotect() {
            if (len_ != 0) PCACHE_SIM_ASSERT(::mprotect(p_.base_ + first_, len_, PROT_READ) == 0);
        }
        Unprotect(const Unprotect&) = delete;
        Unprotect& operator=(const Unprotect&) = delete;

    private:
        SimPmem& p_;
        std::uint64_t first_ = 0;
        std::uint64_t len_ = 0;
    };

    SimContext* context() const { return options_.context; }
    std::uint32_t cpu_ = 0;

    void set_writable(bool writable) {
        if (!options_.protect_view || base_ == nullptr || writable_ == writable) return;
        const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
        PCACHE_SIM_ASSERT(::mprotect(base_, size_bytes_, prot) == 0);
        writable_ = writable;
    }

    // Splits the store into words; logs each word whose value changes.
    void store_bytes(std::uint64_t off, std::span<const std::byte> src, bool nt) {
        const std::uint64_t word_first = off / kPmemWordBytes;
        const std::uint64_t word_last = (off + src.size() - 1) / kPmemWordBytes;
        ensure_lines();
        for (std::uint64_t w = word_first; w <= word_last; ++w) {
            const std::uint64_t old = load_word(w);
            std::byte bytes[kPmemWordBytes];
            std::memcpy(bytes, &old, sizeof bytes);
            const std::uint64_t lo = std::max(off, w * kPmemWordBytes);
            const std::uint64_t hi = std::min(off + src.size(), (w + 1) * kPmemWordBytes);
            std::memcpy(bytes + (lo - w * kPmemWordBytes), src.data() + (lo - off), hi - lo);
            std::uint64_t value = 0;
            std::memcpy(&value, bytes, sizeof value);
            if (value == old) continue;  // an identical store adds no new image
            log_.push_back(PmemStore{w, old, value, next_seq_++, nt});
            if (!nt) lines_.try_emplace(log_.back().line());
            if (!journal_marks_.empty()) journal_.emplace_back(w, old);
            std::memcpy(base_ + w * kPmemWordBytes, &value, sizeof value);
        }
        PCACHE_SIM_ASSERT(log_.size() + journal_.size() <= options_.log_entries_max);
    }

    // The line map is derived from the log; it is rebuilt lazily after drains and rollbacks
    // (cheap rollback matters more than the occasional rebuild).
    void ensure_lines() {
        if (lines_valid_) return;
        lines_.clear();
        for (const PmemStore& s : log_)
            if (!s.non_temporal) lines_.try_emplace(s.line());
        for (const auto& [line, seq] : restore_marks_) {
            auto it = lines_.find(line);
            if (it != lines_.end()) it->second.flushed_below_seq = seq;
        }
        restore_marks_.clear();
        lines_valid_ = true;
    }

    static void patch_word(std::uint64_t off, std::span<std::byte> dst, std::uint64_t word_index,
                           std::uint64_t value) {
        const std::uint64_t w_off = word_index * kPmemWordBytes;
        const std::uint64_t lo = std::max(off, w_off);
        const std::uint64_t hi = std::min(off + dst.size(), w_off + kPmemWordBytes);
        if (lo >= hi) return;
        std::byte bytes[kPmemWordBytes];
        std::memcpy(bytes, &value, sizeof bytes);
        std::memcpy(dst.data() + (lo - off), bytes + (lo - w_off), hi - lo);
    }

    SimPmemOptions options_;
    std::uint64_t size_bytes_ = 0;
    std::byte* base_ = nullptr;
    bool writable_ = false;
    std::vector<PmemStore> log_;
    std::map<std::uint64_t, LineState> lines_;  // lines with pending cached stores
    bool lines_valid_ = true;
    std::uint64_t next_seq_ = 1;
    std::uint64_t drains_ = 0;
    std::uint64_t fail_drains_ = 0;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> bad_ranges_;     // (offset, bytes)
    std::vector<std::pair<std::uint64_t, std::uint64_t>> journal_;        // (word, old value)
    std::vector<std::pair<std::uint64_t, std::uint64_t>> restore_marks_;  // see CrashPoint
    std::vector<std::size_t> journal_marks_;
};
static_assert(PmemDevice<SimPmem>);

}  // namespace pcache::sim
