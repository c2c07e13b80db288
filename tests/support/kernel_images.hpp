// Kernel-image fixtures: images written by the real dm-pcache driver (tests/data/kernel, see its
// README.md), the basic write sequence that produced them, and their JSON and inspect files.
//
// Images are zstd-compressed 1 GiB (cache) and 256 MiB (backing) files. They are decompressed
// with libzstd straight into a MemPmem / MemBlockDevice: no 1 GiB file is ever written,
// and all-zero chunks are skipped so MemPmem's MAP_NORESERVE mapping only commits the pages the
// image actually uses (a few MiB for the basic scenarios).
//
// Where files are looked up: tests/data/kernel in the source tree (compiled in as
// PCACHE_KERNEL_DATA_DIR), then the shared fixture folder (PCACHE_KERNEL_IMAGES_DIR, overridden
// at run time by the environment variable PCACHE_KERNEL_IMAGES). The 16 MB keychain cache image
// is only in the shared folder; its test skips when the folder is absent.
#pragma once

#include <sys/stat.h>
#include <zstd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <vector>

#include "json_lite.hpp"
#include "pcache/blockdev/mem_block_device.hpp"
#include "pcache/pmem/mem_pmem.hpp"
#include "pcache/result.hpp"

#ifndef PCACHE_KERNEL_DATA_DIR
#error "PCACHE_KERNEL_DATA_DIR must name tests/data/kernel (set by tests/interop/CMakeLists.txt)"
#endif
#ifndef PCACHE_KERNEL_IMAGES_DIR
#define PCACHE_KERNEL_IMAGES_DIR ""
#endif

