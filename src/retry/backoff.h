// Backoff arithmetic: the seeded random source and the delay of each jitter
// mode. Pure functions, shared by policies, sessions and
// sluice_retry_next_delay; the formulas are the ones retry.h documents.
#pragma once

#include <cstdint>

#include "sluice/retry.h"

namespace sluice::retry {

// splitmix64's output function: a bijection that scrambles every bit.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t next_random(uint64_t *state) {
  *state += 0x9E3779B97F4A7C15ull;
  return mix64(*state);
}

// Uniform over the integers lo..hi (inclusive), by multiply-high: exact and
// free of the bias a modulo would have.
inline uint64_t uniform(uint64_t *state, uint64_t lo, uint64_t hi) {
  uint64_t span = hi - lo + 1;  // never 0: delays stay far below 2^63
  return lo + uint64_t((unsigned __int128)next_random(state) * span >> 64);
}

inline uint64_t run_seed(uint64_t seed, uint64_t run) { return mix64(seed ^ mix64(run + 1)); }

struct Backoff {
  uint64_t base_ns = 0, max_ns = 0;
  double multiplier = 2.0;
  int jitter = SLUICE_RETRY_JITTER_FULL;

  // min(max, floor(base * multiplier^(retry-1))), the power taken by
  // repeated squaring in double, which is exact IEEE arithmetic and so the
  // same everywhere.
  uint64_t exponential(uint32_t retry) const;
  uint64_t delay(uint32_t retry, uint64_t prev_ns, uint64_t *rng) const;
};

// Checks every field of `o` (message names the first bad one, prefixed by
// `fn`). *b gets the backoff part.
int validate(const sluice_retry_options &o, const char *fn, Backoff *b);

}  // namespace sluice::retry
