/*
 * sluice.h - umbrella header: every public sluice header except the libuv
 * adapter sluice/uv.h (include that one yourself if you embed sluice in your
 * own libuv loop).
 */
#ifndef SLUICE_H
#define SLUICE_H

#include "sluice/common.h"
#include "sluice/op.h"
#include "sluice/runtime.h"
#include "sluice/breaker.h"
#include "sluice/limiter.h"
#include "sluice/locks.h"
#include "sluice/retry.h"
#include "sluice/taskpool.h"
#include "sluice/monitor.h"
#include "sluice/pg.h"

#endif /* SLUICE_H */
