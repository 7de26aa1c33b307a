// Copying a figures struct out to a caller whose struct may be older
// (smaller) or newer (larger): its `size` says how much it has.
#pragma once

#include <cstring>

#include "common/error.h"

namespace sluice {

template <class T>
int copy_sized(T *out, const T &full, const char *fn) {
  if (out->size < sizeof(size_t)) return fail(SLUICE_EINVAL, "%s: size %zu is too small", fn, out->size);
  size_t n = out->size < sizeof(T) ? out->size : sizeof(T);
  size_t caller_size = out->size;
  std::memcpy(out, &full, n);
  out->size = caller_size;
  return 0;
}

}  // namespace sluice
