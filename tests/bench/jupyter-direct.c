/* SPDX-License-Identifier: Apache-2.0 */
/* execd-jupyter-direct: the baseline of the code-context benchmarks. It drives a Jupyter kernel
 * with the daemon's own kernel module (daemon/jupyter.c, daemon/kernelspec.c) from its own
 * sd-event loop: no daemon, no D-Bus, no bridge, no HTTP.
 *
 *   execd-jupyter-direct [--language=python] [--starts=5] [--runs=200] [--warmup=20]
 *                        [--code=1+1] [--expect=2]
 *
 *   (a) finds the kernelspec of the language and starts a kernel --starts times, timing
 *       kernel_start() -> ready callback (the kernel's own start-up); every kernel but the last
 *       is freed (kernel_free(), timed too) before the next starts;
 *   (b) on the last, warm, kernel runs CODE --warmup times untimed, then --runs times timing
 *       each kernel_execute() -> complete callback round trip; every run must complete "ok"
 *       with exactly one result whose text/plain is EXPECT and no error.
 *
 * Kernels get a private runtime directory made with mkdtemp under /tmp and removed at the end.
 * Results are one JSON object on stdout:
 *   {"kernelspec":…,"argv0":…,"start_ms":[…],"free_ms":[…],"rtt_us":[…],
 *    "start_median_ms":…,"rtt_median_us":…,"rtt_p90_us":…,"elapsed_ms_median":…,
 *    "leftovers":0}
 * Any failure (no spec, a start error, a wrong result, a timeout, a kernel left running) prints
 * a message on stderr and exits non-zero; so does SIGTERM or SIGINT, after freeing the kernel and
 * the runtime directory. */
#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "jupyter.h"
#include "kernelspec.h"
#include "log.h"
#include "macro.h"

#define STEP_TIMEOUT_USEC (60 * USEC_PER_SEC)

static sd_event *event;
static char runtime_dir[] = "/tmp/execd-jupyter-direct-XXXXXX";
static bool have_runtime_dir;
static Kernel *kernel;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

/* Count what the kernel module left in the runtime directory, then remove it all. */
static int leftover_count;
static int count_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (ftw->level > 0) {
                leftover_count++;
                fprintf(stderr, "execd-jupyter-direct: left in the runtime directory: %s\n", path);
        }
        return 0;
}

