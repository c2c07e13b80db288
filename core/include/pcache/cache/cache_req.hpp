// The request path: write, read, flush, close [cache_req.c, dm_pcache.c].
//
// Requests are cut at 4 MiB subtree boundaries. A write piece gets space in its lane's data
// head, its bytes are copied to pmem and fenced before its key exists anywhere, then, under the
// subtree lock, the key is appended to its lane's kset buffer and inserted into the subtree. A read
// piece looks its keys up one at a time under the subtree lock and moves bytes without it: bytes
// held by a key come from pmem (CRC-checked when data_crc is on) under the segment's read lock,
// the gaps from the backing device, optionally filled into the cache as CLEAN keys when no
// write entered the subtree meanwhile (docs/design.md "Reads").
#pragma once

#include <array>

#include "pcache/cache/cache.hpp"

namespace pcache {

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::check_io(const char* what, std::uint64_t off, std::uint64_t len) const {
    if (len == 0 || off % format::kSectorBytes || len % format::kSectorBytes)
        return {Errc::invalid_argument, std::string(what) + " [" + std::to_string(off) + ", +" +
                                            std::to_string(len) +
                                            "): expected a non-empty 512-byte aligned range"};
    if (off > backing_bytes_ || len > backing_bytes_ - off)
        return {Errc::invalid_argument, std::string(what) + " [" + std::to_string(off) + ", +" +
                                            std::to_string(len) + ") is beyond the device (" +
                                            std::to_string(backing_bytes_) + " B)"};
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
WriteResult Cache<Pmem, Block>::write(std::uint64_t off, std::span<const std::byte> data,
                                      WriteOptions wo) {
    std::uint64_t done = 0;
    if (Status s = refuse_read_only("write"); !s.ok()) return {s, 0};
    if (Status s = check_io("write", off, data.size()); !s.ok()) return {s, 0};
    const std::uint32_t lane = pick_lane(wo.lane);
    while (done < data.size()) {
        const std::uint64_t at = off + done;
        const std::uint64_t piece = std::min<std::uint64_t>(
            data.size() - done, format::kSubtreeBytes - (at & format::kSubtreeMask));
        std::uint32_t written = 0;
        Status st = write_piece(at, data.subspan(done, piece), wo.fua, lane, written);
        if (!st.ok()) {
            if (st.code() == Errc::busy) {
                count(lanes_[lane], &CacheCounters::busy_returns);
                wake_background(true, lane);  // full: writeback and GC now, not at the next timer
                if (std::string note = writeback_failing_note(); !note.empty())
                    return {Status(Errc::busy, st.message() + note), done};
            }
            return {st, done};
        }
        assert(written > 0 && written <= piece);
        done += written;
    }
    wake_background(false, lane);  // above the high mark: once until writeback re-arms
    return {Status(), done};
}

// Copies `bytes` to key's space and fences them: durable before any key can point to them.
// With data_crc, the CRC of the source (in L1 after the copy) goes into the key while the
// copy's stores drain.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::store_data(CacheKey& key, std::span<const std::byte> bytes,
                                      unsigned flags) {
    Status s = pmem_.write(data_addr(key.seg, key.seg_off), bytes, flags);
    if (s.ok() && opts_.data_crc) key.data_crc = crc::kcrc(bytes.data(), bytes.size());
    if (s.ok()) s = pmem_.drain();
    return s;
}

// Writes a prefix of `data` (at most to the end of the lane's data head segment).
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::write_piece(std::uint64_t off, std::span<const std::byte> data, bool fua,
                                       std::uint32_t lane, std::uint32_t& written) {
    auto a = data_alloc(lane, static_cast<std::uint32_t>(data.size()));
    if (!a.ok()) return a.status();
    const auto bytes = data.first(a->len);
    CacheKey key{off, a->len, 0, a->seg, a->off, a->gen, 0, false};
    // M1: cached copy, never flushed, before the key points to it
    Status ws = store_data(key, bytes, mutant(1) ? kPmemNoFlush | kPmemNoDrain : kPmemFlushCache);
    if (!ws.ok()) {  // no key will point to the space: give it back
        seg_put(a->seg);
        return ws;
    }
    count(lanes_[lane], &CacheCounters::pmem_written_bytes, a->len);
    CacheSubtree& st = subtree_for(off);
    bool appended = false;
    Status s = verify_key(key);
    if (s.ok()) {
        std::lock_guard g(st.mutex);
        s = insert_and_append(st, lane, key, fua, false, appended);
    }
    if (!s.ok()) {
        // Busy before the key was buffered: give the space back. A buffered key whose forced
        // close failed keeps its reference (it is valid, just not durable yet).
        if (!appended) seg_put(key.seg);
        return s;
    }
    written = a->len;
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::read(std::uint64_t off, std::span<std::byte> out) {
    PCACHE_TRY(check_io("read", off, out.size()));
    std::uint64_t done = 0;
    while (done < out.size()) {
        const std::uint64_t at = off + done;
        const std::uint64_t piece = std::min<std::uint64_t>(
            out.size() - done, format::kSubtreeBytes - (at & format::kSubtreeMask));
        PCACHE_TRY(read_piece(at, out.subspan(done, piece)));
        done += piece;
    }
    return {};
}

// Copies [from, from + out.size()) of key k. With data_crc the whole key is verified first.
// Called with the subtree lock held (the lookup's); takes the segment's read lock, checks the
// generation and lets the subtree lock go: the copy runs under the read lock alone, so the
// segment cannot be invalidated (and reused) during it, and writers and other readers of the
// subtree do not wait for it. A key found stale sets `stale` and copies nothing.
template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::read_from_key(Lane& shard, const CacheKey& k, std::uint64_t from,
                                         std::span<std::byte> out, std::unique_lock<Mutex>& subtree,
                                         bool& stale) {
    assert(from >= k.off && from + out.size() <= k.end());
    std::shared_lock rl(segs_[k.seg].read_mutex);
    stale = !mutant(17) && key_is_stale(k);  // M17: no generation check before the copy
    subtree.unlock();
    if (stale) return {};
    auto crc_error = [&] {
        count(shard, &CacheCounters::data_crc_errors);
        return Status(Errc::data_crc, "cached data for [" + std::to_string(k.off) + ", +" +
                                          std::to_string(k.len) +
                                          ") fails its CRC: refusing to return it");
    };
    if (k.crc_bad) return crc_error();
    if (opts_.data_crc) {
        // One pass over the key in stack-sized chunks: each chunk is read once, fed to the CRC,
        // and its part of [from, from + out.size()) copied out. No heap buffer and no second
        // copy (issue 9: a 4 KiB read of a 64 KiB key did both). On a mismatch the read fails
        // and `out` is unspecified, as after any failed read.
        std::array<std::byte, 16384> chunk;
        std::uint32_t crc = format::kCrcSeed;
        for (std::uint64_t at = k.off; at < k.end();) {
            const auto n =
                static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), k.end() - at));
            const auto part = std::span(chunk).first(n);
            PCACHE_TRY(pmem_.read(
                data_addr(k.seg, k.seg_off + static_cast<std::uint32_t>(at - k.off)), part));
            crc = crc::update(crc, part.data(), n);
            const std::uint64_t lo = std::max(at, from), hi = std::min(at + n, from + out.size());
            if (lo < hi) std::memcpy(out.data() + (lo - from), part.data() + (lo - at), hi - lo);
            at += n;
        }
        if (crc != k.data_crc) {
            std::memset(out.data(), 0, out.size());  // none of the unverified bytes stays behind
            return crc_error();
        }
    } else {
        PCACHE_TRY(pmem_.read(
            data_addr(k.seg, k.seg_off + static_cast<std::uint32_t>(from - k.off)), out));
    }
    count(shard, &CacheCounters::pmem_read_bytes, out.size());
    return {};
}

