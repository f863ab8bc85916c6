/* SPDX-License-Identifier: Apache-2.0 */
/* CPU and memory, host-wide or as the daemon's cgroup v2 sees them, sampled only on demand or
 * once a second while somebody watches. */
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "execd.h"
#include "log.h"
#include "macro.h"
#include "metrics.h"

#define METRICS_PATH "/org/execd/Execd1/metrics"
#define METRICS_INTERFACE "org.execd.Execd1.Metrics"
#define WATCH_INTERVAL_USEC USEC_PER_SEC
/* A sample younger than this is served as it is. */
#define SAMPLE_FRESH_USEC USEC_PER_SEC
/* CPU deltas need at least this much time between readings, and are stale beyond the max. */
#define DELTA_MIN_USEC (100 * USEC_PER_MSEC)
#define DELTA_MAX_USEC (10 * USEC_PER_SEC)
#define WATCHERS_MAX 1024
#define PENDING_MAX 1024
#define MIB (1024.0 * 1024.0)

struct Metrics {
        Manager *manager;
        char *cgroup_dir; /* NULL: host view only */
        MetricsReading last;
        bool have_reading;
        MetricsSample sample;
        uint64_t sample_mono;
        bool have_sample;
        sd_event_source *watch_timer;
        sd_event_source *delta_timer; /* a GetSample waits for a CPU delta */
        sd_bus_message **pending;
        size_t n_pending;
        char **watchers;
        size_t n_watchers;
};

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- reading ---------------------------------------------------------------------------------- */

