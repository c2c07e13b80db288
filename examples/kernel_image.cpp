// Example: read a cache image written by the Linux kernel's dm-pcache driver. Decompresses the
// fixture images (tests/data/kernel/basic_clean_crc.*.img.zst, zstd) into sparse files in a
// temporary directory, opens them read-only (replay into memory, nothing written), reads the
// bytes of the fixture's write sequence back and compares them with the patterns its README
// defines. Also checks that the image files are byte for byte unchanged afterwards.
// Exit code 0 only if every check passed.
//
//   example_kernel_image [FIXTURE_DIR]   (default: the repository's tests/data/kernel)
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "pcache/blockdev/file_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"

namespace {

using pcache::Errc;
using pcache::Status;

// Decompresses `zst` into `out`, skipping all-zero 4 KiB blocks (the file stays sparse).
Status unzstd(const std::string& zst, const std::string& out, std::uint64_t size) {
    std::FILE* in = std::fopen(zst.c_str(), "rb");
    if (!in) return {Errc::not_found, zst + ": " + std::strerror(errno)};
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
        std::fclose(in);
        return {Errc::io, out + ": " + std::strerror(errno)};
    }
    std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    std::vector<char> ibuf(ZSTD_DStreamInSize()), obuf(1 << 20);
    std::uint64_t pos = 0;
    Status s;
    for (std::size_t n; s.ok() && (n = std::fread(ibuf.data(), 1, ibuf.size(), in)) > 0;) {
        ZSTD_inBuffer zin{ibuf.data(), n, 0};
        while (s.ok() && zin.pos < zin.size) {
            ZSTD_outBuffer zout{obuf.data(), obuf.size(), 0};
            const std::size_t rc = ZSTD_decompressStream(dctx.get(), &zout, &zin);
            if (ZSTD_isError(rc)) s = {Errc::corrupt, zst + ": " + ZSTD_getErrorName(rc)};
            for (std::size_t at = 0; s.ok() && at < zout.pos; at += 4096) {
                const std::size_t len = std::min<std::size_t>(4096, zout.pos - at);
                const std::array<char, 4096> zeros{};
                if (std::memcmp(obuf.data() + at, zeros.data(), len) == 0) continue;
                if (::pwrite(fd, obuf.data() + at, len, static_cast<off_t>(pos + at)) !=
                    static_cast<ssize_t>(len))
                    s = {Errc::io, out + ": short write"};
            }
            pos += zout.pos;
        }
    }
    std::fclose(in);
    ::close(fd);
    if (s.ok() && pos != size)
        s = {Errc::corrupt,
             zst + ": " + std::to_string(pos) + " B, expected " + std::to_string(size)};
    return s;
}

// The fixture README's patN: "PCACHE-ORACLE pat=NN\n", zero-padded to 64 bytes, then 4032
// bytes of (N * 0x11) & 0xff.
std::vector<std::byte> pat(unsigned n) {
    std::vector<std::byte> v(4096);
    char head[32];
    const int len = std::snprintf(head, sizeof head, "PCACHE-ORACLE pat=%02u\n", n);
    std::memcpy(v.data(), head, static_cast<std::size_t>(len));
    std::memset(v.data() + 64, static_cast<int>((n * 0x11) & 0xff), 4096 - 64);
    return v;
}

// A 64-bit hash of a whole file (FNV-1a over 8-byte words; the sizes are multiples of 8).
std::uint64_t file_hash(const std::string& path) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return 0;
    std::vector<std::uint64_t> buf(1 << 17);
    for (std::size_t n; (n = std::fread(buf.data(), 8, buf.size(), f)) > 0;)
        for (std::size_t i = 0; i < n; ++i) h = (h ^ buf[i]) * 0x100000001b3ull;
    std::fclose(f);
    return h;
}

Status run(const std::string& fixtures, const std::string& dir) {
    const std::string pmem_path = dir + "/pmem", disk_path = dir + "/backing";
    PCACHE_TRY(unzstd(fixtures + "/basic_clean_crc.pmem.img.zst", pmem_path, 1ull << 30));
    PCACHE_TRY(unzstd(fixtures + "/basic_clean_crc.backing.img.zst", disk_path, 256ull << 20));
    const std::uint64_t pmem_hash = file_hash(pmem_path), disk_hash = file_hash(disk_path);
    {
        using KernelCache = pcache::Cache<pcache::Pmem2Device, pcache::FileBlockDevice>;
        auto pmem = pcache::Pmem2Device::open(pmem_path);
        if (!pmem.ok()) return pmem.status();
        auto disk = pcache::FileBlockDevice::open(disk_path);
        if (!disk.ok()) return disk.status();
        pcache::CacheOptions opts;  // kernel geometry (16 MiB segments)
        opts.data_crc = true;       // the table line said data_crc true: it must match
        auto cache = KernelCache::open_read_only(
            std::make_shared<pcache::Pmem2Device>(std::move(*pmem)),
            std::make_shared<pcache::FileBlockDevice>(std::move(*disk)), opts);
        if (!cache.ok()) return cache.status();
        KernelCache& c = **cache;
        std::printf("example_kernel_image: replayed %llu keys; status %s\n",
                    static_cast<unsigned long long>(c.counters().replay_keys),
                    c.status_line().c_str());
        // W6 (pat6 at 0) then W7 (pat7 at 2048) over W1 and W2 (pat2 at 4096).
        std::vector<std::byte> want(8192);
        std::memcpy(want.data(), pat(6).data(), 2048);
        std::memcpy(want.data() + 2048, pat(7).data(), 4096);
        std::memcpy(want.data() + 6144, pat(2).data() + 2048, 2048);
        struct Check {
            std::uint64_t off;
            std::vector<std::byte> bytes;
        };
        for (const Check& k : {Check{0, want}, Check{1 << 20, pat(3)}, Check{64 << 20, pat(5)}}) {
            std::vector<std::byte> got(k.bytes.size());
            PCACHE_TRY(c.read(k.off, got));
            if (got != k.bytes)
                return {Errc::corrupt, "bytes at " + std::to_string(k.off) +
                                           " differ from the kernel's write sequence"};
        }
        const pcache::WriteResult w = c.write(0, want);
        if (w.code() != Errc::read_only)
            return {Errc::corrupt, "a write on a read-only cache returned " + w.status.to_string()};
    }
    if (file_hash(pmem_path) != pmem_hash || file_hash(disk_path) != disk_hash)
        return {Errc::corrupt, "the read-only open changed an image file"};
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    const std::string fixtures = argc > 1 ? argv[1] : PCACHE_EXAMPLE_KERNEL_DIR;
    char tmpl[] = "/var/tmp/pcache-kernel-image-XXXXXX";
    if (!::mkdtemp(tmpl)) {
        std::perror("mkdtemp");
        return 1;
    }
    const Status s = run(fixtures, tmpl);
    std::filesystem::remove_all(tmpl);
    if (!s.ok()) {
        std::fprintf(stderr, "example_kernel_image: %s\n", s.to_string().c_str());
        return 1;
    }
    std::printf("example_kernel_image: the kernel's writes read back exactly; images unchanged\n");
    return 0;
}
