// nbdkit-pcache-delay-plugin.so: a RAM disk whose writes take delay_us microseconds, for the
// network backing-device benchmark (net_bench.cpp). nbdkit 1.32's delay filter counts whole
// milliseconds; a network block device answers in 100 us - 1 ms, so this plugin sleeps with
// microsecond resolution. Requests run in parallel (one nbdkit thread each: start nbdkit with
// --threads >= the queue depth).
//
//   nbdkit -U SOCK ./nbdkit-pcache-delay-plugin.so size=1G delay_us=200
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

namespace {

std::uint64_t g_size = 0;
unsigned long g_delay_us = 0;
std::unique_ptr<std::byte[]> g_bytes;

int config(const char* key, const char* value) {
    const std::string k = key;
    if (k == "size") {
        const std::int64_t s = nbdkit_parse_size(value);
        if (s <= 0) return -1;
        g_size = static_cast<std::uint64_t>(s);
    } else if (k == "delay_us") {
        g_delay_us = std::strtoul(value, nullptr, 10);
    } else {
        nbdkit_error("unknown parameter '%s' (expected size, delay_us)", key);
        return -1;
    }
    return 0;
}

int get_ready() {
    if (g_size == 0) {
        nbdkit_error("size=BYTES is required");
        return -1;
    }
    g_bytes.reset(new (std::nothrow) std::byte[g_size]());
    if (!g_bytes) {
        nbdkit_error("cannot allocate %llu bytes", static_cast<unsigned long long>(g_size));
        return -1;
    }
    return 0;
}

void* open_handle(int) { return g_bytes.get(); }
int64_t get_size(void*) { return static_cast<int64_t>(g_size); }
int can_flush(void*) { return 1; }
int can_fua(void*) { return NBDKIT_FUA_NATIVE; }
int can_multi_conn(void*) { return 1; }

int plugin_pread(void*, void* buf, uint32_t count, uint64_t offset, uint32_t) {
    std::memcpy(buf, g_bytes.get() + offset, count);
    return 0;
}

int plugin_pwrite(void*, const void* buf, uint32_t count, uint64_t offset, uint32_t) {
    if (g_delay_us) {
        timespec ts{static_cast<time_t>(g_delay_us / 1000000),
                    static_cast<long>(g_delay_us % 1000000) * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    std::memcpy(g_bytes.get() + offset, buf, count);
    return 0;
}

int plugin_flush(void*, uint32_t) { return 0; }

nbdkit_plugin make_plugin() {
    nbdkit_plugin p{};
    p.name = "pcache-delay";
    p.version = "0.1.0";
    p.description = "RAM disk with a fixed write latency (pcache benchmarks)";
    p.config = config;
    p.config_help = "size=<SIZE> (required), delay_us=<N> microseconds per write";
    p.get_ready = get_ready;
    p.open = open_handle;
    p.get_size = get_size;
    p.can_flush = can_flush;
    p.can_fua = can_fua;
    p.can_multi_conn = can_multi_conn;
    p.pread = plugin_pread;
    p.pwrite = plugin_pwrite;
    p.flush = plugin_flush;
    return p;
}

nbdkit_plugin plugin = make_plugin();

}  // namespace

NBDKIT_REGISTER_PLUGIN(plugin)