static int read_small_file(const char *dir, const char *name, char *buf, size_t size) {
        char path[4096];
        ssize_t n;
        int fd;

        if (dir)
                snprintf(path, sizeof path, "%s/%s", dir, name);
        else
                snprintf(path, sizeof path, "%s", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        close(fd);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        return 0;
}

static double affinity_cpus(void) {
        cpu_set_t set;

        if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
                return CPU_COUNT(&set);
        return MAX(sysconf(_SC_NPROCESSORS_ONLN), 1);
}

/* The cgroup's CPU quota in CPUs, 0 without one (or without a readable cgroup). */
static double cgroup_cpus(Metrics *m) {
        char buf[128];
        double cpus;

        if (!m->cgroup_dir || read_small_file(m->cgroup_dir, "cpu.max", buf, sizeof buf) < 0 ||
            metrics_parse_cpu_max(buf, &cpus) < 0)
                return 0;
        return cpus;
}

static int metrics_read(Metrics *m, double cgroup_cpu_quota, MetricsReading *r) {
        char buf[4096];
        int k;

        *r = (MetricsReading) { .mono_usec = now_usec(CLOCK_MONOTONIC) };
        k = read_small_file(NULL, "/proc/stat", buf, sizeof buf);
        if (k >= 0)
                k = metrics_parse_proc_stat(buf, &r->host_busy, &r->host_total);
        if (k < 0)
                return k;
        if (cgroup_cpu_quota > 0 && read_small_file(m->cgroup_dir, "cpu.stat", buf, sizeof buf) >= 0 &&
            metrics_parse_key(buf, "usage_usec", &r->cgroup_usage_usec) >= 0)
                r->cgroup_cpu = true;
        return 0;
}

/* Take a reading and, when the previous one is far enough back, a whole new sample. */
static int metrics_take(Metrics *m) {
        double quota = cgroup_cpus(m), pct = m->have_sample ? m->sample.cpu_used_percent : 0;
        uint64_t total_kib, available_kib, limit = UINT64_MAX;
        MetricsSample s = {};
        MetricsReading r;
        char buf[4096];
        int k;

        k = metrics_read(m, quota, &r);
        if (k < 0)
                return k;

        s.cpu_count = affinity_cpus();
        if (r.cgroup_cpu) {
                s.cpu_count = MIN(quota, s.cpu_count);
                s.cgroup = true;
        }
        if (m->have_reading && r.mono_usec > m->last.mono_usec) {
                if (r.cgroup_cpu && m->last.cgroup_cpu)
                        pct = metrics_cpu_percent(r.cgroup_usage_usec - MIN(r.cgroup_usage_usec, m->last.cgroup_usage_usec),
                                                  (uint64_t) ((double) (r.mono_usec - m->last.mono_usec) * s.cpu_count));
                else if (!r.cgroup_cpu)
                        pct = metrics_cpu_percent(r.host_busy - MIN(r.host_busy, m->last.host_busy),
                                                  r.host_total - MIN(r.host_total, m->last.host_total));
        }
        s.cpu_used_percent = pct;

        k = read_small_file(NULL, "/proc/meminfo", buf, sizeof buf);
        if (k >= 0)
                k = metrics_parse_meminfo(buf, &total_kib, &available_kib);
        if (k < 0)
                return k;
        s.mem_total_mib = (double) total_kib / 1024.0;
        s.mem_used_mib = (double) (total_kib - MIN(available_kib, total_kib)) / 1024.0;
        if (m->cgroup_dir && read_small_file(m->cgroup_dir, "memory.max", buf, sizeof buf) >= 0 &&
            metrics_parse_memory_max(buf, &limit) >= 0 && limit != UINT64_MAX) {
                uint64_t current = 0, inactive = 0;

                if (read_small_file(m->cgroup_dir, "memory.current", buf, sizeof buf) >= 0 &&
                    sscanf(buf, "%" SCNu64, &current) == 1) {
                        if (read_small_file(m->cgroup_dir, "memory.stat", buf, sizeof buf) >= 0)
                                (void) metrics_parse_key(buf, "inactive_file", &inactive);
                        s.mem_total_mib = MIN((double) limit / MIB, s.mem_total_mib);
                        s.mem_used_mib = MIN((double) (current - MIN(inactive, current)) / MIB, s.mem_total_mib);
                        s.cgroup = true;
                }
        }
        s.timestamp_ms = now_usec(CLOCK_REALTIME) / USEC_PER_MSEC;

        m->last = r;
        m->have_reading = true;
        m->sample = s;
        m->sample_mono = r.mono_usec;
        m->have_sample = true;
        return 0;
}

/* For property reads: refresh without waiting when the sample is stale. */
static void metrics_refresh(Metrics *m) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        if (m->have_sample && now - m->sample_mono < SAMPLE_FRESH_USEC)
                return;
        if (metrics_take(m) < 0)
                log_warning("Failed to read metrics");
}

/* ---- bus ---------------------------------------------------------------------------------------- */

static int reply_sample(Metrics *m, sd_bus_message *msg) {
        return sd_bus_reply_method_return(msg, "ddddt", m->sample.cpu_count, m->sample.cpu_used_percent,
                                          m->sample.mem_total_mib, m->sample.mem_used_mib, m->sample.timestamp_ms);
}

static int on_delta_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Metrics *m = userdata;
        int k = metrics_take(m);

        m->delta_timer = sd_event_source_disable_unref(m->delta_timer);
        for (size_t i = 0; i < m->n_pending; i++) {
                if (k < 0)
                        (void) sd_bus_reply_method_errnof(m->pending[i], k, "Failed to read metrics: %m");
                else
                        (void) reply_sample(m, m->pending[i]);
                sd_bus_message_unref(m->pending[i]);
        }
        m->n_pending = 0;
        return 0;
}

