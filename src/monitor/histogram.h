// Log-linear histogram buckets: values below 64 ns are exact; above, 64
// sub-buckets per power of two up to 2^36 ns (68.7 s; larger values fall in
// the last bucket, and the exact maximum is kept beside). A bucket's
// midpoint is within 1/128 (0.78%) of any value in it.
#pragma once

#include <cstdint>

namespace sluice::hist {

constexpr int kSubBits = 6;
constexpr uint32_t kSub = 1u << kSubBits;  // 64
constexpr int kMaxExp = 35;                // values < 2^36
constexpr uint32_t kBuckets = kSub + (kMaxExp - kSubBits + 1) * kSub;  // 1984

inline uint32_t index_of(uint64_t v) {
  if (v < kSub) return uint32_t(v);
  int e = 63 - __builtin_clzll(v);
  if (e > kMaxExp) return kBuckets - 1;
  return kSub + uint32_t(e - kSubBits) * kSub + uint32_t((v >> (e - kSubBits)) & (kSub - 1));
}

// The midpoint of bucket `i`: what a percentile that falls in it reports.
inline uint64_t value_of(uint32_t i) {
  if (i < kSub) return i;
  uint32_t e = (i - kSub) / kSub + kSubBits, sub = (i - kSub) % kSub;
  uint64_t width = uint64_t{1} << (e - kSubBits);
  return (uint64_t{kSub} + sub) * width + width / 2;
}

// Buckets entirely below 2^k ns (k >= 6): the cumulative count for a
// Prometheus bucket with that bound is exact.
inline uint32_t buckets_below_pow2(int k) {
  if (k > kMaxExp + 1) return kBuckets;
  return kSub + uint32_t(k - kSubBits) * kSub;
}

}  // namespace sluice::hist
