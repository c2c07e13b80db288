// Seeded bugs (mutants) of the crash harness: crash-model.md, "Proving the harness works".
//
// scripts/mutants.sh builds the test targets with -DPCACHE_MUTANT=M<n>; CMake then defines
// PCACHE_MUTANT_ID=<n> on the pcache_mutant target, which only test targets link (never the
// exported pcache::core, never an install). Every other build has PCACHE_MUTANT_ID 0, so every
// `mutant(n)` is a false constant and the compiler drops the seeded code, but still compiles
// and type-checks it: a mutant cannot rot unnoticed.
//
// The pattern at a site (one line where possible, the mutant's id in a comment with what it
// breaks):
//
//     if constexpr (mutant(5)) size_bytes -= 8;  // M5: the CRC misses the last key's last word
//
//     if (Status s = backing_.flush(); !s.ok() && !mutant(19)) return fail(s);  // M19: ...
//
//     if constexpr (mutant(4)) {   // M4: dirty_tail persisted before the backing flush
//         ... the wrong order ...
//     } else {
//         ... the right order ...
//     }
//
// Converting an old `#ifdef PCACHE_MUTANT_Mx` block: `#ifdef PCACHE_MUTANT_Mx A #else B #endif`
// becomes `if constexpr (mutant(x)) { A } else { B }`; `#ifndef PCACHE_MUTANT_Mx B #endif`
// becomes `if constexpr (!mutant(x)) { B }` (or `&& !mutant(x)` inside the condition). Both
// branches must compile in every build; a mutant that cannot be written as an expression
// (a different declaration) declares both and picks one with mutant(x). Then add the id to
// scripts/mutants.table.
#pragma once

#ifndef PCACHE_MUTANT_ID
#define PCACHE_MUTANT_ID 0
#endif

namespace pcache {

inline constexpr int kMutant = PCACHE_MUTANT_ID;  // 0: no seeded bug (every shipped build)

// Is seeded bug M<id> planted in this build?
constexpr bool mutant(int id) noexcept { return kMutant != 0 && kMutant == id; }

}  // namespace pcache
