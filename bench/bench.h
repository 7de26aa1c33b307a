/* Small helpers shared by the benchmarks: options and timing.
 * Every benchmark takes its workload as --name=value options and prints one
 * line per figure, so anyone can rerun it on their own numbers. */
#ifndef SLUICE_BENCH_H
#define SLUICE_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --name=value from argv, or `def` if absent. */
static inline double bench_opt(int argc, char **argv, const char *name, double def) {
  size_t n = strlen(name);
  for (int i = 1; i < argc; i++)
    if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
        argv[i][2 + n] == '=')
      return atof(argv[i] + 3 + n);
  return def;
}

/* 1 if --name appears (with or without a value). */
static inline int bench_flag(int argc, char **argv, const char *name) {
  size_t n = strlen(name);
  for (int i = 1; i < argc; i++)
    if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, n) == 0 &&
        (argv[i][2 + n] == '\0' || argv[i][2 + n] == '='))
      return 1;
  return 0;
}

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Keeps the compiler from deleting a computed value. */
static inline void bench_keep(uint64_t v) { __asm__ volatile("" : : "r"(v) : "memory"); }

#endif
