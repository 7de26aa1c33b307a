// A statement and its copied parameters in one block, and the result slots
// of a work. Both keep the common case (one short query with a few
// parameters) free of allocations of their own: the block is inline in the
// object that owns it when it fits, and the first result slot is inline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

struct sluice_pg_result;

namespace sluice::pg {

class Statement {
 public:
  Statement() { inline_[0] = '\0'; }
  ~Statement();
  Statement(Statement &&o) noexcept;
  Statement &operator=(Statement &&o) noexcept;
  Statement(const Statement &) = delete;
  Statement &operator=(const Statement &) = delete;

  // Any thread. Validates the arguments and copies them (the caller's
  // memory is only valid during its call). Returns 0, or SLUICE_EINVAL /
  // SLUICE_ENOMEM with the message set and the statement left empty.
  int assign(const char *sql, int nparams, const char *const *values, const int *lengths,
             const int *formats);

  std::string_view sql() const { return {sql_cstr(), sql_len_}; }
  // The caller's SQL pointer: never read, only a hint for the statement
  // cache (a caller usually passes the same literal for the same SQL).
  const void *origin() const { return origin_; }
  const char *sql_cstr() const { return data_ + sql_offset(); }  // NUL-terminated
  int nparams() const { return nparams_; }
  // libpq's arrays: lengths (0 for NULL and for text values, which libpq
  // reads up to their NUL) and formats (0 text, 1 binary).
  const int *lengths() const { return reinterpret_cast<const int *>(data_); }
  const int *formats() const { return lengths() + nparams_; }
  // Points out[0..nparams) at the parameters' bytes, NULL for an SQL NULL.
  void values(const char **out) const;

 private:
  // Sized so the whole object is 256 bytes: a statement of about 150
  // characters with a few short parameters fits.
  static constexpr uint32_t kInline = 256 - 32;
  size_t sql_offset() const { return size_t(nparams_) * (2 * sizeof(int) + 1); }
  const unsigned char *nulls() const {
    return reinterpret_cast<const unsigned char *>(formats() + nparams_);
  }
  void clear();

  // Layout: int lengths[n], int formats[n], uint8 is_null[n], the SQL and
  // its NUL, then each non-NULL value followed by a NUL.
  char *data_ = inline_;
  const void *origin_ = nullptr;
  uint32_t cap_ = kInline;  // of data_; a block from the arena when above kInline
  uint32_t size_ = 1;       // bytes used (an empty statement is its NUL)
  uint32_t sql_len_ = 0;
  int32_t nparams_ = 0;
  alignas(int) char inline_[kInline];
};

// One slot per statement of a work, each owning its result (or empty).
class ResultSlots {
 public:
  ResultSlots() = default;
  ~ResultSlots();
  ResultSlots(const ResultSlots &) = delete;
  ResultSlots &operator=(const ResultSlots &) = delete;

  // Deletes the results held and makes `n` empty slots; may throw
  // std::bad_alloc for more than one.
  void reset(size_t n);
  void clear() { reset(0); }
  // Hands every result over to `out` (replacing its content); the slots
  // are left empty.
  void move_to(std::vector<sluice_pg_result *> &out);

  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  sluice_pg_result *&operator[](size_t i) { return p_[i]; }
  sluice_pg_result **begin() { return p_; }
  sluice_pg_result **end() { return p_ + n_; }

 private:
  sluice_pg_result *one_ = nullptr;
  sluice_pg_result **p_ = &one_;
  size_t n_ = 0, cap_ = 1;
};

}  // namespace sluice::pg