static int method_get_sample(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Metrics *m = userdata;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        int k;

        if (m->have_sample && now - m->sample_mono < SAMPLE_FRESH_USEC)
                return reply_sample(m, msg);
        if (m->have_reading && now - m->last.mono_usec >= DELTA_MIN_USEC && now - m->last.mono_usec <= DELTA_MAX_USEC) {
                k = metrics_take(m);
                if (k < 0)
                        return sd_bus_error_set_errnof(error, k, "Failed to read metrics: %m");
                return reply_sample(m, msg);
        }

        /* No usable previous reading: take one now and answer after a short interval. */
        if (m->n_pending >= PENDING_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED, "Too many pending metric requests");
        if (!m->delta_timer) {
                MetricsReading r;
                k = metrics_read(m, cgroup_cpus(m), &r);
                if (k < 0)
                        return sd_bus_error_set_errnof(error, k, "Failed to read metrics: %m");
                m->last = r;
                m->have_reading = true;
                k = sd_event_add_time_relative(m->manager->event, &m->delta_timer, CLOCK_MONOTONIC, DELTA_MIN_USEC,
                                               TIMER_ACCURACY_USEC, on_delta_timer, m);
                if (k < 0)
                        return k;
        }
        if (!m->pending) {
                m->pending = calloc(PENDING_MAX, sizeof *m->pending);
                if (!m->pending)
                        return -ENOMEM;
        }
        m->pending[m->n_pending++] = sd_bus_message_ref(msg);
        return 1;
}

static int on_watch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Metrics *m = userdata;

        if (metrics_take(m) < 0)
                log_warning("Failed to read metrics");
        else
                (void) sd_bus_emit_properties_changed(m->manager->bus, METRICS_PATH, METRICS_INTERFACE, "CpuCount",
                                                      "CpuUsedPercent", "MemTotalMiB", "MemUsedMiB", "Timestamp",
                                                      "View", NULL);
        /* On a fixed one-second grid, so samples do not drift later and later; after a stall the
         * grid moves on instead of firing several times to catch up. */
        uint64_t next = usec + WATCH_INTERVAL_USEC, now = now_usec(CLOCK_MONOTONIC);
        if (next <= now)
                next = now + WATCH_INTERVAL_USEC;
        (void) sd_event_source_set_time(s, next);
        return 0;
}

static void metrics_watchers_changed(Metrics *m) {
        if (m->n_watchers > 0 && !m->watch_timer) {
                /* A first reading now, so the first tick already has a delta. */
                if (metrics_take(m) < 0)
                        log_warning("Failed to read metrics");
                if (sd_event_add_time_relative(m->manager->event, &m->watch_timer, CLOCK_MONOTONIC,
                                               WATCH_INTERVAL_USEC, TIMER_ACCURACY_USEC, on_watch_timer, m) >= 0)
                        (void) sd_event_source_set_enabled(m->watch_timer, SD_EVENT_ON);
        } else if (m->n_watchers == 0)
                m->watch_timer = sd_event_source_disable_unref(m->watch_timer);
        (void) sd_bus_emit_properties_changed(m->manager->bus, METRICS_PATH, METRICS_INTERFACE, "Watchers", NULL);
}

static ssize_t watcher_index(Metrics *m, const char *name) {
        for (size_t i = 0; i < m->n_watchers; i++)
                if (strcmp(m->watchers[i], name) == 0)
                        return (ssize_t) i;
        return -1;
}

static void watcher_remove(Metrics *m, size_t i) {
        free(m->watchers[i]);
        m->watchers[i] = m->watchers[--m->n_watchers];
        metrics_watchers_changed(m);
}

static int method_watch(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Metrics *m = userdata;
        const char *sender = sd_bus_message_get_sender(msg);
        char *name;

        if (!sender)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "No sender");
        if (watcher_index(m, sender) >= 0)
                return sd_bus_reply_method_return(msg, NULL);
        if (m->n_watchers >= WATCHERS_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED, "Too many metric watchers (limit %d)",
                                         WATCHERS_MAX);
        if (!m->watchers) {
                m->watchers = calloc(WATCHERS_MAX, sizeof *m->watchers);
                if (!m->watchers)
                        return -ENOMEM;
        }
        name = strdup(sender);
        if (!name)
                return -ENOMEM;
        m->watchers[m->n_watchers++] = name;
        metrics_watchers_changed(m);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_unwatch(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Metrics *m = userdata;
        const char *sender = sd_bus_message_get_sender(msg);
        ssize_t i = sender ? watcher_index(m, sender) : -1;

        if (i >= 0)
                watcher_remove(m, (size_t) i);
        return sd_bus_reply_method_return(msg, NULL);
}

