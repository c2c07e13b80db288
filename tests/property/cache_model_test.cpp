// Stateful property test of the engine against a model of the device (a byte array):
// random sequences of writes (any size and 512-byte alignment, overlapping, FUA or not), reads,
// FLUSH, clean reopen (close and replay), writeback and GC steps and gc_percent changes.
// Every read must equal the model; after "flush everything" the backing device alone must.
// Reproduce a failure with the RC_PARAMS="reproduce=..." line RapidCheck prints.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "cache_fixture.hpp"
#include "pcache/pmem/pmem2_device.hpp"

namespace pcache {
namespace {

using testutil::pattern;

constexpr std::uint64_t kDiskBytes = 12ull << 20;  // three subtrees

struct Op {
    enum Kind { write, read, flush, reopen, writeback, gc, gc_percent } kind;
    std::uint64_t off = 0;  // bytes
    std::uint32_t len = 0;  // bytes
    bool fua = false;
    std::uint32_t value = 0;  // data seed or gc_percent
};

void showValue(const Op& op, std::ostream& os) {
    static const char* names[] = {"write",     "read", "flush",     "reopen",
                                  "writeback", "gc",   "gc_percent"};
    os << names[op.kind] << "(off=" << op.off << " len=" << op.len << (op.fua ? " fua" : "")
       << " v=" << op.value << ")";
}

rc::Gen<Op> gen_op() {
    using rc::gen::inRange;
    auto sectors = rc::gen::weightedOneOf<std::uint32_t>({{6, inRange<std::uint32_t>(1, 17)},
                                                          {3, inRange<std::uint32_t>(17, 257)},
                                                          {1, inRange<std::uint32_t>(257, 2049)}});
    return rc::gen::weightedOneOf<Op>({
        {10, rc::gen::apply(
                 [](std::uint64_t s, std::uint32_t n, bool fua, std::uint32_t seed) {
                     n = static_cast<std::uint32_t>(
                         std::min<std::uint64_t>(n, kDiskBytes / 512 - s));
                     return Op{Op::write, s * 512, n * 512, fua, seed};
                 },
                 inRange<std::uint64_t>(0, kDiskBytes / 512 - 1), sectors,
                 rc::gen::weightedElement<bool>({{4, false}, {1, true}}),
                 rc::gen::arbitrary<std::uint32_t>())},
        {5, rc::gen::apply(
                [](std::uint64_t s, std::uint32_t n) {
                    n = static_cast<std::uint32_t>(
                        std::min<std::uint64_t>(n, kDiskBytes / 512 - s));
                    return Op{Op::read, s * 512, n * 512, false, 0};
                },
                inRange<std::uint64_t>(0, kDiskBytes / 512 - 1), sectors)},
        {2, rc::gen::just(Op{Op::flush})},
        {1, rc::gen::just(Op{Op::reopen})},
        {3, rc::gen::just(Op{Op::writeback})},
        {3, rc::gen::just(Op{Op::gc})},
        {1, rc::gen::map(inRange<std::uint32_t>(0, 91),
                         [](std::uint32_t p) {
                             return Op{Op::gc_percent, 0, 0, false, p};
                         })},
    });
}

// Runs writeback and GC until a busy write can go on; bounded. FLUSH may be busy here (its kset
// needs a segment that the steps below free); any other error fails.
template <class C>
void make_room(C& c) {
    const Status f = c.flush();
    RC_ASSERT(f.ok() || f.code() == Errc::busy);
    for (int i = 0; i < 4; ++i) {
        auto wb = c.writeback_step();
        RC_ASSERT(wb.status.ok());
        auto gc = c.gc_step();
        RC_ASSERT(gc.status.ok());
    }
}

// The pmem under test: in memory, or a libpmem2 mapping of a file under /dev/shm that is
// unmapped and mapped again at every reopen.
struct MemPmemHost {
    explicit MemPmemHost(std::uint64_t bytes) : pmem(bytes) {}
    MemPmem& get() { return pmem; }
    void remap() {}
    MemPmem pmem;
};
struct Pmem2Host {
    explicit Pmem2Host(std::uint64_t bytes) : size(bytes) {
        static std::atomic<int> serial{0};
        path = "/dev/shm/pcache-model-" + std::to_string(::getpid()) + "-" +
               std::to_string(serial++) + ".pmem";
        std::remove(path.c_str());
        remap(true);
    }
    ~Pmem2Host() { std::remove(path.c_str()); }
    Pmem2Device& get() { return *pmem; }
    void remap(bool create = false) {
        pmem.reset();
        auto p = Pmem2Device::open(path, Pmem2OpenOptions{create, size, PmemGranularity::page});
        RC_ASSERT(p.ok());
        pmem = std::make_unique<Pmem2Device>(std::move(p.value()));
    }
    std::string path;
    std::uint64_t size;
    std::unique_ptr<Pmem2Device> pmem;
};

template <class Host>
void run_model(bool data_crc, std::uint32_t segs) {
    using C = Cache<std::remove_reference_t<decltype(std::declval<Host&>().get())>, MemBlockDevice>;
    const auto ops = *rc::gen::container<std::vector<Op>>(gen_op());
    CacheOptions opts = testutil::small_options(data_crc);
    Host host(testutil::small_pmem_bytes(segs));
    MemBlockDevice disk(kDiskBytes);
    std::vector<std::byte> model(kDiskBytes);
    auto opened = C::format(borrow(host.get()), borrow(disk), opts);
    RC_ASSERT(opened.ok());
    auto c = std::move(opened.value());
    for (const Op& op : ops) {
        switch (op.kind) {
            case Op::write: {
                const auto d = pattern(op.len, op.value);
                Status s;
                std::uint64_t done = 0;
                for (int tries = 0; tries < 200; ++tries) {
                    std::uint64_t now = 0;
                    {
                        const WriteResult w =
                            c->write(op.off + done, std::span(d).subspan(done), {.fua = op.fua});
                        s = w.status;
                        now = w.done_bytes;
                    }
                    done += now;
                    if (s.code() != Errc::busy) break;
                    make_room(*c);
                }
                if (!s.ok()) RC_FAIL(s.to_string() + " status " + c->status_line());
                std::copy(d.begin(), d.end(), model.begin() + op.off);
                break;
            }
            case Op::read: {
                std::vector<std::byte> out(op.len);
                RC_ASSERT(c->read(op.off, out).ok());
                RC_ASSERT(std::equal(out.begin(), out.end(), model.begin() + op.off));
                break;
            }
            case Op::flush: {  // busy is retryable; after writeback and GC, FLUSH must complete
                Status s = c->flush();
                for (int tries = 0; tries < 50 && s.code() == Errc::busy; ++tries) {
                    make_room(*c);
                    s = c->flush();
                }
                if (!s.ok())
                    RC_FAIL("FLUSH never completed: " + s.to_string() + " status " +
                            c->status_line());
                break;
            }
            case Op::reopen: {
                Status s = c->close();
                for (int tries = 0; tries < 50 && s.code() == Errc::busy; ++tries) {
                    make_room(*c);
                    s = c->close();
                }
                RC_ASSERT(s.ok());
                c.reset();
                host.remap();
                auto r = C::open(borrow(host.get()), borrow(disk), opts);
                RC_ASSERT(r.ok());
                c = std::move(r.value());
                break;
            }
            case Op::writeback:
                RC_ASSERT(c->writeback_step().status.ok());
                break;
            case Op::gc:
                RC_ASSERT(c->gc_step().status.ok());
                break;
            case Op::gc_percent:
                RC_ASSERT(c->set_gc_percent(op.value).ok() == (op.value <= 90));
                break;
        }
        RC_ASSERT(c->check_invariants().ok());
    }
    // Whole device, then flush everything: the backing device alone equals the model.
    std::vector<std::byte> all(kDiskBytes);
    RC_ASSERT(c->read(0, all).ok());
    RC_ASSERT(all == model);
    Status f = c->flush();
    for (int i = 0; i < 100 && f.code() == Errc::busy; ++i) {
        make_room(*c);
        f = c->flush();
    }
    RC_ASSERT(f.ok());
    for (int i = 0; i < 100000 && !c->is_clean(); ++i) RC_ASSERT(c->writeback_step().status.ok());
    RC_ASSERT(c->is_clean());
    RC_ASSERT(disk.bytes() == model);
}

#ifdef PCACHE_MODEL_ON_PMEM2
RC_GTEST_PROP(CacheModelPmem2, MatchesModel, ()) { run_model<Pmem2Host>(false, 24); }
RC_GTEST_PROP(CacheModelPmem2, MatchesModelWithDataCrc, ()) { run_model<Pmem2Host>(true, 12); }
#else
RC_GTEST_PROP(CacheModel, MatchesModel, ()) { run_model<MemPmemHost>(false, 24); }
RC_GTEST_PROP(CacheModel, MatchesModelWithDataCrc, ()) { run_model<MemPmemHost>(true, 24); }
RC_GTEST_PROP(CacheModel, NearlyFullCache, ()) { run_model<MemPmemHost>(false, 6); }
#endif

}  // namespace
}  // namespace pcache
