// Internal error reporting: thread-local detail text and the guard that keeps
// C++ exceptions from crossing the C boundary.
#pragma once

#include <new>

#include "sluice/common.h"

namespace sluice {

// Records a printf-style detail for sluice_error_message() on this thread and
// returns `code`, so entry points can write `return fail(SLUICE_EINVAL, ...)`.
int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Runs `body` and maps any exception to an error code. Every extern "C"
// entry point that can allocate or call into C++ goes through this.
template <class F>
int guarded(F &&body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc &) {
    return fail(SLUICE_ENOMEM, "out of memory");
  } catch (...) {
    return fail(SLUICE_EINTERNAL, "unexpected internal exception");
  }
}

// Checks an options struct's version field: 1..current is accepted.
int check_version(const char *what, unsigned version, unsigned current);

}  // namespace sluice
