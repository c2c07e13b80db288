// Must-detect faults and controls of the crash suite (crash-model.md).
//
// Corruption helpers write CRC-valid but impossible metadata into a clean image, then reopen:
// recovery must refuse it with Errc::corrupt. They return an exit code because the suite runs
// them in a child process (a replay that never ends, or that crashes, must not take the test
// binary with it): 0 refused as corrupt, 1 accepted, 2 refused with another error.
// Controls are small correct protocols checked on every crash image; they return "" or why not.
#pragma once

#include <string>
#include <vector>

#include "pcache/cache/cache.hpp"
#include "pcache/sim/oracle.hpp"
#include "pcache/sim/pmem_explorer.hpp"
#include "pcache/sim/sim_block_device.hpp"

namespace pcache::sim::testutil {

using SimCache = Cache<SimPmem, SimBlockDevice>;

inline CacheOptions corruption_options() {
    CacheOptions o;
    o.geometry.segment_bytes = 64 << 10;
    o.close_on_destroy = false;  // a dropped cache is a power cut
    return o;
}
constexpr std::uint32_t kCorruptionSegs = 6;
constexpr std::uint64_t kCorruptionBackingBytes = 1 << 20;

inline std::string corruption_verdict(int rc) {
    switch (rc) {
        case 0:
            return "refused as corrupt";
        case 1:
            return "ACCEPTED a corrupt image";
        case 2:
            return "refused with the wrong error";
        case 100:
            return "recovery CRASHED on a corrupt image";
        case 101:
            return "recovery HUNG on a corrupt image";
        default:
            return "unexpected exit " + std::to_string(rc);
    }
}

// The verdict marker scripts/mutants.sh counts: a corrupt image accepted, refused with the wrong
// error, or recovery crashing or hanging on it in the isolated child is a detection; a setup that
// failed before the corruption was written (3) is not.
inline const char* detect_marker(int rc) { return rc == 3 ? "SETUP FAILED: " : "DETECTED: "; }

// A clean image with one kset of one key (4 KiB at offset 0) at the start of cache segment 0.
struct CleanImage {
    SimPmem pmem{format::kSegmentsOffsetBytes + kCorruptionSegs * (64 << 10)};
    SimBlockDevice disk{kCorruptionBackingBytes};
    bool ok = false;
    CleanImage() {
        auto c = SimCache::format(borrow(pmem), borrow(disk), corruption_options());
        if (!c.ok()) return;
        std::vector<std::byte> data(4096, std::byte{0x5A});
        ok = (*c)->write(0, data).ok() && (*c)->close().ok();
    }
    std::uint64_t first_kset() const { return corruption_options().geometry.data_offset(0); }
    int reopen_verdict() {
        auto c = SimCache::open(borrow(pmem), borrow(disk), corruption_options());
        if (c.ok()) return 1;
        return c.code() == Errc::corrupt ? 0 : 2;
    }
};

enum class KeyCorruption { seg_off_past_data_area, off_past_backing, zero_len };

inline int open_with_corrupt_key(KeyCorruption kind) {
    CleanImage img;
    if (!img.ok) return 3;
    std::vector<std::byte> kset(format::kset_bytes(1));
    (void)img.pmem.read(img.first_kset(), kset);
    auto key = format::load<format::KeyOnMedia>(kset, format::kKsetHeaderBytes);
    const std::uint64_t seg_data_bytes = corruption_options().geometry.seg_data_bytes();
    switch (kind) {
        case KeyCorruption::seg_off_past_data_area:
            key.cache_seg_off = static_cast<std::uint32_t>(seg_data_bytes - 512);
            break;
        case KeyCorruption::off_past_backing:
            key.off = std::uint64_t{1} << 40;
            break;
        case KeyCorruption::zero_len:
            key.len = 0;
            break;
    }
    std::memcpy(kset.data() + format::kKsetHeaderBytes, &key, sizeof key);
    format::seal_kset(kset);  // CRC-valid: only the key's meaning is wrong
    if (!img.pmem.write(img.first_kset(), kset, 0).ok()) return 3;
    return img.reopen_verdict();
}

// A LAST kset right after the first kset, leading back to its own segment.
inline int open_with_chain_cycle() {
    CleanImage img;
    if (!img.ok) return 3;
    const auto last = format::to_bytes(format::make_last_kset(0));
    if (!img.pmem.write(img.first_kset() + format::kset_bytes(1), last, 0).ok()) return 3;
    return img.reopen_verdict();
}

// Every crash image of the pending stores of `pmem`, checked by `ok(pmem)`.
template <class Check>
std::string every_image(SimPmem& pmem, Check&& ok) {
    PmemExplorer ex(pmem, pmem.capture(), {.seed = 1});
    for (std::uint64_t s = 0; s < ex.state_count(); ++s) {
        ex.apply(s);
        std::string why = ok(pmem);
        ex.rollback();
        if (!why.empty()) return why + " (image " + std::to_string(s) + ")";
    }
    return {};
}

inline std::uint64_t word_at(const SimPmem& p, std::uint64_t off) {
    std::uint64_t w = 0;
    std::memcpy(&w, p.data() + off, 8);
    return w;
}

// Payload (7 words) and valid flag in one line, cached stores, one flush + fence: x86 keeps a
// per-line prefix, so a set flag implies the whole payload.
inline std::string control_same_line(PmemMode mode) {
    SimPmem pmem(4096, {.mode = mode});
    std::vector<std::uint64_t> payload{11, 12, 13, 14, 15, 16, 17};
    const std::uint64_t flag = 1;
    (void)pmem.write(0, std::as_bytes(std::span(payload)), kPmemNoFlush | kPmemNoDrain);
    (void)pmem.write(56, std::as_bytes(std::span(&flag, 1)), kPmemNoFlush | kPmemNoDrain);
    (void)pmem.flush(0, 64);
    return every_image(pmem, [&](const SimPmem& p) -> std::string {
        if (word_at(p, 56) != 1) return {};
        for (std::uint64_t i = 0; i < 7; ++i)
            if (word_at(p, i * 8) != payload[i])
                return "flag set, payload word " + std::to_string(i) + " missing";
        return {};
    });
}

// Payload in two lines, fenced; then an aligned 8-byte commit word (non-temporal): in every
// mode the word is old or new, never torn, and new implies the payload.
inline std::string control_commit_word(PmemMode mode) {
    SimPmem pmem(4096, {.mode = mode});
    std::vector<std::uint64_t> payload(16, 0xABCDull);
    (void)pmem.write(64, std::as_bytes(std::span(payload)), kPmemFlushCache);
    PCACHE_SIM_ASSERT(pmem.drain().ok());
    const std::uint64_t commit = 0x1122334455667788ull;
    (void)pmem.write(0, std::as_bytes(std::span(&commit, 1)), kPmemFlushCache);
    return every_image(pmem, [&](const SimPmem& p) -> std::string {
        const std::uint64_t w = word_at(p, 0);
        if (w != 0 && w != commit) return "commit word torn";
        if (w == commit && word_at(p, 64 + 15 * 8) != 0xABCDull) return "commit without payload";
        return {};
    });
}

// eADR: no flush at all, fences only. The payload is fenced before the flag is stored.
inline std::string control_eadr_no_flush() {
    SimPmem pmem(4096, {.mode = PmemMode::eadr});
    std::vector<std::uint64_t> payload(24, 0x77ull);
    (void)pmem.write(128, std::as_bytes(std::span(payload)), kPmemNoFlush | kPmemNoDrain);
    const std::uint64_t flag = 1;
    (void)pmem.write(0, std::as_bytes(std::span(&flag, 1)), kPmemNoFlush | kPmemNoDrain);
    // Before any fence: program-order prefixes, so the flag never precedes the payload.
    std::string why = every_image(pmem, [&](const SimPmem& p) -> std::string {
        if (word_at(p, 0) == 1 && word_at(p, 128 + 23 * 8) != 0x77ull)
            return "eadr: flag before payload";
        return {};
    });
    if (!why.empty()) return why;
    PCACHE_SIM_ASSERT(pmem.drain().ok());
    if (pmem.pending_words() != 0) return "eadr: a fence left stores pending";
    return {};
}

}  // namespace pcache::sim::testutil
