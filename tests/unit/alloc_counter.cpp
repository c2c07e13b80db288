// Counts every call of the global operator new of the binary it is linked into (its own
// translation unit, so the compiler never sees malloc paired with a delete expression).
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {
std::atomic<std::uint64_t> g_news{0};
}  // namespace

std::uint64_t operator_new_calls() { return g_news.load(std::memory_order_relaxed); }

void* operator new(std::size_t n) {
    g_news.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
