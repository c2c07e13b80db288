// Writes the seed corpora and the crafted regression inputs of every fuzz target.
//
//   pcache_fuzz_gen_corpus <corpus-root>           write fuzz/corpus/<target>/<name>
//   pcache_fuzz_gen_corpus <corpus-root> --check   verify the committed files are current
//
// Seeds are real images written by the engine (the templates of fuzz_image.hpp) and records
// cut from them. Regression inputs ("regress-*") encode one case per class of replay bug the
// kernel fixed in 2026: a kset running past its segment, a cycle in the LAST chain, key
// offsets and lengths outside the segment, key_num > 128, out-of-range segment ids in keys and
// LAST ksets, and out-of-range tail positions. Inputs found by fuzzing are committed next to
// them by hand ("crash-*" names); --check ignores files it does not generate.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>

#include "fuzz_image.hpp"

namespace {

using namespace pcache;
using namespace pcache::fuzz;
using Bytes = std::vector<std::byte>;

std::map<std::string, Bytes> g_files;  // "<target>/<name>" -> contents

template <class... Parts>
Bytes cat(const Parts&... parts) {
    Bytes out;
    (out.insert(out.end(), std::begin(parts), std::end(parts)), ...);
    return out;
}
template <class T>
Bytes le(T v) {
    Bytes b(sizeof v);
    std::memcpy(b.data(), &v, sizeof v);
    return b;
}
Bytes slice(const Template& t, std::uint64_t at, std::uint64_t n) {
    return Bytes(t.image.begin() + std::ptrdiff_t(at), t.image.begin() + std::ptrdiff_t(at + n));
}
void put(const std::string& target, const std::string& name, Bytes b) {
    g_files[target + "/" + name] = std::move(b);
}

// ---- superblock ------------------------------------------------------------------------
void superblock_corpus() {
    const auto sb = [](std::uint32_t seg_num, std::uint32_t flags) {
        auto s = format::make_superblock(seg_num);
        s.flags = flags;
        s.crc = format::record_crc(s);
        auto a = format::to_bytes(s);
        return Bytes(a.begin(), a.end());
    };
    const Bytes tail_kernel =
        cat(le<std::uint64_t>(format::kCacheDevBytesMin), Bytes{std::byte{0}, std::byte{0}});
    const Bytes tail_small = cat(le<std::uint64_t>(kPmemBytes), Bytes{std::byte{1}, std::byte{0}});
    put("superblock", "seed-kernel-512MiB", cat(sb(31, 0), tail_kernel));
    put("superblock", "seed-small-template",
        cat(slice(templates()[0], format::kSuperblockOffsetBytes, 24), tail_small));
    put("superblock", "seed-unformatted", cat(Bytes(24), tail_kernel));
    put("superblock", "seed-truncated", Bytes(10, std::byte{0xef}));
    put("superblock", "regress-seg-num-beyond-device", cat(sb(32, 0), tail_kernel));
    put("superblock", "regress-seg-num-zero", cat(sb(0, 0), tail_kernel));
    put("superblock", "regress-seg-num-above-max",
        cat(sb(format::kCacheSegsMax + 1, 0), le<std::uint64_t>(UINT64_MAX),
            Bytes{std::byte{1}, std::byte{0}}));
    put("superblock", "regress-bigendian-flag", cat(sb(31, 1), tail_kernel));
}

// ---- meta ----------------------------------------------------------------------------------
void meta_corpus() {
    const Template& t = templates()[1];
    const auto head = [](std::uint8_t type, std::uint32_t bound, std::uint8_t fix) {
        return cat(Bytes{std::byte{type}}, le<std::uint32_t>(bound),
                   le<std::uint32_t>(std::uint32_t(seg_data_bytes())), Bytes{std::byte{fix}});
    };
    using namespace format;
    put("meta", "seed-cache_info",
        cat(head(0, kSegs, 0), slice(t, kCacheInfoOffsetBytes, 24),
            slice(t, kCacheInfoOffsetBytes + kCacheInfoSlotStrideBytes, 24)));
    put("meta", "seed-key_tail", cat(head(1, kSegs, 0), slice(t, kKeyTailOffsetBytes, 32)));
    put("meta", "seed-dirty_tail", cat(head(1, kSegs, 0), slice(t, kDirtyTailOffsetBytes, 32)));
    const std::uint64_t seg1 = t.opts.geometry.segment_offset(1);
    put("meta", "seed-segment_info",
        cat(head(2, kSegs, 0), slice(t, seg1, 16), slice(t, seg1 + kSegInfoSlotStrideBytes, 16)));
    put("meta", "seed-seg_gen", cat(head(3, kSegs, 0), slice(t, seg1 + kSegCtrlOffsetBytes, 32)));
    const auto pos = [](std::uint8_t seq, std::uint32_t seg, std::uint32_t off) {
        CachePos p{};
        p.cache_seg_id = seg;
        p.seg_off = off;
        seal(p, seq);
        auto a = to_bytes(p);
        return Bytes(a.begin(), a.end());
    };
    put("meta", "seed-seq-wrap", cat(head(1, kSegs, 0), pos(255, 1, 0), pos(0, 2, 64)));
    put("meta", "seed-seq-diff-128", cat(head(1, kSegs, 0), pos(1, 1, 0), pos(129, 2, 64)));
    put("meta", "regress-tail-seg-out-of-range",
        cat(head(1, kSegs, 0), pos(1, kSegs, 0), pos(2, 0xffffffffu, 0)));
    put("meta", "regress-tail-off-out-of-range",
        cat(head(1, kSegs, 0), pos(1, 0, std::uint32_t(seg_data_bytes())), pos(2, 0, 0xfffffff8u)));
    put("meta", "regress-tail-off-unaligned", cat(head(1, kSegs, 0), pos(3, 0, 4), pos(2, 0, 0)));
}

// ---- kset ----------------------------------------------------------------------------------
void kset_corpus() {
    const Template& t = templates()[1];
    const auto& geo = t.opts.geometry;
    const auto head = [](std::uint32_t n_segs, std::uint8_t fix) {
        return cat(le<std::uint32_t>(n_segs), le<std::uint32_t>(std::uint32_t(seg_data_bytes())),
                   Bytes{std::byte{fix}});
    };
    const auto window = [&](LogPos p) {
        return slice(t, geo.data_offset(p.seg) + p.off,
                     std::min<std::uint64_t>(format::kKsetBytesMax, seg_data_bytes() - p.off));
    };
    bool normal = false, last = false;
    for (const LogPos& p : t.ksets) {
        Bytes w = window(p);
        const auto h = format::load<format::KsetHeader>(w);
        const bool is_last = (h.flags & format::kKsetFlagLast) != 0;
        if (is_last && !last) put("kset", "seed-last", cat(head(kSegs, 0), w));
        if (!is_last && !normal) put("kset", "seed-normal", cat(head(kSegs, 0), w));
        (is_last ? last : normal) = true;
    }
    PCACHE_FUZZ_CHECK(normal && last, "wrapped template lacks a normal or a LAST kset");
    put("kset", "seed-end-marker", cat(head(kSegs, 0), window(t.key_head)));
    // Crafted ksets: a header and keys, CRC re-sealed by the target (fix bit) or here.
    const auto kset = [](std::uint32_t key_num_or_next, std::uint64_t flags,
                         std::vector<format::KeyOnMedia> keys, std::size_t window_bytes) {
        Bytes b(std::max<std::size_t>(window_bytes, 24 + 40 * keys.size()));
        format::KsetHeader h{0, key_num_or_next, format::kKsetMagic, flags};
        std::memcpy(b.data(), &h, sizeof h);
        for (std::size_t i = 0; i < keys.size(); ++i)
            std::memcpy(b.data() + 24 + 40 * i, &keys[i], 40);
        return b;
    };
    const format::KeyOnMedia good{0, 4096, 0, 1, 0, 0, 0, 0};
    auto bad = [&](auto mutate) {
        format::KeyOnMedia k = good;
        mutate(k);
        return std::vector<format::KeyOnMedia>{good, k};
    };
    put("kset", "regress-key-num-129", cat(head(kSegs, 1), kset(129, 0, {}, 24 + 40 * 129)));
    put("kset", "regress-key-num-max-u32", cat(head(kSegs, 1), kset(0xffffffffu, 0, {}, 5144)));
    // 3 keys need 144 bytes; the data area has 64 left: the kernel read past it.
    Bytes past = kset(3, 0, {good, good, good}, 144);
    {
        const std::uint32_t c = crc::kcrc(past.data() + 4, past.size() - 4);
        std::memcpy(past.data(), &c, 4);
        past.resize(64);
    }
    put("kset", "regress-kset-past-segment", cat(head(kSegs, 0), past));
    put("kset", "regress-last-seg-out-of-range",
        cat(head(kSegs, 1), kset(kSegs, format::kKsetFlagLast, {}, 24)));
    put("kset", "regress-key-off-past-segment",
        cat(head(kSegs, 1), kset(2, 0, bad([](auto& k) {
                                     k.cache_seg_off = std::uint32_t(seg_data_bytes()) - 512;
                                 }),
                                 0)));
    put("kset", "regress-key-len-huge",
        cat(head(kSegs, 1), kset(2, 0, bad([](auto& k) {
                                     k.len = 0xffffffffu;
                                     k.cache_seg_off = 0xffffff00u;
                                 }),
                                 0)));
    put("kset", "regress-key-seg-out-of-range",
        cat(head(kSegs, 1), kset(2, 0, bad([](auto& k) { k.cache_seg_id = kSegs; }), 0)));
    put("kset", "regress-key-crosses-subtree",
        cat(head(kSegs, 1),
            kset(2, 0, bad([](auto& k) { k.off = format::kSubtreeBytes - 512; }), 0)));
    put("kset", "regress-key-off-overflow",
        cat(head(kSegs, 1), kset(2, 0, bad([](auto& k) { k.off = UINT64_MAX - 100; }), 0)));
}

// ---- replay and replay_ops -------------------------------------------------------------
struct ReplayInput {
    const Template& t;
    std::uint8_t index;
    Bytes bytes;
    ReplayInput(std::uint8_t i) : t(templates()[i]), index(i), bytes{std::byte{i}} {}
    ReplayInput& edit(const std::string& region, std::uint8_t op, std::uint32_t off,
                      std::uint32_t value) {
        const auto e =
            encode(Edit{op, std::uint8_t(region_index(t, region)), std::uint16_t(off), value});
        bytes.insert(bytes.end(), e.begin(), e.end());
        return *this;
    }
    // Both copies of a tail record: field at `off` set to `value`, CRC re-sealed.
    ReplayInput& tail(const std::string& name, std::uint32_t off, std::uint32_t value) {
        edit(name + "0", kOpSetWord | kOpFixCrc, off, value);
        return edit(name + "1", kOpSetWord | kOpFixCrc, off, value);
    }
};
std::string log_region(std::uint32_t seg) { return "seg" + std::to_string(seg) + ".log"; }

void replay_put(const std::string& name, const ReplayInput& in) {
    put("replay", name, in.bytes);
    put("replay_ops", name, in.bytes);
}

void replay_corpus() {
    for (std::uint8_t i = 0; i < kTemplateCount; ++i) {
        const std::string n = "seed-" + templates()[i].name;
        replay_put(n, ReplayInput(i));
        // flags bits 8..15 cleared: gc_percent 70 becomes 2 (data_crc and INIT_DONE kept).
        replay_put(n + "-gc-percent", ReplayInput(i)
                                          .edit("cache_info0", kOpSetByte | kOpFixCrc, 17, 0)
                                          .edit("cache_info1", kOpSetByte | kOpFixCrc, 17, 0));
        replay_put(n + "-seg-gen-bump", ReplayInput(i)
                                            .edit("seg1.gen0", kOpAddWord | kOpFixCrc, 8, 1)
                                            .edit("seg1.gen1", kOpAddWord | kOpFixCrc, 8, 1));
        replay_put(n + "-data-flip",
                   ReplayInput(i).edit("seg1.raw", kOpSetByte, 12288 + 100, 0x5a));
    }
    const Template& w = templates()[1];
    // First normal kset and first LAST kset of the wrapped log.
    LogPos normal{}, last{};
    bool have_normal = false, have_last = false;
    for (const LogPos& p : w.ksets) {
        const auto h = format::load<format::KsetHeader>(std::span<const std::byte>(w.image).subspan(
            w.opts.geometry.data_offset(p.seg) + p.off, 24));
        const bool is_last = (h.flags & format::kKsetFlagLast) != 0;
        if (is_last && !have_last) last = p, have_last = true;
        if (!is_last && !have_normal) normal = p, have_normal = true;
    }
    PCACHE_FUZZ_CHECK(have_normal && have_last, "wrapped template lacks a normal or a LAST kset");
    const LogPos kt = w.key_tail, kh = w.key_head;
    const std::uint32_t d = std::uint32_t(seg_data_bytes());
    const auto key_field = [&](std::uint32_t key, std::uint32_t field) {
        return normal.off + 24 + 40 * key + field;
    };
    const std::uint8_t set_fix = kOpSetWord | kOpFixCrc;

    replay_put(
        "seed-wrapped-key-seg-gen",
        ReplayInput(1).edit(log_region(normal.seg), kOpAddWord | kOpFixCrc, key_field(0, 24), 1));
    // 1. A kset running past the end of its segment's data area (3 keys, 64 bytes left), its
    //    CRC valid over bytes that belong to the next segment; both tails point at it.
    replay_put("regress-kset-past-segment",
               ReplayInput(1)
                   .edit(log_region(kh.seg), kOpSetWord, d - 64 + 4, 3)
                   .edit(log_region(kh.seg), kOpSetWord, d - 64 + 16, 0)
                   .edit(log_region(kh.seg), kOpSetWord | kOpNewKset, d - 64, 0)
                   .tail("key_tail", 8, kh.seg)
                   .tail("key_tail", 12, d - 64)
                   .tail("dirty_tail", 8, kh.seg)
                   .tail("dirty_tail", 12, d - 64));
    // 2. A cycle in the LAST chain: the end marker becomes a LAST kset back to key_tail's
    //    segment, or to its own segment.
    replay_put("regress-last-cycle",
               ReplayInput(1)
                   .edit(log_region(kh.seg), kOpSetWord, kh.off + 4, kt.seg)
                   .edit(log_region(kh.seg), kOpSetWord, kh.off + 16, 1)
                   .edit(log_region(kh.seg), kOpSetWord | kOpNewKset, kh.off, 0));
    replay_put("regress-last-self-loop",
               ReplayInput(1)
                   .edit(log_region(kh.seg), kOpSetWord, kh.off + 4, kh.seg)
                   .edit(log_region(kh.seg), kOpSetWord, kh.off + 16, 1)
                   .edit(log_region(kh.seg), kOpSetWord | kOpNewKset, kh.off, 0));
    // 3. Key offset and length not within the segment.
    replay_put("regress-key-off-past-segment",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, key_field(0, 20), d - 256));
    replay_put("regress-key-len-huge",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, key_field(1, 8), 0xffffffffu));
    replay_put("regress-key-seg-off-huge",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, key_field(2, 20), 0xfffffe00u));
    // 4. key_num > 128 (CRC valid over what key_num claims).
    replay_put("regress-key-num-129",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, normal.off + 4, 129));
    replay_put("regress-key-num-max-u32",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, normal.off + 4, 0xffffffffu));
    // 5. Out-of-range segment ids: in a key, in a LAST kset.
    replay_put("regress-key-seg-out-of-range",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, key_field(0, 16), kSegs));
    replay_put("regress-key-seg-max-u32",
               ReplayInput(1).edit(log_region(normal.seg), set_fix, key_field(3, 16), 0xffffffffu));
    replay_put("regress-last-seg-out-of-range",
               ReplayInput(1).edit(log_region(last.seg), set_fix, last.off + 4, kSegs));
    replay_put("regress-last-seg-max-u32",
               ReplayInput(1).edit(log_region(last.seg), set_fix, last.off + 4, 0xffffffffu));
    // 6. Out-of-range tail positions.
    replay_put("regress-key-tail-seg-out-of-range", ReplayInput(1).tail("key_tail", 8, kSegs));
    replay_put("regress-key-tail-off-end", ReplayInput(1).tail("key_tail", 12, d));
    replay_put("regress-dirty-tail-off-huge", ReplayInput(1).tail("dirty_tail", 12, 0xfffffff8u));
    replay_put("regress-dirty-tail-seg-max-u32", ReplayInput(0).tail("dirty_tail", 8, 0xffffffffu));
    // 7. Found while writing these targets: a CRC-valid kset that leaves fewer than 24 bytes
    //    of its data area, so no room for the LAST kset every writer reserves (5.5). Replay
    //    accepted it; the next segment switch then wrote its LAST kset across the end of the
    //    data area, over the next segment's segment_info (replay_ops: stray write).
    {
        const std::uint32_t p = d - 80;   // a 1-key kset (64 B) ending 16 B before the end
        std::uint32_t stale_seg = kSegs;  // a data segment with gen > 0: the key is stale
        for (std::uint32_t s = 0; s < kSegs && stale_seg == kSegs; ++s) {
            const std::uint64_t g = w.opts.geometry.segment_offset(s) + format::kSegCtrlOffsetBytes;
            const std::span<const std::byte> img(w.image);
            auto gen = format::select_latest<format::SegGen>(img.subspan(g, 16), g,
                                                             img.subspan(g + 16, 16), g + 16);
            if (s != kh.seg && s != kt.seg && gen && gen->record.gen > 0) stale_seg = s;
        }
        PCACHE_FUZZ_CHECK(stale_seg < kSegs, "wrapped template has no segment with gen > 0");
        ReplayInput in(1);
        const std::string r = log_region(kh.seg);
        const std::pair<std::uint32_t, std::uint32_t> words[] = {
            {4, 1},
            {16, 0},
            {20, 0},  // key_num 1, flags 0
            {24 + 0, 0},
            {24 + 4, 0},
            {24 + 8, 512},
            {24 + 12, 0},  // off 0, len 512, dirty
            {24 + 16, stale_seg},
            {24 + 20, 0},
            {24 + 24, 0},
            {24 + 28, 0},
            {24 + 32, 0},
            {24 + 36, 0}};
        for (const auto& [at, value] : words) in.edit(r, kOpSetWord, p + at, value);
        in.edit(r, kOpSetWord | kOpNewKset, p, 0);
        in.tail("key_tail", 8, kh.seg)
            .tail("key_tail", 12, p)
            .tail("dirty_tail", 8, kh.seg)
            .tail("dirty_tail", 12, p);
        replay_put("regress-kset-no-room-for-last", in);
    }
    // Not a kernel class but the same family: a cycle in the segment chain.
    replay_put(
        "regress-segment-chain-cycle",
        ReplayInput(0).edit("seg1.info0", set_fix, 12, 0).edit("seg1.info1", set_fix, 12, 0));
}

int write_or_check(const std::filesystem::path& root, bool check) {
    int bad = 0;
    for (const auto& [rel, bytes] : g_files) {
        const auto path = root / rel;
        if (check) {
            std::ifstream in(path, std::ios::binary);
            Bytes have;
            for (char c; in.get(c);) have.push_back(std::byte(c));
            if (!std::filesystem::exists(path) || have != bytes) {
                std::cerr << "stale or missing corpus file: " << path << "\n";
                ++bad;
            }
            continue;
        }
        std::filesystem::create_directories(path.parent_path());
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
        if (!out) {
            std::cerr << "cannot write " << path << "\n";
            return 1;
        }
    }
    std::cout << (check ? "checked " : "wrote ") << g_files.size() << " corpus files under " << root
              << "\n";
    if (bad)
        std::cerr << bad << " corpus files differ: run pcache_fuzz_gen_corpus " << root << "\n";
    return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && std::string(argv[2]) != "--check")) {
        std::cerr << "usage: " << argv[0] << " <corpus-root> [--check]\n";
        return 2;
    }
    superblock_corpus();
    meta_corpus();
    kset_corpus();
    replay_corpus();
    return write_or_check(argv[1], argc == 3);
}
