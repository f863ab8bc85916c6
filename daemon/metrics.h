/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

/* Counters at one instant; CPU percentages are deltas between two readings. */
typedef struct MetricsReading {
        uint64_t mono_usec;
        uint64_t host_busy, host_total; /* /proc/stat, clock ticks */
        bool cgroup_cpu;
        uint64_t cgroup_usage_usec;     /* cpu.stat usage_usec */
} MetricsReading;

typedef struct MetricsSample {
        double cpu_count, cpu_used_percent, mem_total_mib, mem_used_mib;
        uint64_t timestamp_ms;
        bool cgroup;
} MetricsSample;

/* Parsers of the kernel's files, separate from I/O so they can be tested on fixtures. */
int metrics_parse_proc_stat(const char *text, uint64_t *ret_busy, uint64_t *ret_total);
int metrics_parse_meminfo(const char *text, uint64_t *ret_total_kib, uint64_t *ret_available_kib);
/* cpu.max: *ret_cpus = quota/period, or 0 for "max". */
int metrics_parse_cpu_max(const char *text, double *ret_cpus);
/* memory.max: bytes, or UINT64_MAX for "max". */
int metrics_parse_memory_max(const char *text, uint64_t *ret_bytes);
/* "key value" lines (cpu.stat, memory.stat). */
int metrics_parse_key(const char *text, const char *key, uint64_t *ret);
double metrics_cpu_percent(uint64_t busy_delta, uint64_t total_delta);

typedef struct Manager Manager;
typedef struct Metrics Metrics;

/* cgroup_dir: NULL to find the daemon's own cgroup, "none" for the host view only. */
int metrics_new(Manager *manager, const char *cgroup_dir, Metrics **ret);
Metrics *metrics_free(Metrics *m);
void metrics_name_gone(Metrics *m, const char *name);
