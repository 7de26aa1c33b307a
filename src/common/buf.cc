#include "common/buf.h"

#include <cstring>

#include "alloc/alloc.h"
#include "common/error.h"

namespace sluice {

int buf_set(sluice_buf *out, std::string_view text) {
  char *p = static_cast<char *>(mem::allocate(text.size() + 1));
  if (!p) return fail(SLUICE_ENOMEM, "out of memory for a %zu-byte string", text.size());
  std::memcpy(p, text.data(), text.size());
  p[text.size()] = '\0';
  sluice_buf_free(out);
  out->ptr = p;
  out->size = text.size();
  return 0;
}

}  // namespace sluice

extern "C" {

void sluice_buf_free(sluice_buf *buf) {
  if (!buf || !buf->ptr) return;
  sluice::mem::release(buf->ptr, buf->size + 1);
  buf->ptr = nullptr;
  buf->size = 0;
}

int sluice_error_message_copy(sluice_buf *out) {
  if (!out) return sluice::fail(SLUICE_EINVAL, "sluice_error_message_copy: out is NULL");
  return sluice::buf_set(out, sluice_error_message());
}

}  // extern "C"