static int remove_runtime_dir(void) {
        if (!have_runtime_dir)
                return 0;
        leftover_count = 0;
        (void) nftw(runtime_dir, count_entry, 16, FTW_PHYS);
        (void) nftw(runtime_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        have_runtime_dir = false;
        return leftover_count;
}

static _Noreturn void die(const char *fmt, ...) _printf_(1, 2);
static _Noreturn void die(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("execd-jupyter-direct: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
        kernel = kernel_free(kernel);
        remove_runtime_dir();
        exit(EXIT_FAILURE);
}

/* Run the loop until *flag is set; die after the timeout. */
static void wait_for(const bool *flag, const char *what) {
        uint64_t end = now_usec() + STEP_TIMEOUT_USEC;

        while (!*flag) {
                int r;

                if (now_usec() > end)
                        die("timed out after %" PRIu64 " s waiting for %s", STEP_TIMEOUT_USEC / USEC_PER_SEC, what);
                r = sd_event_run(event, 100 * USEC_PER_MSEC);
                if (r < 0)
                        die("sd_event_run: %s", strerror(-r));
        }
}

/* SIGTERM/SIGINT (a benchmark's timeout): free the kernel and the runtime directory. */
static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        die("terminated by signal %u", si->ssi_signo);
}

/* ---- the kernel's life ---- */

typedef struct Life {
        bool ready, died;
        int error;
        char *message;
        uint64_t ready_usec;
} Life;

static void on_ready(Kernel *k, int error, const char *message, void *userdata) {
        Life *l = userdata;

        l->ready_usec = now_usec();
        l->ready = true;
        l->error = error;
        l->message = g_strdup(message);
}

static void on_died(Kernel *k, const char *why, void *userdata) {
        Life *l = userdata;

        l->died = true;
        fprintf(stderr, "execd-jupyter-direct: the kernel died: %s\n", why ? why : "?");
}

static const KernelCallbacks life_callbacks = { .ready = on_ready, .died = on_died };

/* ---- one run ---- */

typedef struct Run {
        bool done;
        uint64_t done_usec, elapsed_ms;
        char *status;
        unsigned n_results, n_errors;
        char *text;
        GString *err;
} Run;

static void on_stream(void *ud, const char *name, const char *text) {
        Run *r = ud;

        if (strcmp(name, "stderr") == 0)
                g_string_append(r->err, text);
}

static void on_result(void *ud, int64_t count, JsonObject *data) {
        Run *r = ud;

        r->n_results++;
        g_free(r->text);
        r->text = g_strdup(json_object_has_member(data, "text/plain") ?
                           json_object_get_string_member(data, "text/plain") : NULL);
}

static void on_error(void *ud, const char *ename, const char *evalue, char **traceback) {
        Run *r = ud;

        r->n_errors++;
        g_string_append_printf(r->err, "%s: %s\n", ename, evalue);
}

static void on_input(void *ud, int64_t count) {
}

static void on_complete(void *ud, const char *status, uint64_t elapsed_ms) {
        Run *r = ud;

        r->done_usec = now_usec();
        r->done = true;
        r->status = g_strdup(status);
        r->elapsed_ms = elapsed_ms;
}

static const KernelRunCallbacks run_callbacks = {
        .stream = on_stream, .result = on_result, .error = on_error,
        .execute_input = on_input, .complete = on_complete,
};

/* One checked round trip; returns its duration in microseconds. */
static uint64_t execute(const char *code, const char *expect, unsigned i, uint64_t *elapsed_ms) {
        Run r = { .err = g_string_new(NULL) };
        uint64_t t0;
        int k;

        t0 = now_usec();
        k = kernel_execute(kernel, code, &run_callbacks, &r);
        if (k < 0)
                die("run %u: kernel_execute: %s", i, strerror(-k));
        wait_for(&r.done, "a run to complete");
        if (strcmp(r.status, "ok") != 0 || r.n_errors || r.n_results != 1 || !r.text ||
            strcmp(r.text, expect) != 0)
                die("run %u of %s: status %s, %u results (text %s), %u errors; expected ok and one "
                    "result %s; stderr: %s",
                    i, code, r.status, r.n_results, r.text ? r.text : "(none)", r.n_errors, expect,
                    r.err->str);
        if (elapsed_ms)
                *elapsed_ms = r.elapsed_ms;
        g_free(r.status);
        g_free(r.text);
        g_string_free(r.err, true);
        return r.done_usec - t0;
}

/* ---- statistics and output ---- */

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (q in (0, 1]) of a copy; the median of an even count is the mean of
 * the two middle values. */
static double percentile(const uint64_t *v, size_t n, double q) {
        g_autofree uint64_t *s = g_memdup2(v, n * sizeof *v);
        size_t idx;

        qsort(s, n, sizeof *s, cmp_u64);
        if (q == 0.5)
                return n % 2 ? (double) s[n / 2] : ((double) s[n / 2 - 1] + (double) s[n / 2]) / 2;
        idx = (size_t) (q * (double) n + 0.999999);
        idx = idx == 0 ? 0 : idx - 1;
        return (double) s[MIN(idx, n - 1)];
}

static void print_list(const char *name, const uint64_t *v, size_t n, double div) {
        printf("\"%s\":[", name);
        for (size_t i = 0; i < n; i++)
                printf("%s%.3f", i ? "," : "", (double) v[i] / div);
        printf("],");
}

static void json_string(const char *name, const char *s) {
        g_autofree char *esc = g_strescape(s ? s : "", NULL);

        printf("\"%s\":\"%s\",", name, esc);
}

static void usage(void) {
        fputs("usage: execd-jupyter-direct [--language=python] [--starts=N] [--runs=M] [--warmup=W] "
              "[--code=CODE] [--expect=TEXT]\n", stderr);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "language", required_argument, NULL, 'l' },
                { "starts", required_argument, NULL, 's' },
                { "runs", required_argument, NULL, 'r' },
                { "warmup", required_argument, NULL, 'w' },
                { "code", required_argument, NULL, 'c' },
                { "expect", required_argument, NULL, 'e' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *language = "python", *code = "1+1", *expect = "2";
        long starts = 5, runs = 200, warmup = 20;
        _cleanup_(kernelspec_freep) KernelSpec *spec = NULL;
        g_autofree uint64_t *start_us = NULL, *free_us = NULL, *rtt_us = NULL, *elapsed = NULL;
        KernelOptions opts = { .cwd = "/" };
        pid_t pid = 0;
        sigset_t mask;
        int c, k, left;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                char *end = NULL;
                long *target = NULL;

                switch (c) {
                case 'l': language = optarg; break;
                case 'c': code = optarg; break;
                case 'e': expect = optarg; break;
                case 's': target = &starts; break;
                case 'r': target = &runs; break;
                case 'w': target = &warmup; break;
                case 'h': usage(); return EXIT_SUCCESS;
                default: usage(); return EXIT_FAILURE;
                }
                if (target) {
                        errno = 0;
                        *target = strtol(optarg, &end, 10);
                        if (errno || !end || *end || *target < 0 || *target > 100000 ||
                            (target != &warmup && *target == 0)) {
                                fprintf(stderr, "execd-jupyter-direct: bad number %s\n", optarg);
                                return EXIT_FAILURE;
                        }
                }
        }
        if (optind != argc) {
                usage();
                return EXIT_FAILURE;
        }

        log_setup(LOG_WARNING);
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        k = sd_event_default(&event);
        if (k < 0)
                die("sd_event_default: %s", strerror(-k));
        if ((k = sd_event_add_signal(event, NULL, SIGTERM, on_signal, NULL)) < 0 ||
            (k = sd_event_add_signal(event, NULL, SIGINT, on_signal, NULL)) < 0)
                die("sd_event_add_signal: %s", strerror(-k));
        k = kernelspec_find(language, &spec);
        if (k < 0)
                die("no kernelspec for language %s: %s", language, strerror(-k));
        if (!mkdtemp(runtime_dir))
                die("mkdtemp %s: %s", runtime_dir, strerror(errno));
        have_runtime_dir = true;
        opts.runtime_dir = runtime_dir;

        start_us = g_new0(uint64_t, starts);
        free_us = g_new0(uint64_t, starts);
        rtt_us = g_new0(uint64_t, runs);
        elapsed = g_new0(uint64_t, runs);

        /* (a) kernel start-up, kernel_start() -> ready. */
        for (long i = 0; i < starts; i++) {
                Life life = {};
                uint64_t t0 = now_usec();

                k = kernel_start(event, spec, &opts, &life_callbacks, &life, &kernel);
                if (k < 0)
                        die("kernel_start: %s", strerror(-k));
                wait_for(&life.ready, "the kernel to be ready");
                if (life.error < 0)
                        die("start %ld: the kernel failed: %s", i + 1, life.message ? life.message : "?");
                g_free(life.message);
                start_us[i] = life.ready_usec - t0;
                pid = kernel_pid(kernel);

                if (i + 1 < starts) {
                        t0 = now_usec();
                        kernel = kernel_free(kernel);
                        free_us[i] = now_usec() - t0;
                        if (kill(pid, 0) == 0 || errno != ESRCH)
                                die("kernel %d still exists after kernel_free()", (int) pid);
                }
        }

        /* (b) round trips on the last, warm, kernel. */
        for (long i = 0; i < warmup; i++)
                (void) execute(code, expect, (unsigned) i, NULL);
        for (long i = 0; i < runs; i++)
                rtt_us[i] = execute(code, expect, (unsigned) (warmup + i), &elapsed[i]);

        {
                uint64_t t0 = now_usec();

                kernel = kernel_free(kernel);
                free_us[starts - 1] = now_usec() - t0;
        }
        if (kill(pid, 0) == 0 || errno != ESRCH)
                die("kernel %d still exists after kernel_free()", (int) pid);
        left = remove_runtime_dir();
        if (left)
                die("%d entries left in the runtime directory after every kernel was freed", left);

        printf("{");
        json_string("kernelspec", spec->name);
        json_string("argv0", spec->argv[0]);
        json_string("code", code);
        print_list("start_ms", start_us, (size_t) starts, 1000.0);
        print_list("free_ms", free_us, (size_t) starts, 1000.0);
        print_list("rtt_us", rtt_us, (size_t) runs, 1.0);
        printf("\"start_median_ms\":%.3f,", percentile(start_us, (size_t) starts, 0.5) / 1000.0);
        printf("\"rtt_median_us\":%.1f,", percentile(rtt_us, (size_t) runs, 0.5));
        printf("\"rtt_p90_us\":%.1f,", percentile(rtt_us, (size_t) runs, 0.9));
        printf("\"elapsed_ms_median\":%.1f,", percentile(elapsed, (size_t) runs, 0.5));
        printf("\"warmup\":%ld,\"leftovers\":0}\n", warmup);
        sd_event_unref(event);
        return EXIT_SUCCESS;
}