void metrics_name_gone(Metrics *m, const char *name) {
        ssize_t i = watcher_index(m, name);

        if (i >= 0)
                watcher_remove(m, (size_t) i);
}

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Metrics *m = userdata;

        if (strcmp(property, "Watchers") == 0)
                return sd_bus_message_append(reply, "u", (uint32_t) m->n_watchers);
        metrics_refresh(m);
        if (strcmp(property, "CpuCount") == 0)
                return sd_bus_message_append(reply, "d", m->sample.cpu_count);
        if (strcmp(property, "CpuUsedPercent") == 0)
                return sd_bus_message_append(reply, "d", m->sample.cpu_used_percent);
        if (strcmp(property, "MemTotalMiB") == 0)
                return sd_bus_message_append(reply, "d", m->sample.mem_total_mib);
        if (strcmp(property, "MemUsedMiB") == 0)
                return sd_bus_message_append(reply, "d", m->sample.mem_used_mib);
        if (strcmp(property, "Timestamp") == 0)
                return sd_bus_message_append(reply, "t", m->sample.timestamp_ms);
        return sd_bus_message_append(reply, "s", m->sample.cgroup ? "cgroup" : "host");
}

static const sd_bus_vtable metrics_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("CpuCount", "d", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CpuUsedPercent", "d", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MemTotalMiB", "d", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MemUsedMiB", "d", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Timestamp", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("View", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Watchers", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("GetSample", SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("d", cpu_count, "d", cpu_used_percent, "d", mem_total_mib,
                                              "d", mem_used_mib, "t", timestamp),
                                method_get_sample, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Watch", NULL, NULL, method_watch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Unwatch", NULL, NULL, method_unwatch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

/* The daemon's own cgroup v2 directory, from /proc/self/cgroup ("0::/path"). */
static char *own_cgroup_dir(void) {
        char buf[4096], *line, *dir = NULL;

        if (read_small_file(NULL, "/proc/self/cgroup", buf, sizeof buf) < 0)
                return NULL;
        line = strstr(buf, "0::");
        if (!line || (line != buf && line[-1] != '\n'))
                return NULL;
        line += 3;
        line[strcspn(line, "\n")] = 0;
        if (asprintf(&dir, "/sys/fs/cgroup%s", strcmp(line, "/") == 0 ? "" : line) < 0)
                return NULL;
        return dir;
}

int metrics_new(Manager *manager, const char *cgroup_dir, Metrics **ret) {
        _cleanup_(freep) Metrics *m = calloc(1, sizeof(Metrics));
        int k;

        if (!m)
                return -ENOMEM;
        m->manager = manager;
        if (!cgroup_dir)
                m->cgroup_dir = own_cgroup_dir();
        else if (strcmp(cgroup_dir, "none") != 0 && !(m->cgroup_dir = strdup(cgroup_dir)))
                return -ENOMEM;
        k = sd_bus_add_object_vtable(manager->bus, NULL, METRICS_PATH, METRICS_INTERFACE, metrics_vtable, m);
        if (k < 0) {
                free(m->cgroup_dir);
                return k;
        }
        log_debug("metrics from %s", m->cgroup_dir ? m->cgroup_dir : "the host only");
        *ret = TAKE_PTR(m);
        return 0;
}

Metrics *metrics_free(Metrics *m) {
        if (!m)
                return NULL;
        sd_event_source_disable_unref(m->watch_timer);
        sd_event_source_disable_unref(m->delta_timer);
        for (size_t i = 0; i < m->n_pending; i++)
                sd_bus_message_unref(m->pending[i]);
        free(m->pending);
        for (size_t i = 0; i < m->n_watchers; i++)
                free(m->watchers[i]);
        free(m->watchers);
        free(m->cgroup_dir);
        free(m);
        return NULL;
}
