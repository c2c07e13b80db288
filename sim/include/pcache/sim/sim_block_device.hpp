// SimBlockDevice: a BlockDevice with a volatile write cache and injectable faults.
//
// FAULT MODEL (docs/crash-model.md, "Block device")
//  * Volatile cache (must-survive): a completed write not yet covered by a completed flush()
//    may be lost at a crash, in any subset of writes; a FUA write is durable on completion.
//    With BlockExploreOptions::tear_writes a pending write may also tear at 512-byte sector
//    granularity (some sectors of a 4 KiB write persist, others not): still must-survive.
//  * Armed faults, triggered by the write's ordinal (1-based count of write() calls):
//      lost_write        - reported complete, never stored (must-detect)
//      misdirected_write - stored at another sector, the target left untouched (must-detect)
//      torn_write        - only the sectors in a mask are stored, even after flush (must-detect)
//  * Immediate faults: unreadable_sector makes reads of a sector range fail with Errc::io
//    (must-detect: report the error, never return data); bit_flip flips one stored bit
//    (must-detect where data_crc covers it).
// Reads return the newest write (the device's own cache is coherent). flush() calls the
// context's crash hook before it takes effect (sim_common.hpp).
//
// REPRESENTATION: one byte vector is the current view; pending (unflushed, non-FUA) sector
// writes form an undo log with each sector's previous content, so the durable image and every
// crash image are the current view with part of the log undone. Changes made while a crash
// image is applied are journaled per sector for rollback (block_explorer.hpp).
#pragma once

#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "pcache/block_device.hpp"
#include "pcache/sim/sim_common.hpp"

namespace pcache::sim {

using Sector = std::array<std::byte, kBlockSectorBytes>;

enum class BlockFaultKind {
    lost_write,
    misdirected_write,
    torn_write,
    unreadable_sector,
    bit_flip
};
constexpr std::string_view block_fault_name(BlockFaultKind k) noexcept {
    switch (k) {
        case BlockFaultKind::lost_write:
            return "lost_write";
        case BlockFaultKind::misdirected_write:
            return "misdirected_write";
        case BlockFaultKind::torn_write:
            return "torn_write";
        case BlockFaultKind::unreadable_sector:
            return "unreadable_sector";
        case BlockFaultKind::bit_flip:
            return "bit_flip";
    }
    return "?";
}

struct BlockFault {
    BlockFaultKind kind = BlockFaultKind::lost_write;
    FaultTag tag = FaultTag::must_detect;
    std::uint64_t write_ordinal = 0;  // armed write faults: which write() it hits
    std::uint64_t sector = 0;         // unreadable: first sector; bit_flip: the sector
    std::uint64_t sector_count = 1;   // unreadable: how many
    std::uint64_t target_sector = 0;  // misdirected: where the data lands instead
    std::uint64_t sector_mask = 0;    // torn: bit i set = sector i of the write is stored
    std::uint32_t bit = 0;            // bit_flip: bit index within the sector
    bool triggered = false;
};

// One pending sector write: an undo-log entry.
struct BlockStore {
    std::uint64_t sector = 0;
    std::uint64_t write_id = 0;  // the write() it belongs to: lost as a whole unless torn
    Sector old_data{};
    Sector new_data{};
};

struct BlockCrashPoint {
    std::vector<BlockStore> log;  // in completion order
    std::uint64_t flushes = 0;
};

struct SimBlockOptions {
    std::uint64_t pending_sectors_max = std::uint64_t{1} << 18;  // 128 MiB of unflushed data
    SimContext* context = nullptr;
};

class SimBlockDevice {
public:
    explicit SimBlockDevice(std::uint64_t size_bytes, SimBlockOptions options = {})
        : options_(options), bytes_(size_bytes) {
        PCACHE_SIM_ASSERT(size_bytes % kBlockSectorBytes == 0);
        PCACHE_SIM_ASSERT(options_.pending_sectors_max > 0);
    }

    // ---- BlockDevice ----
    std::uint64_t size() const { return bytes_.size(); }

    Status read(std::uint64_t off, std::span<std::byte> dst) {
        PCACHE_TRY(check_block_io("block read", off, dst.size(), size()));
        for (const BlockFault& f : faults_) {
            if (f.kind != BlockFaultKind::unreadable_sector) continue;
            const std::uint64_t first = off / kBlockSectorBytes;
            const std::uint64_t end = first + dst.size() / kBlockSectorBytes;
            if (first < f.sector + f.sector_count && f.sector < end)
                return {Errc::io, "block read [" + std::to_string(off) + ", +" +
                                      std::to_string(dst.size()) + "): unreadable sector " +
                                      std::to_string(f.sector) + " (injected)"};
        }
        if (!dst.empty()) std::memcpy(dst.data(), bytes_.data() + off, dst.size());
        return {};
    }

