// sluice_runtime_timer: a waiting operation whose deadline is its success.
#include "common/error.h"
#include "runtime/runtime.h"

namespace sluice {
namespace {

struct TimerOp final : sluice_op {
  using sluice_op::sluice_op;
  void on_deadline() override { complete(0); }
};

// 2^40 ms is about 35 years: anything above is a units mistake.
constexpr uint64_t kMaxDelayMs = uint64_t{1} << 40;

}  // namespace
}  // namespace sluice

extern "C" int sluice_runtime_timer(sluice_runtime *handle, uint64_t delay_ms,
                                    sluice_status_cb cb, void *user_data,
                                    sluice_free_cb free_user_data, sluice_op **op_out) {
  using namespace sluice;
  if (!handle) return fail(SLUICE_EINVAL, "sluice_runtime_timer: runtime is NULL");
  if (!cb) return fail(SLUICE_EINVAL, "sluice_runtime_timer: callback is NULL");
  if (delay_ms > kMaxDelayMs)
    return fail(SLUICE_EINVAL, "sluice_runtime_timer: delay %llu ms is above 2^40 ms",
                static_cast<unsigned long long>(delay_ms));
  Runtime *rt = unwrap(handle);
  return guarded([&] {
    auto *op = new TimerOp(rt, cb, user_data, free_user_data);
    if (op_out) op->ref();
    // A zero delay still goes through the schedule so it never runs inline.
    int rc = rt->start(op, sluice_now_ns() + delay_ms * 1000000 + (delay_ms == 0));
    if (rc != 0) {
      delete op;
      return rc;
    }
    if (op_out) *op_out = op;
    return 0;
  });
}