// Key by key from a cursor: one lookup under the subtree lock, then the bytes move without it
// (docs/design.md "Reads"). Nothing is collected, so nothing is allocated.
//   - A key at the cursor: its segment is pinned (read lock) before the subtree lock goes, so
//     the copy never sees the segment reused. GC reclaims segments before it takes subtree
//     locks to remove their keys, so the key may be stale by then: nothing is copied, and the
//     next lookup drops it and finds the bytes on the backing device (GC only reclaims
//     written-back keys; "Reads under GC").
//   - A gap: read from the backing device without the lock, so a slow backing device (NBD,
//     RBD) does not hold up writes to the subtree. The bytes count only if no write entered
//     the subtree meanwhile (`writes`): a key written since may cover part of the gap, and
//     writeback may even have been writing it to the backing device under the read (a torn
//     sector). Then the piece is looked up again from the cursor and the gap read again, this
//     time under the lock (one unlocked try per gap: progress whatever the writers do). Only
//     such bytes are filled: an older fill must never replace a newer write.
inline constexpr unsigned kReadWalksMax = 16;

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::read_piece(std::uint64_t off, std::span<std::byte> out) {
    const std::uint64_t end = off + out.size();
    CacheSubtree& st = subtree_for(off);
    const std::uint32_t lane = pick_lane(kAutoLane);  // fills and the counts of this read
    Lane& shard = lanes_[lane];
    std::unique_lock g(st.mutex);
    if (const auto* p = st.poisoned(off, end))
        return {Errc::io, "read [" + std::to_string(off) + ", +" + std::to_string(out.size()) +
                              "): [" + std::to_string(p->first) + ", " +
                              std::to_string(p->second.end) + ") " + p->second.why};
    auto stale_now = [this](const CacheKey& k) { return key_is_stale(k); };
    std::uint64_t cursor = off;
    bool missed = false;
    bool gap_locked = false;  // the unlocked backing read of this gap was overtaken by a write
    unsigned walk = 1;
    while (cursor < end) {
        if (!g.owns_lock()) g.lock();
        CacheKey k;
        const bool found = st.first_overlap(cursor, end, stale_now, &k);
        if (!found || k.off > cursor) {  // a gap: [cursor, the next key or the end)
            const std::uint64_t to = found ? k.off : end;
            const std::uint64_t writes = st.writes;
            if (!gap_locked) g.unlock();
            const auto dst = out.subspan(cursor - off, to - cursor);
            PCACHE_TRY(backing_.read(cursor, dst));
            count(shard, &CacheCounters::backing_read_bytes, dst.size());
            if (!g.owns_lock()) g.lock();
            // M34: the bytes of an unlocked backing read are kept (and filled) even when a
            // write entered the subtree during it
            if (st.writes != writes && !mutant(34)) {
                count(shard, &CacheCounters::read_miss_rereads);
                gap_locked = true;
                continue;
            }
            gap_locked = false;
            missed = true;
            if (opts_.fill_on_read_miss) fill_miss_locked(st, lane, cursor, dst);
            cursor = to;
            continue;
        }
        const std::uint64_t to = std::min(k.end(), end);
        bool stale = false;
        PCACHE_TRY(
            read_from_key(shard, k, cursor, out.subspan(cursor - off, to - cursor), g, stale));
        if (mutant(30) && stale)  // M30 (the old read path): a key reclaimed under it fails it
            return {Errc::io, "cache segment reclaimed during a read (index out of date)"};
        if (!stale) {
            cursor = to;
            continue;
        }
        // Reclaimed under the read: look again from the cursor (the next lookup drops it).
        count(shard, &CacheCounters::read_retries);
        if (walk++ == kReadWalksMax)
            return {Errc::io, "read [" + std::to_string(off) + ", +" + std::to_string(out.size()) +
                                  "): the index changed under " + std::to_string(kReadWalksMax) +
                                  " walks in a row (GC reclaiming every key found)"};
    }
    count(shard, missed ? &CacheCounters::read_misses : &CacheCounters::read_hits);
    return {};
}