    Status write(std::uint64_t off, std::span<const std::byte> src, bool fua) {
        PCACHE_TRY(check_block_io("block write", off, src.size(), size()));
        if (failing_writes_ > 0) {  // backing EIO: transient (a count) or permanent (~0)
            if (failing_writes_ != ~std::uint64_t{0}) --failing_writes_;
            ++failed_writes_;
            return {Errc::io, "block write [" + std::to_string(off) + ", +" +
                                  std::to_string(src.size()) + "): EIO (injected)"};
        }
        const std::uint64_t sectors = src.size() / kBlockSectorBytes;
        if (!fua && log_.size() + sectors > options_.pending_sectors_max)
            return {Errc::no_space, "sim block: more than " +
                                        std::to_string(options_.pending_sectors_max) +
                                        " unflushed sectors; flush more often"};
        const std::uint64_t ordinal = ++writes_;
        if (options_.context != nullptr)
            options_.context->record(EventKind::block_write, off,
                                     src.size() | (fua ? 1ull << 63 : 0));
        std::uint64_t first_sector = off / kBlockSectorBytes;
        std::uint64_t mask = ~std::uint64_t{0};
        for (BlockFault& f : faults_) {
            if (f.write_ordinal != ordinal || f.triggered) continue;
            f.triggered = true;
            if (f.kind == BlockFaultKind::lost_write) return {};  // acknowledged, never stored
            if (f.kind == BlockFaultKind::misdirected_write) first_sector = f.target_sector;
            if (f.kind == BlockFaultKind::torn_write) mask = f.sector_mask;
        }
        if (first_sector + sectors > size() / kBlockSectorBytes) return {};  // misdirected away
        for (std::uint64_t i = 0; i < sectors; ++i) {
            if (i < 64 && ((mask >> i) & 1) == 0) continue;  // torn: this sector never lands
            Sector data;
            std::memcpy(data.data(), src.data() + i * kBlockSectorBytes, kBlockSectorBytes);
            store_sector(first_sector + i, data, fua ? 0 : ordinal);
        }
        return {};
    }

    Status flush() {
        if (options_.context != nullptr) options_.context->on_persist(EventKind::block_flush);
        ++flushes_;
        log_.clear();  // everything completed before the flush is now durable
        return {};
    }

    // ---- simulator surface ----
    std::uint64_t pending_sectors() const { return log_.size(); }
    std::uint64_t flush_count() const { return flushes_; }
    std::uint64_t write_count() const { return writes_; }
    BlockCrashPoint capture() const { return BlockCrashPoint{log_, flushes_}; }
    const std::vector<BlockFault>& faults() const { return faults_; }

    // Arms a write fault (lost, misdirected, torn) for the write with fault.write_ordinal.
    void arm(BlockFault fault) {
        PCACHE_SIM_ASSERT(fault.kind == BlockFaultKind::lost_write ||
                          fault.kind == BlockFaultKind::misdirected_write ||
                          fault.kind == BlockFaultKind::torn_write);
        PCACHE_SIM_ASSERT(fault.write_ordinal > writes_ && faults_.size() < 4096);
        faults_.push_back(fault);
    }
    void make_unreadable(std::uint64_t sector, std::uint64_t sector_count) {
        PCACHE_SIM_ASSERT((sector + sector_count) * kBlockSectorBytes <= size());
        PCACHE_SIM_ASSERT(faults_.size() < 4096);
        faults_.push_back(BlockFault{.kind = BlockFaultKind::unreadable_sector,
                                     .sector = sector,
                                     .sector_count = sector_count,
                                     .triggered = true});
    }
    // Flips one bit of the stored sector (current view and durable image alike).
    void flip_bit(std::uint64_t sector, std::uint32_t bit) {
        PCACHE_SIM_ASSERT(sector < size() / kBlockSectorBytes && bit < kBlockSectorBytes * 8);
        PCACHE_SIM_ASSERT(faults_.size() < 4096);
        faults_.push_back(BlockFault{
            .kind = BlockFaultKind::bit_flip, .sector = sector, .bit = bit, .triggered = true});
        journal_sector(sector);
        bytes_[sector * kBlockSectorBytes + bit / 8] ^= std::byte(1u << (bit % 8));
        for (BlockStore& s : log_)  // the flip hits the medium, whichever version lands
            if (s.sector == sector) s.old_data[bit / 8] ^= std::byte(1u << (bit % 8));
    }
    void clear_faults() { faults_.clear(); }
    // Backing EIO on write (must-survive when transient: nothing acknowledged may be lost):
    // the next `count` writes fail with Errc::io; ~0 fails every write until set to 0.
    void fail_writes(std::uint64_t count) { failing_writes_ = count; }
    std::uint64_t failed_writes() const { return failed_writes_; }

