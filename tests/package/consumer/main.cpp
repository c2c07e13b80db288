// An outside program written only from docs/api.md: formats a cache on a libpmem2 mapping of a
// temporary file over an io_uring backing file (so both static libraries must link), writes
// through a Runtime and directly (FUA), checks what docs/api.md promises about open (never
// formats), destruction (closes), read-only open (reads work, writes are refused) and a
// Runtime's single start, and reads everything back. Prints "consumer ok" and exits 0 only if
// every promise held.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "pcache/blockdev/uring_block_device.hpp"
#include "pcache/cache/cache.hpp"
#include "pcache/pmem/pmem2_device.hpp"
#include "pcache/runtime.hpp"

namespace {

using UringCache = pcache::Cache<pcache::Pmem2Device, pcache::UringBlockDevice>;

struct Devices {
    std::shared_ptr<pcache::Pmem2Device> pmem;
    std::shared_ptr<pcache::UringBlockDevice> disk;
};

pcache::Result<Devices> open_devices(const std::string& base) {
    auto pmem = pcache::Pmem2Device::open(base + ".pmem",
                                          {.create = true, .size_bytes = 20480 + (8u << 20)});
    if (!pmem.ok()) return pmem.status();
    auto disk =
        pcache::UringBlockDevice::open(base + ".disk", {.create = true, .size_bytes = 4 << 20});
    if (!disk.ok()) return disk.status();
    return Devices{std::make_shared<pcache::Pmem2Device>(std::move(*pmem)),
                   std::make_shared<pcache::UringBlockDevice>(std::move(*disk))};
}

pcache::Status expect(bool what, const char* why) {
    return what ? pcache::Status{} : pcache::Status{pcache::Errc::corrupt, why};
}

pcache::Status run(const std::string& base) {
    pcache::CacheOptions opts;
    opts.geometry.segment_bytes = 1 << 20;
    const std::vector<std::byte> a(8192, std::byte{0x5a}), b(4096, std::byte{0xa5});
    {
        auto devs = open_devices(base);
        if (!devs.ok()) return devs.status();
        auto refused = UringCache::open(devs->pmem, devs->disk, opts);
        PCACHE_TRY(expect(refused.code() == pcache::Errc::not_found, "open formatted a blank"));
        auto cache = UringCache::format(devs->pmem, devs->disk, opts);
        if (!cache.ok()) return cache.status();
        pcache::Runtime<UringCache> rt(**cache);
        PCACHE_TRY(rt.start());
        PCACHE_TRY(expect(!rt.start().ok(), "a second Runtime::start was accepted"));
        pcache::WriteResult w = rt.write_blocking(8192, a);
        PCACHE_TRY(w.status);
        PCACHE_TRY(expect(w.done_bytes == a.size(), "done_bytes is not the whole write"));
        PCACHE_TRY((*cache)->write(65536, b, {.fua = true}).status);
        rt.stop();
    }  // destruction closes the cache: the non-FUA write is durable
    auto devs = open_devices(base);
    if (!devs.ok()) return devs.status();
    {
        auto ro = UringCache::open_read_only(devs->pmem, devs->disk, opts);
        if (!ro.ok()) return ro.status();
        std::vector<std::byte> out(8192);
        PCACHE_TRY((*ro)->read(8192, out));
        PCACHE_TRY(expect(out == a, "the write before destruction is not there"));
        PCACHE_TRY(expect((*ro)->write(0, b).code() == pcache::Errc::read_only,
                          "a read-only cache accepted a write"));
    }
    auto cache = UringCache::open(devs->pmem, devs->disk, opts);
    if (!cache.ok()) return cache.status();
    std::vector<std::byte> out(4096);
    PCACHE_TRY((*cache)->read(65536, out));
    PCACHE_TRY(expect(out == b, "the FUA write is not there"));
    return (*cache)->close();
}

}  // namespace

int main() {
    const std::string base = "/dev/shm/pcache-consumer-" + std::to_string(::getpid());
    const pcache::Status s = run(base);
    std::remove((base + ".pmem").c_str());
    std::remove((base + ".disk").c_str());
    if (!s.ok()) std::fprintf(stderr, "%s\n", s.to_string().c_str());
    std::puts(s.ok() ? "consumer ok" : "consumer FAILED");
    return s.ok() ? 0 : 1;
}
