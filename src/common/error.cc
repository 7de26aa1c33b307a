#include "common/error.h"

#include <cstdarg>
#include <cstdio>

namespace sluice {
namespace {
thread_local char t_message[512];
}

int fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(t_message, sizeof t_message, fmt, ap);
  va_end(ap);
  return code;
}

const char *error_message() { return t_message; }

int check_version(const char *what, unsigned version, unsigned current) {
  if (version == 0 || version > current)
    return fail(SLUICE_EVERSION,
                "%s: version %u is not supported (this library knows 1..%u)",
                what, version, current);
  return 0;
}

}  // namespace sluice

extern "C" {

const char *sluice_error_message(void) { return sluice::error_message(); }

const char *sluice_strerror(int code) {
  switch (code) {
    case 0:
      return "success";
#define SLUICE_STRERROR_CASE_(name, value, msg) \
  case value:                                   \
    return msg;
    SLUICE_ERRNO_MAP(SLUICE_STRERROR_CASE_)
#undef SLUICE_STRERROR_CASE_
  }
  return "unknown error";
}

const char *sluice_err_name(int code) {
  switch (code) {
    case 0:
      return "SLUICE_OK";
#define SLUICE_ERRNAME_CASE_(name, value, msg) \
  case value:                                  \
    return "SLUICE_" #name;
    SLUICE_ERRNO_MAP(SLUICE_ERRNAME_CASE_)
#undef SLUICE_ERRNAME_CASE_
  }
  return "SLUICE_EUNKNOWN";
}

unsigned int sluice_version(void) { return SLUICE_VERSION_HEX; }

const char *sluice_version_string(void) { return SLUICE_VERSION_STRING; }

}  // extern "C"
