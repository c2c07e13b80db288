// Fuzz target: whole-image replay. Cache::open on an engine-written image mutated by the input
// (fuzz_image.hpp gives the input format). Open may refuse the image; it must never read or
// write out of bounds, loop without bound, or accept an image whose in-memory state then fails
// the engine's own invariant check. PCACHE_FUZZ_VERBOSE=1 prints what open said.
#include <cstdint>
#include <cstdlib>

#include "fuzz_image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace pcache::fuzz;
    static Rig rig;
    const Template& t = prepare(rig, data, size);
    auto opened = MemCache::open(borrow(rig.pmem), borrow(rig.backing), t.opts);
    static const bool verbose = std::getenv("PCACHE_FUZZ_VERBOSE") != nullptr;
    if (verbose)
        std::fprintf(stderr, "template %s: open: %s\n", t.name.c_str(),
                     opened.status().to_string().c_str());
    if (!opened.ok()) {
        PCACHE_FUZZ_CHECK(!opened.status().message().empty(), "an error without a message");
        return 0;
    }
    auto st = (*opened)->check_invariants();
    PCACHE_FUZZ_CHECK(st.ok(), "accepted image breaks an invariant: " + st.to_string());
    return 0;
}