namespace pcache::testutil::kernel {

// Geometry of every kernel image (README: 1 GiB pmem -> 63 segments, 256 MiB backing).
inline constexpr std::uint64_t kCacheDevBytes = 1ull << 30;
inline constexpr std::uint64_t kBackingBytes = 256ull << 20;
// The dm table "0 524288 pcache ..." prefixes every dmsetup status line.
inline constexpr const char* kStatusPrefix = "0 524288 pcache ";

inline bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

inline std::string data_dir() { return PCACHE_KERNEL_DATA_DIR; }
inline std::string fixtures_dir() {
    const char* env = std::getenv("PCACHE_KERNEL_IMAGES");
    return env != nullptr && *env != '\0' ? env : PCACHE_KERNEL_IMAGES_DIR;
}
// The copy in the source tree first, then the shared folder; "" when neither has the file.
inline std::string find_file(const std::string& name) {
    for (const std::string& dir : {data_dir(), fixtures_dir()}) {
        if (!dir.empty() && file_exists(dir + "/" + name)) return dir + "/" + name;
    }
    return "";
}

// ---- zstd -----------------------------------------------------------------------------------
// Decompresses `path` (exactly `expected_bytes` of output) with libzstd's streaming API and
// hands every chunk that is not all zero to sink(offset, bytes). Chunks are 1 MiB (the last
// may be shorter). In-process decompression runs at ~5 GB/s here; piping `zstd -dc` through
// popen cost four times as much in pipe copies, and every interop test decompresses afresh.
inline Status zstd_stream(
    const std::string& path, std::uint64_t expected_bytes,
    const std::function<Status(std::uint64_t, std::span<const std::byte>)>& sink) {
    std::ifstream in(path, std::ios::binary);
    if (path.empty() || !in)
        return {Errc::not_found, "cannot open compressed image \"" + path + "\""};
    std::unique_ptr<ZSTD_DStream, decltype(&ZSTD_freeDStream)> ds(ZSTD_createDStream(),
                                                                  &ZSTD_freeDStream);
    if (!ds) return {Errc::no_space, "ZSTD_createDStream failed"};
    std::vector<char> src(ZSTD_DStreamInSize());
    std::vector<std::byte> chunk(1u << 20);
    ZSTD_outBuffer out{chunk.data(), chunk.size(), 0};
    std::uint64_t total = 0;
    std::size_t last_ret = 0;
    auto emit = [&]() -> Status {  // hands out the filled part of `chunk`
        const auto bytes = std::span<const std::byte>(chunk).first(out.pos);
        if (total + bytes.size() > expected_bytes)
            return {Errc::corrupt,
                    path + " decompresses to more than " + std::to_string(expected_bytes) + " B"};
        const bool zero =
            bytes.empty() || (bytes[0] == std::byte{0} &&
                              std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0);
        if (!zero) PCACHE_TRY(sink(total, bytes));
        total += bytes.size();
        out.pos = 0;
        return {};
    };
    while (in.read(src.data(), static_cast<std::streamsize>(src.size())) || in.gcount() > 0) {
        ZSTD_inBuffer input{src.data(), static_cast<std::size_t>(in.gcount()), 0};
        while (input.pos < input.size) {
            last_ret = ZSTD_decompressStream(ds.get(), &out, &input);
            if (ZSTD_isError(last_ret))
                return {Errc::corrupt, path + ": zstd: " + ZSTD_getErrorName(last_ret)};
            if (out.pos == out.size) PCACHE_TRY(emit());
        }
    }
    // Flush what the decoder still holds (its output buffer filled exactly at the end of input).
    for (int rounds = 0; last_ret != 0 && rounds < 1024; ++rounds) {
        ZSTD_inBuffer none{nullptr, 0, 0};
        last_ret = ZSTD_decompressStream(ds.get(), &out, &none);
        if (ZSTD_isError(last_ret))
            return {Errc::corrupt, path + ": zstd: " + ZSTD_getErrorName(last_ret)};
        if (out.pos == 0) break;
        PCACHE_TRY(emit());
    }
    PCACHE_TRY(emit());
    if (last_ret != 0) return {Errc::corrupt, path + ": truncated zstd frame"};
    if (total != expected_bytes)
        return {Errc::corrupt, path + " decompressed to " + std::to_string(total) +
                                   " B, expected " + std::to_string(expected_bytes) + " B"};
    return {};
}

inline Status load_pmem_image(const std::string& path, MemPmem& pmem) {
    if (pmem.size() == 0) return {Errc::no_space, "MemPmem mapping failed"};
    return zstd_stream(path, pmem.size(), [&](std::uint64_t off, std::span<const std::byte> b) {
        return pmem.write(off, b, kPmemDefault);
    });
}
inline Status load_block_image(const std::string& path, MemBlockDevice& dev) {
    return zstd_stream(path, dev.size(), [&](std::uint64_t off, std::span<const std::byte> b) {
        return dev.write(off, b, false);
    });
}
inline Result<std::vector<std::byte>> load_zst_file(const std::string& path, std::uint64_t bytes) {
    std::vector<std::byte> out(bytes);
    Status st = zstd_stream(path, bytes, [&](std::uint64_t off, std::span<const std::byte> b) {
        std::memcpy(out.data() + off, b.data(), b.size());
        return Status();
    });
    if (!st.ok()) return st;
    return out;
}

// ---- the basic write sequence (README "The write sequence") ----------------------------------
// patN: "PCACHE-ORACLE pat=NN\n", zero-padded to 64 bytes, then 4032 bytes of (N * 0x11) & 0xff.
inline std::vector<std::byte> pattern_n(unsigned n) {
    std::vector<std::byte> p(4096, std::byte{0});
    char text[32];
    const int len = std::snprintf(text, sizeof text, "PCACHE-ORACLE pat=%02u\n", n);
    std::memcpy(p.data(), text, static_cast<std::size_t>(len));
    std::memset(p.data() + 64, static_cast<int>((n * 0x11) & 0xff), 4096 - 64);
    return p;
}

struct BasicWrite {
    std::string id;
    std::uint64_t off;
    std::vector<std::byte> data;
    bool fua;  // O_DSYNC on an O_DIRECT write reaches dm-pcache as REQ_FUA
};

inline Result<std::vector<BasicWrite>> basic_writes() {
    auto rand1m = load_zst_file(data_dir() + "/rand1m.bin.zst", 1u << 20);
    if (!rand1m.ok()) return rand1m.status();
    std::vector<BasicWrite> w;
    w.push_back({"W1", 0, pattern_n(1), false});
    w.push_back({"W2", 4096, pattern_n(2), false});
    w.push_back({"W3", 1u << 20, pattern_n(3), false});
    w.push_back({"W4", 8u << 20, std::move(*rand1m), false});
    w.push_back({"W5", 64u << 20, pattern_n(5), true});
    w.push_back({"W6", 0, pattern_n(6), false});
    w.push_back({"W7", 2048, pattern_n(7), false});
    return w;
}

// ---- scenario JSON -------------------------------------------------------------------------
struct Region {
    std::string name;
    std::uint64_t off = 0, len = 0;
    std::string md5;
};

// An array of {"region", "off", "len", "md5"} objects (off/len are strings or numbers).
inline std::vector<Region> regions_of(const Json& array) {
    std::vector<Region> out;
    for (const Json& r : array.items())
        out.push_back({r["region"].str(), r["off"].u64(), r["len"].u64(), r["md5"].str()});
    return out;
}

inline Result<Json> scenario_json(const std::string& name) {
    const std::string path = find_file(name + ".json");
    if (path.empty())
        return Status(Errc::not_found,
                      name + ".json is neither in " + data_dir() + " nor in " + fixtures_dir());
    return Json::parse_file(path);
}

// The kernel's last dmsetup status line without the dm table's "<start> <len> pcache " part.
inline std::string last_kernel_status(const Json& scenario) {
    const Json& lines = scenario["dmsetup_status_lines"];
    std::string s = lines.size() ? lines[lines.size() - 1].str() : "";
    const std::string prefix = kStatusPrefix;
    return s.rfind(prefix, 0) == 0 ? s.substr(prefix.size()) : s;
}

// ---- inspect files ---------------------------------------------------------------------------
// One line per metadata copy, e.g.
//   cache_info[0] @0x2000: seq=2 crc_ok=True ...     key_tail_pos[1] @0x4010: seq=0 crc_ok=False
//   ... seg0 seg_info[0]: seq=2 crc_ok=True ...          seg0 gen[1]: seq=1 crc_ok=True gen=0
// and the replay summary "replay would end (key_head) at 0:328; ... total keys 7".
struct InspectCopy {
    bool listed = false;
    unsigned seq = 0;
    bool crc_ok = false;
    std::string rest;  // the decoded fields after crc_ok=..., for messages
};
struct Inspect {
    std::map<std::string, std::array<InspectCopy, 2>> copies;  // "cache_info", "seg0 gen", ...
    std::string replay_end;                                    // "seg:off"
    std::uint64_t total_keys = 0;
};

inline Result<Inspect> parse_inspect(const std::string& name) {
    const std::string path = find_file(name + ".inspect.txt");
    std::ifstream in(path);
    if (path.empty() || !in) return Status(Errc::not_found, "cannot open " + name + ".inspect.txt");
    static const std::regex copy_re(
        R"(^((?:seg\d+ )?\w+)\[([01])\](?: @0x[0-9a-f]+)?: seq=(\d+) crc_ok=(True|False)(.*)$)");
    static const std::regex end_re(
        R"(^replay would end \(key_head\) at (\d+:\d+);.*total keys (\d+))");
    Inspect out;
    std::string line;
    std::smatch m;
    while (std::getline(in, line)) {
        if (std::regex_match(line, m, copy_re)) {
            InspectCopy& c = out.copies[m[1]][std::stoul(m[2])];
            c = {true, static_cast<unsigned>(std::stoul(m[3])), m[4] == "True", m[5]};
        } else if (std::regex_search(line, m, end_re)) {
            out.replay_end = m[1];
            out.total_keys = std::stoull(m[2]);
        }
    }
    if (out.copies.empty() || out.replay_end.empty())
        return Status(Errc::corrupt, path + ": no metadata copies or no replay summary found");
    return out;
}

// The copy the inspect file marks newest: CRC-valid, and the later sequence number in 8-bit
// serial order when both are valid (dm-pcache-format.md 3.2; a tie or a distance of 128 is
// ambiguous and reported as such).
inline std::optional<unsigned> inspect_newest(const std::array<InspectCopy, 2>& c,
                                              bool& ambiguous) {
    ambiguous = false;
    if (!c[0].crc_ok && !c[1].crc_ok) return std::nullopt;
    if (!c[1].crc_ok) return 0u;
    if (!c[0].crc_ok) return 1u;
    const auto d = static_cast<std::int8_t>(static_cast<std::uint8_t>(c[1].seq - c[0].seq));
    if (d == 0 || d == -128) ambiguous = true;
    return d > 0 ? 1u : 0u;
}

}  // namespace pcache::testutil::kernel
