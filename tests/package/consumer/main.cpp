// A minimal embedder: formats nothing, just proves headers and libraries are found and link.
#include <cstdio>
#include <string_view>

#include "pcache/blockdev/mem_block_device.hpp"
#include "pcache/crc32c.hpp"
#include "pcache/pmem/mem_pmem.hpp"

int main() {
    constexpr std::string_view s = "123456789";
    pcache::MemPmem pmem(1 << 20);
    pcache::MemBlockDevice disk(1 << 20);
    const bool ok = pcache::crc::kcrc(s.data(), s.size()) == 0xE5868AB2u && pmem.size() == (1u << 20) &&
                    disk.size() == (1u << 20);
    std::puts(ok ? "consumer ok" : "consumer FAILED");
    return ok ? 0 : 1;
}