    // The durable image of [off, off+len): the current view with the pending log undone.
    Status read_durable(std::uint64_t off, std::span<std::byte> dst) const {
        PCACHE_TRY(check_block_io("block read_durable", off, dst.size(), size()));
        if (!dst.empty()) std::memcpy(dst.data(), bytes_.data() + off, dst.size());
        for (std::size_t i = log_.size(); i-- > 0;) {  // newest first: oldest old_data wins
            const std::uint64_t s_off = log_[i].sector * kBlockSectorBytes;
            if (s_off >= off && s_off < off + dst.size())
                std::memcpy(dst.data() + (s_off - off), log_[i].old_data.data(), kBlockSectorBytes);
        }
        return {};
    }
    const std::vector<std::byte>& current_bytes() const { return bytes_; }

    // ---- used by BlockExplorer ----
    std::size_t begin_image() {
        PCACHE_SIM_ASSERT(journal_marks_.size() < 64);
        journal_marks_.push_back(journal_.size());
        return journal_marks_.size();
    }
    void set_sector(std::uint64_t sector, const Sector& data) {
        PCACHE_SIM_ASSERT(sector < size() / kBlockSectorBytes);
        journal_sector(sector);
        std::memcpy(bytes_.data() + sector * kBlockSectorBytes, data.data(), kBlockSectorBytes);
    }
    void end_image() { log_.clear(); }
    void rollback_image(std::size_t depth, const BlockCrashPoint& cp) {
        PCACHE_SIM_ASSERT(depth == journal_marks_.size() && depth > 0);
        const std::size_t mark = journal_marks_.back();
        for (std::size_t i = journal_.size(); i-- > mark;)
            std::memcpy(bytes_.data() + journal_[i].first * kBlockSectorBytes,
                        journal_[i].second.data(), kBlockSectorBytes);
        journal_.resize(mark);
        journal_marks_.pop_back();
        log_ = cp.log;
        flushes_ = cp.flushes;
        PCACHE_SIM_ASSERT(journal_.size() == mark);
    }

private:
    void journal_sector(std::uint64_t sector) {
        if (journal_marks_.empty()) return;
        Sector old;
        std::memcpy(old.data(), bytes_.data() + sector * kBlockSectorBytes, kBlockSectorBytes);
        journal_.emplace_back(sector, old);
    }

    // write_id 0 = FUA: durable now, and it supersedes pending writes of the same sector.
    void store_sector(std::uint64_t sector, const Sector& data, std::uint64_t write_id) {
        std::byte* dst = bytes_.data() + sector * kBlockSectorBytes;
        if (write_id == 0) {
            std::size_t kept = 0;
            for (std::size_t i = 0; i < log_.size(); ++i)
                if (log_[i].sector != sector) log_[kept++] = log_[i];
            log_.resize(kept);
        } else {
            BlockStore s{sector, write_id, {}, data};
            std::memcpy(s.old_data.data(), dst, kBlockSectorBytes);
            log_.push_back(s);
        }
        journal_sector(sector);
        std::memcpy(dst, data.data(), kBlockSectorBytes);
        PCACHE_SIM_ASSERT(log_.size() <= options_.pending_sectors_max);
    }

    SimBlockOptions options_;
    std::vector<std::byte> bytes_;
    std::vector<BlockStore> log_;
    std::vector<BlockFault> faults_;
    std::uint64_t writes_ = 0;
    std::uint64_t flushes_ = 0;
    std::uint64_t failing_writes_ = 0, failed_writes_ = 0;
    std::vector<std::pair<std::uint64_t, Sector>> journal_;  // (sector, previous content)
    std::vector<std::size_t> journal_marks_;
};
static_assert(BlockDevice<SimBlockDevice>);

}  // namespace pcache::sim
