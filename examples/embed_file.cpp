// Example: embed a cache in a program. The "pmem" is a file (under /dev/shm or a temporary
// directory; on a machine with persistent memory, a file on a DAX file system or /dev/daxX.Y),
// the backing device is a file too. Formats a new cache, writes through a Runtime, FLUSHes,
// closes by destruction, reopens and reads the bytes back. Exit code 0 only if every step
// worked and every byte read back is the byte written.
//
//   example_embed_file [DIR]     (default: a new directory under /dev/shm, removed at the end)
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

// [readme-snippet]
#include "pcache/blockdev/file_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"
#include "pcache/runtime.hpp"

using FileCache = pcache::Cache<pcache::Pmem2Device, pcache::FileBlockDevice>;

// Opens (creating if needed) a 64 MiB pmem file and a 256 MiB backing file in `dir`.
pcache::Status open_devices(const std::string& dir, std::shared_ptr<pcache::Pmem2Device>& pmem,
                            std::shared_ptr<pcache::FileBlockDevice>& disk) {
    auto p = pcache::Pmem2Device::open(dir + "/pmem", {.create = true, .size_bytes = 64 << 20});
    if (!p.ok()) return p.status();
    auto d =
        pcache::FileBlockDevice::open(dir + "/backing", {.create = true, .size_bytes = 256 << 20});
    if (!d.ok()) return d.status();
    pmem = std::make_shared<pcache::Pmem2Device>(std::move(*p));  // the cache will share them
    disk = std::make_shared<pcache::FileBlockDevice>(std::move(*d));
    return {};
}

pcache::Status write_and_reopen(const std::string& dir, std::span<const std::byte> data) {
    pcache::CacheOptions opts;
    opts.geometry.segment_bytes = 1 << 20;  // 1 MiB segments: the kernel's 16 MiB needs 512 MiB
    std::shared_ptr<pcache::Pmem2Device> pmem;
    std::shared_ptr<pcache::FileBlockDevice> disk;
    PCACHE_TRY(open_devices(dir, pmem, disk));
    {
        auto cache = FileCache::format(pmem, disk, opts);  // refuses a device holding a cache
        if (!cache.ok()) return cache.status();
        pcache::Runtime<FileCache> rt(**cache);  // writeback, GC, kset flush: one start, one stop
        PCACHE_TRY(rt.start());
        pcache::WriteResult w = rt.write_blocking(0, data);  // waits for room when full
        PCACHE_TRY(w.status);
        PCACHE_TRY((*cache)->write(1 << 20, data, {.fua = true}).status);  // durable at once
        PCACHE_TRY((*cache)->flush());  // every earlier write is durable on pmem
    }  // the Runtime stops, then the cache closes and lets go of the devices
    pmem.reset();
    disk.reset();
    PCACHE_TRY(open_devices(dir, pmem, disk));
    auto cache = FileCache::open(pmem, disk, opts);  // never formats: a blank device is an error
    if (!cache.ok()) return cache.status();
    std::vector<std::byte> back(data.size());
    for (std::uint64_t off : {0u, 1u << 20}) {
        PCACHE_TRY((*cache)->read(off, back));
        if (!std::equal(back.begin(), back.end(), data.begin()))
            return {pcache::Errc::corrupt, "read back differs at " + std::to_string(off)};
    }
    return (*cache)->close();  // optional: the destructor closes too, but logs instead of returning
}
// [readme-snippet-end]

int main(int argc, char** argv) {
    std::string dir;
    bool remove = false;
    if (argc > 1) {
        dir = argv[1];
    } else {
        char tmpl[] = "/dev/shm/pcache-example-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            std::perror("mkdtemp /dev/shm/pcache-example-XXXXXX");
            return 1;
        }
        dir = tmpl;
        remove = true;
    }
    std::vector<std::byte> data(256 << 10);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i * 7 + i / 4096);
    const pcache::Status s = write_and_reopen(dir, data);
    if (remove) std::filesystem::remove_all(dir);
    if (!s.ok()) {
        std::fprintf(stderr, "example_embed_file: %s\n", s.to_string().c_str());
        return 1;
    }
    std::printf("example_embed_file: wrote, flushed, reopened and read back %zu bytes twice\n",
                data.size());
    return 0;
}
