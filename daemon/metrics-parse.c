/* SPDX-License-Identifier: Apache-2.0 */
/* Parsers of /proc and cgroup v2 files: pure functions, tested on fixture text. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

int metrics_parse_proc_stat(const char *text, uint64_t *ret_busy, uint64_t *ret_total) {
        unsigned long long v[8] = {};

        /* cpu  user nice system idle iowait irq softirq steal [guest guest_nice] */
        if (!text || strncmp(text, "cpu ", 4) != 0 ||
            sscanf(text + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]) < 4)
                return -EINVAL;
        /* guest time is already part of user time: not counted twice */
        *ret_busy = v[0] + v[1] + v[2] + v[4] + v[5] + v[6] + v[7];
        *ret_total = *ret_busy + v[3];
        return 0;
}

int metrics_parse_key(const char *text, const char *key, uint64_t *ret) {
        size_t len = strlen(key);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                unsigned long long v;
                if (strncmp(p, key, len) == 0 && (p[len] == ' ' || p[len] == ':' || p[len] == '\t') &&
                    sscanf(p + len + 1, " %llu", &v) == 1) {
                        *ret = v;
                        return 0;
                }
        }
        return -ENOENT;
}

int metrics_parse_meminfo(const char *text, uint64_t *ret_total_kib, uint64_t *ret_available_kib) {
        if (metrics_parse_key(text, "MemTotal", ret_total_kib) < 0 || *ret_total_kib == 0)
                return -EINVAL;
        if (metrics_parse_key(text, "MemAvailable", ret_available_kib) < 0)
                return -EINVAL;
        return 0;
}

/* A whole unsigned number at *p, advancing *p past it; no sign, no junk glued to it. */
static int parse_number(const char **p, unsigned long long *ret) {
        char *end;

        if (!isdigit((unsigned char) **p))
                return -EINVAL;
        errno = 0;
        *ret = strtoull(*p, &end, 10);
        if (errno || (*end && !isspace((unsigned char) *end)))
                return -EINVAL;
        *p = end;
        return 0;
}

static bool only_space(const char *p) {
        while (*p && isspace((unsigned char) *p))
                p++;
        return *p == 0;
}

int metrics_parse_cpu_max(const char *text, double *ret_cpus) {
        unsigned long long quota, period;
        const char *p = text;

        if (!text)
                return -EINVAL;
        if (strncmp(p, "max", 3) == 0 && isspace((unsigned char) p[3])) {
                p += 3;
                while (*p == ' ')
                        p++;
                if (parse_number(&p, &period) < 0 || !only_space(p))
                        return -EINVAL;
                *ret_cpus = 0;
                return 0;
        }
        if (parse_number(&p, &quota) < 0)
                return -EINVAL;
        while (*p == ' ')
                p++;
        if (parse_number(&p, &period) < 0 || !only_space(p) || quota == 0 || period == 0)
                return -EINVAL;
        *ret_cpus = (double) quota / (double) period;
        return 0;
}

int metrics_parse_memory_max(const char *text, uint64_t *ret_bytes) {
        unsigned long long v;
        const char *p = text;

        if (!text)
                return -EINVAL;
        if (strncmp(p, "max", 3) == 0 && only_space(p + 3)) {
                *ret_bytes = UINT64_MAX;
                return 0;
        }
        if (parse_number(&p, &v) < 0 || !only_space(p) || v == 0)
                return -EINVAL;
        *ret_bytes = v;
        return 0;
}

double metrics_cpu_percent(uint64_t busy_delta, uint64_t total_delta) {
        double pct;

        if (total_delta == 0)
                return 0;
        pct = 100.0 * (double) busy_delta / (double) total_delta;
        return pct < 0 ? 0 : pct > 100 ? 100 : pct;
}
