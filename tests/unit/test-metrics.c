/* SPDX-License-Identifier: Apache-2.0 */
/* Parsers of /proc and cgroup v2 files, on fixture text. */
#include <glib.h>
#include <stdint.h>

#include "metrics.h"

static void test_proc_stat(void) {
        uint64_t busy, total;

        /* user nice system idle iowait irq softirq steal guest guest_nice */
        g_assert_cmpint(metrics_parse_proc_stat("cpu  100 5 50 1000 20 3 2 1 40 0\ncpu0 1 2 3 4\n", &busy, &total), ==, 0);
        g_assert_cmpuint(busy, ==, 100 + 5 + 50 + 20 + 3 + 2 + 1);
        g_assert_cmpuint(total, ==, busy + 1000);
        /* old kernels: only four fields */
        g_assert_cmpint(metrics_parse_proc_stat("cpu 10 0 10 80\n", &busy, &total), ==, 0);
        g_assert_cmpuint(busy, ==, 20);
        g_assert_cmpuint(total, ==, 100);
        g_assert_cmpint(metrics_parse_proc_stat("cpu0 1 2 3 4\n", &busy, &total), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_proc_stat("garbage", &busy, &total), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_proc_stat("", &busy, &total), ==, -EINVAL);
}

static void test_cpu_percent(void) {
        g_assert_cmpfloat(metrics_cpu_percent(50, 200), ==, 25.0);
        g_assert_cmpfloat(metrics_cpu_percent(0, 0), ==, 0.0);
        g_assert_cmpfloat(metrics_cpu_percent(500, 100), ==, 100.0); /* clamped */
}

static void test_meminfo(void) {
        uint64_t total, available;
        const char *text = "MemTotal:       24684096 kB\nMemFree:        20000000 kB\nMemAvailable:   23000000 kB\n";

        g_assert_cmpint(metrics_parse_meminfo(text, &total, &available), ==, 0);
        g_assert_cmpuint(total, ==, 24684096);
        g_assert_cmpuint(available, ==, 23000000);
        g_assert_cmpint(metrics_parse_meminfo("MemTotal: 100 kB\n", &total, &available), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_meminfo("MemTotalX: 100 kB\nMemAvailable: 5 kB\n", &total, &available), ==, -EINVAL);
}

static void test_cpu_max(void) {
        double cpus = -1;

        g_assert_cmpint(metrics_parse_cpu_max("max 100000\n", &cpus), ==, 0);
        g_assert_cmpfloat(cpus, ==, 0.0);
        g_assert_cmpint(metrics_parse_cpu_max("50000 100000\n", &cpus), ==, 0);
        g_assert_cmpfloat(cpus, ==, 0.5);
        g_assert_cmpint(metrics_parse_cpu_max("250000 100000", &cpus), ==, 0);
        g_assert_cmpfloat(cpus, ==, 2.5);
        g_assert_cmpint(metrics_parse_cpu_max("0 100000", &cpus), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_cpu_max("lots", &cpus), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_cpu_max("", &cpus), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_cpu_max("-1 100000", &cpus), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_cpu_max("50000 100000junk", &cpus), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_cpu_max("max", &cpus), ==, -EINVAL);
}

static void test_memory_max_and_keys(void) {
        uint64_t v = 0;

        g_assert_cmpint(metrics_parse_memory_max("max\n", &v), ==, 0);
        g_assert_cmpuint(v, ==, UINT64_MAX);
        g_assert_cmpint(metrics_parse_memory_max("1073741824\n", &v), ==, 0);
        g_assert_cmpuint(v, ==, 1073741824);
        g_assert_cmpint(metrics_parse_memory_max("maximum", &v), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_memory_max("-5", &v), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_memory_max("12abc\n", &v), ==, -EINVAL);
        g_assert_cmpint(metrics_parse_memory_max("", &v), ==, -EINVAL);

        g_assert_cmpint(metrics_parse_key("usage_usec 12345\nuser_usec 1\n", "usage_usec", &v), ==, 0);
        g_assert_cmpuint(v, ==, 12345);
        g_assert_cmpint(metrics_parse_key("anon 7\nactive_file 9\ninactive_file 42\n", "inactive_file", &v), ==, 0);
        g_assert_cmpuint(v, ==, 42);
        /* a key must match whole, not as a prefix of another */
        g_assert_cmpint(metrics_parse_key("inactive_file_x 1\n", "inactive_file", &v), ==, -ENOENT);
        g_assert_cmpint(metrics_parse_key("", "usage_usec", &v), ==, -ENOENT);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/metrics/proc-stat", test_proc_stat);
        g_test_add_func("/metrics/cpu-percent", test_cpu_percent);
        g_test_add_func("/metrics/meminfo", test_meminfo);
        g_test_add_func("/metrics/cpu-max", test_cpu_max);
        g_test_add_func("/metrics/memory-max-and-keys", test_memory_max_and_keys);
        return g_test_run();
}
