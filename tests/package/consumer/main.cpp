// A minimal embedder: opens a libpmem2 mapping of a temporary file and an io_uring backing
// file (so both static libraries must link), runs a cache on them and reads back a write.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "pcache/blockdev/uring_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"

int main() {
    const std::string base = "/dev/shm/pcache-consumer-" + std::to_string(::getpid());
    pcache::CacheOptions opts;
    opts.geometry.segment_bytes = 1 << 20;
    auto pmem = pcache::Pmem2Device::open(
        base + ".pmem", {true, 20480 + (8u << 20), pcache::PmemGranularity::page});
    pcache::BlockOpenOptions bo;
    bo.create = true;
    bo.size_bytes = 4 << 20;
    auto disk = pcache::UringBlockDevice::open(base + ".disk", bo);
    bool ok = pmem.ok() && disk.ok();
    if (ok) {
        auto cache =
            pcache::Cache<pcache::Pmem2Device, pcache::UringBlockDevice>::open(*pmem, *disk, opts);
        std::vector<std::byte> in(4096, std::byte{0x5a}), out(4096);
        ok = cache.ok() && (*cache)->write(8192, in, true).ok() && (*cache)->read(8192, out).ok() &&
             in == out && (*cache)->close().ok();
        if (!cache.ok()) std::fprintf(stderr, "%s\n", cache.status().to_string().c_str());
    } else {
        std::fprintf(stderr, "%s / %s\n", pmem.status().to_string().c_str(),
                     disk.status().to_string().c_str());
    }
    std::remove((base + ".pmem").c_str());
    std::remove((base + ".disk").c_str());
    std::puts(ok ? "consumer ok" : "consumer FAILED");
    return ok ? 0 : 1;
}
