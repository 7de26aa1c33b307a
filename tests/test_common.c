/* Error codes, version, buffers and the thread-local error message. */
#include <string.h>

#include "testutil.h"

static void test_version(void **state) {
  (void)state;
  assert_int_equal(sluice_version(), SLUICE_VERSION_HEX);
  assert_string_equal(sluice_version_string(), SLUICE_VERSION_STRING);
  assert_int_equal(sluice_version() >> 16, SLUICE_VERSION_MAJOR);
}

static void test_error_names_and_messages(void **state) {
  (void)state;
  assert_string_equal(sluice_err_name(0), "SLUICE_OK");
  assert_string_equal(sluice_strerror(0), "success");
  /* Every listed code has its own name and a real message. */
#define CHECK_CODE(name, value, msg)                                 \
  assert_int_equal(SLUICE_##name, value);                             \
  assert_string_equal(sluice_err_name(value), "SLUICE_" #name);       \
  assert_string_equal(sluice_strerror(value), msg);                   \
  assert_true(value < 0);
  SLUICE_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
  assert_string_equal(sluice_err_name(-9999), "SLUICE_EUNKNOWN");
  assert_string_equal(sluice_strerror(-9999), "unknown error");
  assert_string_equal(sluice_err_name(5), "SLUICE_EUNKNOWN");
}

static void test_codes_are_distinct(void **state) {
  (void)state;
  int codes[] = {
#define LIST_CODE(name, value, msg) value,
      SLUICE_ERRNO_MAP(LIST_CODE)
#undef LIST_CODE
  };
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++) assert_int_not_equal(codes[i], codes[j]);
  assert_int_equal(codes[n - 1], SLUICE_ERRNO_LAST_);
}

static void test_buf(void **state) {
  (void)state;
  sluice_buf_free(NULL);
  sluice_buf empty = SLUICE_BUF_INIT;
  sluice_buf_free(&empty);
  assert_null(empty.ptr);

  /* A failing call leaves a message that names what was wrong. */
  assert_err(SLUICE_EINVAL, sluice_runtime_new(NULL, NULL));
  assert_non_null(strstr(sluice_error_message(), "out is NULL"));
  sluice_buf b = SLUICE_BUF_INIT;
  assert_ok(sluice_error_message_copy(&b));
  assert_non_null(b.ptr);
  assert_int_equal(b.size, strlen(b.ptr));
  assert_string_equal(b.ptr, sluice_error_message());
  /* Copying again replaces the old string without leaking it. */
  assert_err(SLUICE_EINVAL, sluice_op_cancel(NULL));
  assert_ok(sluice_error_message_copy(&b));
  assert_non_null(strstr(b.ptr, "sluice_op_cancel"));
  sluice_buf_free(&b);
  assert_null(b.ptr);
  assert_int_equal(b.size, 0);
  assert_err(SLUICE_EINVAL, sluice_error_message_copy(NULL));
}

static void test_now_is_monotonic(void **state) {
  (void)state;
  uint64_t a = sluice_now_ns();
  for (int i = 0; i < 1000; i++) {
    uint64_t b = sluice_now_ns();
    assert_true(b >= a);
    a = b;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_error_names_and_messages),
      cmocka_unit_test(test_codes_are_distinct),
      cmocka_unit_test(test_buf),
      cmocka_unit_test(test_now_is_monotonic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
