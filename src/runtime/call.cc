// Runtime::call: run a function on the loop thread and wait for it.
#include "common/error.h"
#include "runtime/runtime.h"

namespace sluice {
namespace {

struct CallOp final : sluice_op {
  void (*fn)(void *);
  void *arg;
  CallOp(Runtime *rt, void (*f)(void *), void *a)
      : sluice_op(rt, [](void *, int) {}, nullptr, nullptr), fn(f), arg(a) {}
  void on_start() override {
    fn(arg);
    complete(0);
  }
  void on_cancel() override {}  // runs to the end once queued
  void on_shutdown() override {
    // Started but not run when the loop stops: run it now, still on the
    // loop thread, so the caller's work is never skipped.
    on_start();
  }
};

}  // namespace

int Runtime::call(void (*fn)(void *), void *arg) {
  if (is_loop_thread()) {
    fn(arg);
    return 0;
  }
  auto *op = new CallOp(this, fn, arg);
  op->ref();
  int rc = start(op, 0);
  if (rc != 0) {
    op->unref();
    delete op;
    return rc;
  }
  op->wait(-1);
  op->unref();
  return 0;
}

}  // namespace sluice
