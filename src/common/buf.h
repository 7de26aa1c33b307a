// Filling a sluice_buf the caller will free with sluice_buf_free.
#pragma once

#include <string_view>

#include "sluice/common.h"

namespace sluice {

// Replaces the contents of `out` with `text`; SLUICE_ENOMEM on failure.
int buf_set(sluice_buf *out, std::string_view text);

}  // namespace sluice
