// Device kinds for typed tests: each names a PmemDevice or BlockDevice implementation and knows
// how to make one in a test's TempDir, so one suite runs unchanged against every policy.
//
// A kind has: Device, name, file_backed (has a file to reopen / inspect), make(dir, size),
// reopen(dir) (file-backed only) and, for pmem, check_granularity(device).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "pcache/blockdev/file_block_device.hpp"
#include "pcache/blockdev/mem_block_device.hpp"
#include "pcache/blockdev/uring_block_device.hpp"
#include "pcache/pmem/mem_pmem.hpp"
#include "pcache/pmem/pmem2_device.hpp"
#include "temp_dir.hpp"

namespace pcache::testutil {

// ---- PmemDevice kinds ---------------------------------------------------------------------

struct MemPmemKind {
    using Device = MemPmem;
    static constexpr const char* name = "MemPmem";
    static constexpr bool file_backed = false;
    static const char* parent_dir() { return "/dev/shm"; }
    static Result<Device> make(const TempDir&, std::uint64_t size_bytes) {
        return MemPmem(size_bytes);
    }
    static Result<Device> reopen(const TempDir&) {
        return {Errc::unsupported, "MemPmem has no backing file"};
    }
    static void check_granularity(const Device&) {}
};

// Pmem2Device over a tmpfs file at the only granularity tmpfs offers without forcing: page.
struct Pmem2PageKind {
    using Device = Pmem2Device;
    static constexpr const char* name = "Pmem2Page";
    static constexpr bool file_backed = true;
    static const char* parent_dir() { return "/dev/shm"; }
    static Result<Device> make(const TempDir& dir, std::uint64_t size_bytes) {
        ::unsetenv("PMEM2_FORCE_GRANULARITY");
        return Pmem2Device::open(dir.file("pmem"), {.create = true, .size_bytes = size_bytes});
    }
    static Result<Device> reopen(const TempDir& dir) {
        ::unsetenv("PMEM2_FORCE_GRANULARITY");
        return Pmem2Device::open(dir.file("pmem"));
    }
    static void check_granularity(const Device& d) {
        EXPECT_EQ(d.granularity(), PmemGranularity::page) << granularity_name(d.granularity());
    }
};

// Pmem2Device with libpmem2 told the tmpfs file is cache-line pmem: exercises the clwb/sfence
// and non-temporal paths (durability is then fictitious, build-notes gotcha 4).
struct Pmem2CacheLineKind {
    using Device = Pmem2Device;
    static constexpr const char* name = "Pmem2ForcedCacheLine";
    static constexpr bool file_backed = true;
    static const char* parent_dir() { return "/dev/shm"; }
    static Result<Device> make(const TempDir& dir, std::uint64_t size_bytes) {
        return forced([&] {
            return Pmem2Device::open(dir.file("pmem"), {.create = true, .size_bytes = size_bytes});
        });
    }
    static Result<Device> reopen(const TempDir& dir) {
        return forced([&] { return Pmem2Device::open(dir.file("pmem")); });
    }
    static void check_granularity(const Device& d) {
        EXPECT_EQ(d.granularity(), PmemGranularity::cache_line)
            << granularity_name(d.granularity());
    }

private:
    template <class F>
    static Result<Device> forced(F open) {
        // libpmem2 reads the variable when it maps; unset it again so no other test sees it.
        ::setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 1);
        Result<Device> r = open();
        ::unsetenv("PMEM2_FORCE_GRANULARITY");
        return r;
    }
};

// ---- BlockDevice kinds --------------------------------------------------------------------

struct MemBlockKind {
    using Device = MemBlockDevice;
    static constexpr const char* name = "MemBlock";
    static constexpr bool file_backed = false;
    static const char* parent_dir() { return "/dev/shm"; }
    static Result<Device> make(const TempDir&, std::uint64_t size_bytes) {
        return MemBlockDevice(size_bytes);
    }
    static Result<Device> reopen(const TempDir&) {
        return {Errc::unsupported, "MemBlockDevice has no backing file"};
    }
};

// File-backed block kinds share everything but the class, O_DIRECT and the directory.
template <class D, bool Direct>
struct FileBlockKindBase {
    using Device = D;
    static constexpr bool file_backed = true;
    static constexpr bool direct = Direct;
    // tmpfs refuses O_DIRECT; /var/tmp is on a disk file system here.
    static const char* parent_dir() { return Direct ? "/var/tmp" : "/dev/shm"; }
    static Result<Device> open(const std::string& path, BlockOpenOptions options) {
        options.direct = Direct;
        return Device::open(path, options);
    }
    static Result<Device> make(const TempDir& dir, std::uint64_t size_bytes) {
        return open(dir.file("disk"), {.create = true, .size_bytes = size_bytes});
    }
    static Result<Device> reopen(const TempDir& dir) { return open(dir.file("disk"), {}); }
};
struct FileBufferedKind : FileBlockKindBase<FileBlockDevice, false> {
    static constexpr const char* name = "FileBuffered";
};
struct FileDirectKind : FileBlockKindBase<FileBlockDevice, true> {
    static constexpr const char* name = "FileDirect";
};
struct UringBufferedKind : FileBlockKindBase<UringBlockDevice, false> {
    static constexpr const char* name = "UringBuffered";
};
struct UringDirectKind : FileBlockKindBase<UringBlockDevice, true> {
    static constexpr const char* name = "UringDirect";
};

// For TYPED_TEST_SUITE: names the instantiations after the kinds, not 0, 1, 2.
struct KindName {
    template <class Kind>
    static std::string GetName(int) {
        return Kind::name;
    }
};

}  // namespace pcache::testutil
