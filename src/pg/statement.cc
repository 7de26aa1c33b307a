// Statements (one block per statement, inline when small) and result slots.
#include "pg/statement.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "common/error.h"
#include "pg/pg.h"

namespace sluice::pg {

Statement::~Statement() { clear(); }

void Statement::clear() {
  if (data_ != inline_) mem::release(data_, cap_);
  data_ = inline_;
  cap_ = kInline;
  size_ = 1;
  origin_ = nullptr;
  sql_len_ = 0;
  nparams_ = 0;
  inline_[0] = '\0';
}

Statement::Statement(Statement &&o) noexcept { *this = std::move(o); }

Statement &Statement::operator=(Statement &&o) noexcept {
  if (this == &o) return *this;
  clear();
  if (o.data_ == o.inline_) {
    std::memcpy(inline_, o.inline_, o.size_);
  } else {
    data_ = o.data_;
    cap_ = o.cap_;
    o.data_ = o.inline_;  // the block is ours now
    o.cap_ = kInline;
  }
  size_ = o.size_;
  origin_ = o.origin_;
  sql_len_ = o.sql_len_;
  nparams_ = o.nparams_;
  o.clear();
  return *this;
}

int Statement::assign(const char *sql, int nparams, const char *const *values, const int *lengths,
                      const int *formats) {
  clear();
  if (!sql) return fail(SLUICE_EINVAL, "sql is NULL");
  if (nparams < 0 || nparams > 65535)
    return fail(SLUICE_EINVAL, "nparams %d is outside 0..65535", nparams);
  if (nparams > 0 && !values) return fail(SLUICE_EINVAL, "values is NULL with %d parameters", nparams);
  // First pass: check everything and size the block.
  size_t sql_len = std::strlen(sql);
  size_t total = size_t(nparams) * (2 * sizeof(int) + 1) + sql_len + 1;
  for (int i = 0; i < nparams; i++) {
    int fmt = formats ? formats[i] : 0;
    if (fmt != 0 && fmt != 1) return fail(SLUICE_EINVAL, "parameter %d: format %d is not 0 or 1", i + 1, fmt);
    if (!values[i]) continue;
    if (fmt == 1) {
      if (!lengths || lengths[i] < 0)
        return fail(SLUICE_EINVAL, "parameter %d: a binary value needs a length >= 0", i + 1);
      total += size_t(lengths[i]) + 1;
    } else {
      total += std::strlen(values[i]) + 1;
    }
  }
  // libpq takes lengths as int, and the server takes at most 1 GiB anyway.
  if (total > size_t(INT_MAX))
    return fail(SLUICE_EINVAL, "the statement and its parameters take %zu bytes (at most %d)", total,
                INT_MAX);
  if (total > cap_) {
    void *block = mem::allocate(total);
    if (!block) return fail(SLUICE_ENOMEM, "out of memory copying a statement of %zu bytes", total);
    data_ = static_cast<char *>(block);
    cap_ = uint32_t(total);
  }
  // Second pass: copy. The caller's memory is read twice; every copy is
  // bounded by the room left, so a value that changed in between (the
  // caller's bug) cannot overrun the block.
  int *len = reinterpret_cast<int *>(data_);
  int *fmt = len + nparams;
  auto *null = reinterpret_cast<unsigned char *>(fmt + nparams);
  char *p = data_ + size_t(nparams) * (2 * sizeof(int) + 1);
  char *end = data_ + total;
  std::memcpy(p, sql, sql_len);
  p[sql_len] = '\0';
  p += sql_len + 1;
  for (int i = 0; i < nparams; i++) {
    fmt[i] = formats ? formats[i] : 0;
    len[i] = 0;
    null[i] = values[i] == nullptr || p >= end;  // no room: only if the values changed
    if (null[i]) continue;
    size_t room = size_t(end - p - 1);
    size_t n = fmt[i] == 1 ? std::min(size_t(std::max(lengths[i], 0)), room)
                           : strnlen(values[i], room);
    std::memcpy(p, values[i], n);
    p[n] = '\0';
    p += n + 1;
    len[i] = int(n);
  }
  size_ = uint32_t(p - data_);
  origin_ = sql;
  sql_len_ = uint32_t(sql_len);
  nparams_ = nparams;
  return 0;
}

void Statement::values(const char **out) const {
  const char *p = sql_cstr() + sql_len_ + 1;
  const int *len = lengths();
  const unsigned char *null = nulls();
  for (int i = 0; i < nparams_; i++) {
    if (null[i]) {
      out[i] = nullptr;
      continue;
    }
    out[i] = p;
    p += size_t(len[i]) + 1;
  }
}

ResultSlots::~ResultSlots() {
  clear();
  if (p_ != &one_) mem::release(p_, cap_ * sizeof *p_);
}

void ResultSlots::reset(size_t n) {
  for (size_t i = 0; i < n_; i++) delete p_[i];
  n_ = 0;
  if (n > cap_) {
    void *block = mem::allocate(n * sizeof *p_);
    if (!block) throw std::bad_alloc();
    if (p_ != &one_) mem::release(p_, cap_ * sizeof *p_);
    p_ = static_cast<sluice_pg_result **>(block);
    cap_ = n;
  }
  for (size_t i = 0; i < n; i++) p_[i] = nullptr;
  n_ = n;
}

void ResultSlots::move_to(std::vector<sluice_pg_result *> &out) {
  out.reserve(n_);  // the only step that can throw: nothing has moved yet
  for (auto *r : out) delete r;
  out.assign(begin(), end());
  for (size_t i = 0; i < n_; i++) p_[i] = nullptr;
  n_ = 0;
}

}  // namespace sluice::pg