// Keeps backing data read for a miss as CLEAN keys (best effort: a full cache skips it). The
// keys go through the same lane rules as writes.
template <PmemDevice Pmem, BlockDevice Block>
void Cache<Pmem, Block>::fill_miss_locked(CacheSubtree& st, std::uint32_t lane, std::uint64_t off,
                                          std::span<const std::byte> data) {
    std::uint64_t done = 0;
    while (done < data.size()) {
        auto a = data_alloc(lane, static_cast<std::uint32_t>(data.size() - done));
        if (!a.ok()) return;
        const auto bytes = data.subspan(done, a->len);
        CacheKey key{off + done, a->len, format::kKeyFlagClean, a->seg, a->off, a->gen, 0, false};
        const Status s = store_data(key, bytes, kPmemFlushCache);
        bool appended = false;
        if (s.ok()) {
            // Not swallowed, deferred: the fill is best effort and its key is valid while
            // buffered. A failed close of the full buffer after the append leaves it full and
            // unchanged; the next append to it closes it first and reports the error to that
            // writer, and so does the next FLUSH, the only calls that promise durability.
            (void)insert_and_append(st, lane, key, false, true, appended);
        }
        if (!appended) {
            seg_put(a->seg);
            return;
        }
        count(lanes_[lane], &CacheCounters::pmem_written_bytes, a->len);
        done += a->len;
    }
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::flush() {
    PCACHE_TRY(refuse_read_only("flush"));
    if constexpr (mutant(13)) return {};  // M13: FLUSH acknowledged before writes are durable
    for (Lane& kb : lanes_) {
        std::lock_guard g(kb.mutex);
        Status s = kset_close_locked(kb);
        if (!s.ok() && !mutant(20)) return s;  // M20: a kset close error is swallowed
    }
    return {};
}

template <PmemDevice Pmem, BlockDevice Block>
Status Cache<Pmem, Block>::close() {
    PCACHE_TRY(refuse_read_only("close"));
    needs_close_.store(false);  // before: a write racing with close marks it again
    Status first = flush();
    Status bs = backing_.flush();
    if (first.ok() && !bs.ok()) first = bs.with_context("flushing the backing device");
    if (!first.ok()) needs_close_.store(true);
    return first;
}

}  // namespace pcache
