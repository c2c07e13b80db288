// Shared pieces of the simulator: the always-on assertion, the seeded generator, the trace
// hash, persistence events and the crash hook.
//
// Determinism contract: nothing here reads a clock or std::random_device. A run is a function
// of its seed; the trace hash (FNV-1a 64 over every persistence event) is the proof, and two
// runs of one seed must produce the same hash.
//
// Crash hook: each SimPmem::drain() and each SimBlockDevice::flush() calls
// SimContext::on_persist() *before* the fence or flush takes effect. The hook may throw SimCrash
// to unwind out of the code under test at exactly that point: the devices are then left in the
// pre-fence state, which is the state a power failure at that instant would leave. An exception
// is the only way to stop an engine that knows nothing of the simulator without a hook in every
// caller; the engine must therefore be exception-neutral (RAII only, no catch-all). SimCrash
// deliberately does not derive from std::exception so that `catch (const std::exception&)` in
// code under test cannot swallow it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string_view>

// Always-on invariant check (tier 1 of style.md): cheap, aborts with file:line.
#define PCACHE_SIM_ASSERT(cond)                                                                 \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            std::fprintf(stderr, "%s:%d: simulator assertion failed: %s\n", __FILE__, __LINE__, \
                         #cond);                                                                \
            std::abort();                                                                       \
        }                                                                                       \
    } while (0)

namespace pcache::sim {

// splitmix64: seeds xoshiro and derives independent streams from (seed, index) pairs.
constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// xoshiro256** (Blackman & Vigna): the one generator of the simulator.
class Rng {
public:
    explicit constexpr Rng(std::uint64_t seed) noexcept {
        std::uint64_t sm = seed;
        for (auto& word : s_) word = splitmix64(sm);
    }
    constexpr std::uint64_t next() noexcept {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform in [0, bound): rejection sampling, so small bounds carry no modulo bias.
    constexpr std::uint64_t below(std::uint64_t bound) noexcept {
        PCACHE_SIM_ASSERT(bound > 0);
        const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % bound);
        for (int attempt = 0; attempt < 64; ++attempt) {  // P(64 rejections) < 2^-64
            const std::uint64_t x = next();
            if (x < limit) return x % bound;
        }
        return next() % bound;
    }

private:
    static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
        return (x << k) | (x >> (64 - k));
    }
    std::uint64_t s_[4] = {};
};

// FNV-1a 64 over a stream of 64-bit values (each hashed as 8 little-endian bytes).
class TraceHash {
public:
    static constexpr std::uint64_t kOffsetBasis = 0xCBF29CE484222325ull;
    static constexpr std::uint64_t kPrime = 0x100000001B3ull;
    constexpr void mix(std::uint64_t value) noexcept {
        for (int byte_index = 0; byte_index < 8; ++byte_index) {
            hash_ ^= (value >> (8 * byte_index)) & 0xFF;
            hash_ *= kPrime;
        }
        ++events_;
    }
    constexpr std::uint64_t value() const noexcept { return hash_; }
    constexpr std::uint64_t events() const noexcept { return events_; }

private:
    std::uint64_t hash_ = kOffsetBasis;
    std::uint64_t events_ = 0;
};

// Whether recovery must come through a fault intact, or must notice it and report an error.
enum class FaultTag { must_survive, must_detect };
constexpr std::string_view fault_tag_name(FaultTag t) noexcept {
    return t == FaultTag::must_survive ? "must-survive" : "must-detect";
}

// Trace event codes (stable: they feed the trace hash).
enum class EventKind : std::uint64_t {
    pmem_write = 1,
    pmem_flush = 2,
    pmem_drain = 3,
    block_write = 4,
    block_flush = 5,
    sched_step = 6,
    crash = 7,
};

// A persistence point: a pmem drain or a block flush, numbered from 1 across both devices.
struct PersistEvent {
    EventKind kind = EventKind::pmem_drain;
    std::uint64_t ordinal = 0;  // 1-based, over every persistence point of the context
};

// Thrown by a hook to cut the run at a persistence point (see the header comment).
struct SimCrash {
    PersistEvent event;
};

// Shared by the devices of one simulated machine: trace hash, persistence counter and hook.
struct SimContext {
    TraceHash trace;
    std::uint64_t persist_points = 0;
    std::function<void(const PersistEvent&)> hook;

    void record(EventKind kind, std::uint64_t a, std::uint64_t b) {
        trace.mix(static_cast<std::uint64_t>(kind));
        trace.mix(a);
        trace.mix(b);
    }
    // Called at the start of every drain and block flush; may throw SimCrash.
    void on_persist(EventKind kind) {
        PCACHE_SIM_ASSERT(kind == EventKind::pmem_drain || kind == EventKind::block_flush);
        ++persist_points;
        record(kind, persist_points, 0);
        if (hook) hook(PersistEvent{kind, persist_points});
    }
    // A hook that crashes at persistence point `ordinal` (1-based); 0 disables it.
    void crash_at(std::uint64_t ordinal) {
        if (ordinal == 0) {
            hook = nullptr;
            return;
        }
        hook = [this, ordinal](const PersistEvent& e) {
            if (e.ordinal == ordinal) {
                record(EventKind::crash, e.ordinal, 0);
                throw SimCrash{e};
            }
        };
    }
};

// Reads a decimal u64 from the environment (reproduce commands override seeds this way).
inline std::optional<std::uint64_t> env_u64(const char* name) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') return std::nullopt;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 0);
    if (end == nullptr || *end != '\0') return std::nullopt;
    return static_cast<std::uint64_t>(v);
}

}  // namespace pcache::sim
