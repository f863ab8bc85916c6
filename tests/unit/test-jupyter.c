/* SPDX-License-Identifier: Apache-2.0 */
/* Runs a real ipykernel (python3-ipykernel) through the kernel client module. */
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jupyter.h"
#include "kernelspec.h"
#include "log.h"
#include "macro.h"

#define STEP_TIMEOUT_USEC (30 * USEC_PER_SEC)

static sd_event *event;
static char *runtime_dir;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Run the loop until *flag, failing the test after timeout. */
static void wait_for(const bool *flag, uint64_t timeout_usec, const char *what) {
        uint64_t end = now_usec() + timeout_usec;

        while (!*flag) {
                if (now_usec() > end)
                        g_error("timed out waiting for %s", what);
                g_assert_cmpint(sd_event_run(event, 100 * USEC_PER_MSEC), >=, 0);
        }
}

/* Run the loop for a while, whatever happens. */
static void spin(uint64_t usec) {
        uint64_t end = now_usec() + usec;

        while (now_usec() < end)
                g_assert_cmpint(sd_event_run(event, 10 * USEC_PER_MSEC), >=, 0);
}

/* ---- kernel lifecycle callbacks ---- */

typedef struct Life {
        bool ready, died;
        int error;
        char *message, *why;
        bool free_in_ready; /* kernel_free() from within the callback */
        Kernel **slot;
} Life;

static void on_ready(Kernel *k, int error, const char *message, void *userdata) {
        Life *l = userdata;

        g_assert_false(l->ready);
        l->ready = true;
        l->error = error;
        l->message = g_strdup(message);
        if (l->free_in_ready)
                *l->slot = kernel_free(k);
}

static void on_died(Kernel *k, const char *why, void *userdata) {
        Life *l = userdata;

        g_assert_false(l->died);
        l->died = true;
        l->why = g_strdup(why);
}

static const KernelCallbacks life_callbacks = { .ready = on_ready, .died = on_died };

static void life_clear(Life *l) {
        g_free(l->message);
        g_free(l->why);
        *l = (Life) {};
}

/* ---- run callbacks ---- */

typedef struct Run {
        GString *out, *err;
        GPtrArray *plain, *html; /* per result, "" when absent */
        GArray *counts;
        char *ename, *evalue;
        guint tb_len;
        int64_t input_count;
        bool done;
        char *status;
        uint64_t elapsed;
        unsigned n_error;
} Run;

static void run_init(Run *r) {
        *r = (Run) {};
        r->out = g_string_new(NULL);
        r->err = g_string_new(NULL);
        r->plain = g_ptr_array_new_with_free_func(g_free);
        r->html = g_ptr_array_new_with_free_func(g_free);
        r->counts = g_array_new(false, false, sizeof(int64_t));
}

static void run_clear(Run *r) {
        g_string_free(r->out, true);
        g_string_free(r->err, true);
        g_ptr_array_unref(r->plain);
        g_ptr_array_unref(r->html);
        g_array_unref(r->counts);
        g_free(r->ename);
        g_free(r->evalue);
        g_free(r->status);
        *r = (Run) {};
}

static void on_stream(void *ud, const char *name, const char *text) {
        Run *r = ud;

        g_assert_false(r->done);
        if (strcmp(name, "stdout") == 0)
                g_string_append(r->out, text);
        else
                g_string_append(r->err, text);
}

static void on_result(void *ud, int64_t count, JsonObject *data) {
        Run *r = ud;
        const char *plain = json_object_has_member(data, "text/plain") ?
                json_object_get_string_member(data, "text/plain") : "";
        const char *html = json_object_has_member(data, "text/html") ?
                json_object_get_string_member(data, "text/html") : "";

        g_assert_false(r->done);
        g_ptr_array_add(r->plain, g_strdup(plain));
        g_ptr_array_add(r->html, g_strdup(html));
        g_array_append_val(r->counts, count);
}

static void on_error(void *ud, const char *ename, const char *evalue, char **traceback) {
        Run *r = ud;

        g_assert_false(r->done);
        r->n_error++;
        g_free(r->ename);
        g_free(r->evalue);
        r->ename = g_strdup(ename);
        r->evalue = g_strdup(evalue);
        r->tb_len = g_strv_length(traceback);
}

static void on_input(void *ud, int64_t count) {
        Run *r = ud;

        r->input_count = count;
}

static void on_complete(void *ud, const char *status, uint64_t elapsed_ms) {
        Run *r = ud;

        g_assert_false(r->done);
        r->done = true;
        r->status = g_strdup(status);
        r->elapsed = elapsed_ms;
}

static const KernelRunCallbacks run_callbacks = {
        .stream = on_stream, .result = on_result, .error = on_error,
        .execute_input = on_input, .complete = on_complete,
};

static void execute(Kernel *k, const char *code, Run *r) {
        run_init(r);
        g_assert_cmpint(kernel_execute(k, code, &run_callbacks, r), ==, 0);
        g_assert_true(kernel_is_running(k));
        wait_for(&r->done, STEP_TIMEOUT_USEC, code);
        g_assert_false(kernel_is_running(k));
}

/* ---- helpers ---- */

static bool dir_exists(const char *path) {
        struct stat st;

        return stat(path, &st) == 0;
}

static void assert_gone(pid_t pid) {
        g_assert_cmpint(kill(pid, 0), ==, -1);
        g_assert_cmpint(errno, ==, ESRCH);
}

static KernelSpec *python_spec(void) {
        KernelSpec *s = NULL;

        g_assert_cmpint(kernelspec_find("python", &s), ==, 0);
        return s;
}

static Kernel *start_python(Life *life, const KernelSpec *spec, uint64_t *ret_usec) {
        KernelOptions opts = { .runtime_dir = runtime_dir, .cwd = "/" };
        Kernel *k = NULL;
        uint64_t t0 = now_usec();

        g_assert_cmpint(kernel_start(event, spec, &opts, &life_callbacks, life, &k), ==, 0);
        g_assert_nonnull(k);
        g_assert_true(kernel_pid(k) > 0);
        g_assert_true(dir_exists(kernel_runtime_dir(k)));
        wait_for(&life->ready, STEP_TIMEOUT_USEC + 10 * USEC_PER_SEC, "kernel ready"); /* the module times out first */
        if (life->error != 0)
                g_error("kernel failed to start: %s", life->message);
        g_assert_true(kernel_is_ready(k));
        if (ret_usec)
                *ret_usec = now_usec() - t0;
        return k;
}

static void free_and_check(Kernel *k) {
        g_autofree char *dir = g_strdup(kernel_runtime_dir(k));
        pid_t pid = kernel_pid(k);
        uint64_t t0 = now_usec();

        g_assert_null(kernel_free(k));
        g_test_message("kernel_free took %" PRIu64 " ms", (now_usec() - t0) / USEC_PER_MSEC);
        g_assert_false(dir_exists(dir));
        assert_gone(pid);
}

/* ---- kernel specs ---- */

static void test_kernelspec(void) {
        _cleanup_(kernelspec_freep) KernelSpec *s = NULL;
        _cleanup_(strv_freep) char **langs = NULL;
        bool has_cf = false;

        g_assert_cmpint(kernelspec_find("Python", &s), ==, 0);
        g_assert_cmpstr(s->name, ==, "python3");
        g_assert_cmpstr(s->language, ==, "python");
        g_assert_cmpstr(s->display_name, ==, "Python 3 (ipykernel)");
        g_assert_cmpstr(s->resource_dir, ==, "/usr/share/jupyter/kernels/python3");
        g_assert_false(s->interrupt_message);
        g_assert_nonnull(s->env);
        g_assert_null(s->env[0]);
        for (char **a = s->argv; *a; a++)
                has_cf = has_cf || strcmp(*a, "{connection_file}") == 0;
        g_assert_true(has_cf);

        {
                KernelSpec *none = NULL;
                g_assert_cmpint(kernelspec_find("nosuchlang", &none), ==, -ENOENT);
                g_assert_null(none);
        }
        g_assert_cmpint(kernelspec_languages(&langs), ==, 0);
        g_assert_true(g_strv_contains((const char *const *) langs, "python"));
}

static void write_spec(const char *root, const char *name, const char *json) {
        g_autofree char *dir = g_build_filename(root, "kernels", name, NULL);
        g_autofree char *file = g_build_filename(dir, "kernel.json", NULL);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_true(g_file_set_contents(file, json, -1, NULL));
}

static void rm_tree(const char *path) {
        const char *argv[] = { "rm", "-rf", "--", path, NULL };
        int status = 0;

        g_assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                                   &status, NULL));
        g_assert_cmpint(status, ==, 0);
}

static void test_fake_spec(void) {
        g_autofree char *root = g_dir_make_tmp("execd-spec-XXXXXX", NULL);
        g_autofree char *root2 = g_dir_make_tmp("execd-spec-XXXXXX", NULL);
        g_autofree char *path = g_strconcat(root, "::", root2, NULL);
        _cleanup_(kernelspec_freep) KernelSpec *s = NULL, *s2 = NULL;
        _cleanup_(strv_freep) char **langs = NULL;
        Life life = {};
        Kernel *k = NULL;
        KernelOptions opts = { .runtime_dir = runtime_dir };
        uint64_t t0;

        write_spec(root, "fake", "{\"argv\": [\"/bin/false\", \"{connection_file}\"],"
                                 " \"language\": \"FakeLang\","
                                 " \"display_name\": \"Fake\", \"env\": {\"FOO\": \"bar\", \"N\": 1},"
                                 " \"interrupt_mode\": \"message\"}");
        write_spec(root, "broken", "{\"argv\": [\"/bin/true\"]");
        /* Same name in a later directory: hidden by the first. */
        write_spec(root2, "fake", "{\"argv\": [\"/bin/true\"], \"language\": \"otherlang\"}");
        write_spec(root2, "zzz", "{\"argv\": [\"/nonexistent/kernel\"], \"language\": \"nolang\"}");
        g_assert_true(g_setenv("JUPYTER_PATH", path, true));

        g_assert_cmpint(kernelspec_find("fakelang", &s), ==, 0);
        g_assert_cmpstr(s->name, ==, "fake");
        g_assert_cmpstr(s->display_name, ==, "Fake");
        g_assert_cmpstr(s->language, ==, "FakeLang");
        g_assert_true(s->interrupt_message);
        g_assert_nonnull(s->env);
        g_assert_cmpstr(s->env[0], ==, "FOO=bar");
        g_assert_null(s->env[1]);
        {
                KernelSpec *none = NULL;
                g_assert_cmpint(kernelspec_find("otherlang", &none), ==, -ENOENT);
        }
        g_assert_cmpint(kernelspec_languages(&langs), ==, 0);
        g_assert_cmpuint(g_strv_length(langs), >=, 3);
        g_assert_true(g_strv_contains((const char *const *) langs, "fakelang"));
        g_assert_true(g_strv_contains((const char *const *) langs, "nolang"));
        g_assert_true(g_strv_contains((const char *const *) langs, "python"));
        for (char **l = langs; l[0] && l[1]; l++)
                g_assert_cmpint(strcmp(l[0], l[1]), <, 0);

        /* An exec failure is synchronous. */
        g_assert_cmpint(kernelspec_find("nolang", &s2), ==, 0);
        g_assert_cmpint(kernel_start(event, s2, &opts, &life_callbacks, &life, &k), ==, -ENOENT);
        g_assert_null(k);
        g_assert_false(life.ready);

        /* A kernel that exits at once fails its start promptly, and can be freed from the callback. */
        t0 = now_usec();
        life.free_in_ready = true;
        life.slot = &k;
        g_assert_cmpint(kernel_start(event, s, &opts, &life_callbacks, &life, &k), ==, 0);
        wait_for(&life.ready, 5 * USEC_PER_SEC, "start failure");
        g_test_message("fake kernel failed after %" PRIu64 " ms: %s", (now_usec() - t0) / USEC_PER_MSEC,
                       life.message);
        g_assert_cmpint(life.error, <, 0);
        g_assert_nonnull(life.message);
        g_assert_nonnull(strstr(life.message, "status 1"));
        g_assert_null(k);
        g_assert_false(life.died);
        spin(100 * USEC_PER_MSEC);
        g_assert_false(life.died);
        life_clear(&life);

        /* The same, freed after the fact; the runtime subdirectory goes with it. */
        g_assert_cmpint(kernel_start(event, s, &opts, &life_callbacks, &life, &k), ==, 0);
        wait_for(&life.ready, 5 * USEC_PER_SEC, "start failure");
        g_assert_cmpint(life.error, ==, -ECHILD);
        g_assert_cmpint(kernel_execute(k, "1", &run_callbacks, NULL), ==, -ENOTCONN);
        g_assert_cmpint(kernel_interrupt(k), ==, -ENOTCONN);
        free_and_check(k);
        life_clear(&life);

        /* What it printed is in the message. */
        write_spec(root, "talker", "{\"argv\": [\"/bin/sh\", \"-c\","
                                   " \"echo starting; echo boom: \\\"$1\\\" >&2; exit 3\","
                                   " \"sh\", \"{connection_file}\"], \"language\": \"talklang\"}");
        {
                _cleanup_(kernelspec_freep) KernelSpec *t = NULL;
                g_autofree char *want = NULL;

                g_assert_cmpint(kernelspec_find("talklang", &t), ==, 0);
                g_assert_cmpint(kernel_start(event, t, &opts, &life_callbacks, &life, &k), ==, 0);
                wait_for(&life.ready, 5 * USEC_PER_SEC, "start failure");
                g_test_message("%s", life.message);
                want = g_strdup_printf("kernel exited with status 3 before it was ready; its output ends: "
                                       "starting\nboom: %s/connection.json", kernel_runtime_dir(k));
                g_assert_cmpstr(life.message, ==, want);
                free_and_check(k);
                life_clear(&life);
        }

        g_unsetenv("JUPYTER_PATH");
        rm_tree(root);
        rm_tree(root2);
        g_assert_cmpint(g_rmdir(runtime_dir), ==, 0); /* nothing left behind */
        g_assert_cmpint(g_mkdir(runtime_dir, 0700), ==, 0);
}

/* ---- a live python kernel ---- */

static Kernel *kernel;
static Life life;
static KernelSpec *spec;

static void test_start(void) {
        uint64_t usec;

        spec = python_spec();
        kernel = start_python(&life, spec, &usec);
        g_test_message("python kernel ready after %" PRIu64 " ms", usec / USEC_PER_MSEC);
        g_printerr("# python kernel start: %" PRIu64 " ms\n", usec / USEC_PER_MSEC);
        g_assert_false(kernel_is_running(kernel));
}

static void test_execute(void) {
        Run r;

        execute(kernel, "print(\"hi\")\n2+2", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpstr(r.out->str, ==, "hi\n");
        g_assert_cmpstr(r.err->str, ==, "");
        g_assert_cmpuint(r.plain->len, ==, 1);
        g_assert_cmpstr(r.plain->pdata[0], ==, "4");
        g_assert_cmpint(g_array_index(r.counts, int64_t, 0), ==, 1);
        g_assert_cmpint(r.input_count, ==, 1);
        g_assert_null(r.ename);
        run_clear(&r);

        execute(kernel, "x = 5", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpuint(r.plain->len, ==, 0);
        run_clear(&r);
        execute(kernel, "x * 2", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpuint(r.plain->len, ==, 1);
        g_assert_cmpstr(r.plain->pdata[0], ==, "10");
        g_assert_cmpint(g_array_index(r.counts, int64_t, 0), ==, 3);
        run_clear(&r);

        execute(kernel, "import sys; print('to stderr', file=sys.stderr)", &r);
        g_assert_cmpstr(r.err->str, ==, "to stderr\n");
        run_clear(&r);
}

static void test_error(void) {
        Run r;

        execute(kernel, "1/0", &r);
        g_assert_cmpstr(r.status, ==, "error");
        g_assert_cmpstr(r.ename, ==, "ZeroDivisionError");
        g_assert_cmpstr(r.evalue, ==, "division by zero");
        g_assert_cmpuint(r.tb_len, >, 0);
        run_clear(&r);

        execute(kernel, "def f(:\n  pass", &r);
        g_assert_cmpstr(r.status, ==, "error");
        g_assert_cmpstr(r.ename, ==, "SyntaxError");
        run_clear(&r);
}

static void test_display(void) {
        Run r;

        execute(kernel, "from IPython.display import HTML, display; display(HTML(\"<b>x</b>\"))", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpuint(r.html->len, ==, 1);
        g_assert_cmpstr(r.html->pdata[0], ==, "<b>x</b>");
        g_assert_cmpint(g_array_index(r.counts, int64_t, 0), ==, 0);
        run_clear(&r);
}

static void test_unicode(void) {
        Run r;

        execute(kernel, "print('h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c \U0001F600')\n'\u00fc' * 3", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpstr(r.out->str, ==, "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c \U0001F600\n");
        g_assert_cmpstr(r.plain->pdata[0], ==, "'\u00fc\u00fc\u00fc'");
        run_clear(&r);

        g_assert_cmpint(kernel_execute(kernel, "'\xff'", &run_callbacks, NULL), ==, -EINVAL);
}

static void test_busy(void) {
        Run r, other;

        run_init(&r);
        run_init(&other);
        g_assert_cmpint(kernel_execute(kernel, "import time; time.sleep(0.3); print('slept')",
                                       &run_callbacks, &r), ==, 0);
        g_assert_cmpint(kernel_execute(kernel, "1", &run_callbacks, &other), ==, -EBUSY);
        wait_for(&r.done, STEP_TIMEOUT_USEC, "sleep");
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpstr(r.out->str, ==, "slept\n");
        g_assert_cmpuint(r.elapsed, >=, 300);
        g_assert_false(other.done);
        run_clear(&r);
        run_clear(&other);
}

static void interrupt_loop(Kernel *k) {
        Run r;

        run_init(&r);
        g_assert_cmpint(kernel_execute(k, "print('looping', flush=True)\nwhile True: pass",
                                       &run_callbacks, &r), ==, 0);
        /* Interrupt once it is surely inside the loop. */
        while (!strstr(r.out->str, "looping"))
                g_assert_cmpint(sd_event_run(event, 100 * USEC_PER_MSEC), >=, 0);
        spin(100 * USEC_PER_MSEC);
        g_assert_false(r.done);
        g_assert_cmpint(kernel_interrupt(k), ==, 0);
        wait_for(&r.done, 10 * USEC_PER_SEC, "interrupted run");
        g_assert_cmpstr(r.status, ==, "error");
        g_assert_cmpstr(r.ename, ==, "KeyboardInterrupt");
        run_clear(&r);

        execute(k, "1+1", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpstr(r.plain->pdata[0], ==, "2");
        run_clear(&r);
}

static void test_interrupt(void) {
        interrupt_loop(kernel);
}

static void test_large_output(void) {
        Run r;
        g_auto(GStrv) lines = NULL;

        /* Many messages: the ZMQ_FD edge handling either keeps up or hangs here. */
        execute(kernel, "import sys\nfor i in range(20000):\n"
                        "    print(i)\n    if i % 100 == 0: sys.stdout.flush()\n"
                        "for i in range(500):\n    display(i)", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        lines = g_strsplit(r.out->str, "\n", -1);
        g_assert_cmpuint(g_strv_length(lines), ==, 20001);
        for (int i = 0; i < 20000; i++) {
                char want[16];
                snprintf(want, sizeof want, "%d", i);
                g_assert_cmpstr(lines[i], ==, want);
        }
        g_assert_cmpuint(r.plain->len, ==, 500);
        g_assert_cmpstr(r.plain->pdata[499], ==, "499");
        run_clear(&r);

        /* One big message: 8 MiB of text. */
        execute(kernel, "print('y' * (8 << 20))", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_cmpuint(r.out->len, ==, (8u << 20) + 1);
        run_clear(&r);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static void test_round_trip(void) {
        uint64_t t[50];

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                Run r;
                uint64_t t0 = now_usec();

                execute(kernel, "1+1", &r);
                t[i] = now_usec() - t0;
                g_assert_cmpstr(r.plain->pdata[0], ==, "2");
                run_clear(&r);
        }
        qsort(t, ELEMENTSOF(t), sizeof t[0], cmp_u64);
        g_printerr("# 1+1 round trip over %zu runs: min %.2f ms, median %.2f ms, max %.2f ms\n",
                   ELEMENTSOF(t), t[0] / 1000.0, t[ELEMENTSOF(t) / 2] / 1000.0,
                   t[ELEMENTSOF(t) - 1] / 1000.0);
}

/* Starting the next run from the complete callback. */
typedef struct Chain {
        Kernel *k;
        Run runs[3];
        unsigned n;
        bool done;
} Chain;

static Chain chain;

static void chain_next(void *ud, const char *status, uint64_t elapsed_ms) {
        on_complete(ud, status, elapsed_ms);
        if (++chain.n == ELEMENTSOF(chain.runs)) {
                chain.done = true;
                return;
        }
        run_init(&chain.runs[chain.n]);
        g_assert_cmpint(kernel_execute(chain.k, "print(len('abc'))", &(KernelRunCallbacks) {
                                .stream = on_stream, .complete = chain_next }, &chain.runs[chain.n]), ==, 0);
}

static void test_chain(void) {
        chain = (Chain) { .k = kernel };
        run_init(&chain.runs[0]);
        g_assert_cmpint(kernel_execute(kernel, "print(len('abc'))", &(KernelRunCallbacks) {
                                .stream = on_stream, .complete = chain_next }, &chain.runs[0]), ==, 0);
        wait_for(&chain.done, STEP_TIMEOUT_USEC, "chained runs");
        for (size_t i = 0; i < ELEMENTSOF(chain.runs); i++) {
                g_assert_cmpstr(chain.runs[i].out->str, ==, "3\n");
                g_assert_cmpstr(chain.runs[i].status, ==, "ok");
                run_clear(&chain.runs[i]);
        }
}

static void test_death(void) {
        pid_t pid = kernel_pid(kernel);
        siginfo_t si = {};
        Run r;

        run_init(&r);
        g_assert_cmpint(kernel_execute(kernel, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)",
                                       &run_callbacks, &r), ==, 0);
        while (!strstr(r.out->str, "sleeping"))
                g_assert_cmpint(sd_event_run(event, 100 * USEC_PER_MSEC), >=, 0);
        g_assert_cmpint(kill(pid, SIGKILL), ==, 0);

        /* As the daemon's SIGCHLD handler does: peek, then let the module reap its own. */
        g_assert_cmpint(waitid(P_PID, (id_t) pid, &si, WEXITED | WNOWAIT), ==, 0);
        g_assert_true(kernel_reap_pid(pid));
        g_assert_false(kernel_reap_pid(pid));
        g_assert_true(r.done);
        g_assert_cmpstr(r.status, ==, "dead");
        g_assert_cmpstr(r.ename, ==, "KernelDied");
        g_assert_nonnull(strstr(r.evalue, "signal 9"));
        g_assert_true(life.died);
        g_assert_cmpstr(life.why, ==, r.evalue);
        run_clear(&r);

        g_assert_false(kernel_is_ready(kernel));
        g_assert_cmpint(kernel_execute(kernel, "1", &run_callbacks, &r), ==, -ENOTCONN);
        g_assert_cmpint(kernel_interrupt(kernel), ==, -ENOTCONN);
        spin(200 * USEC_PER_MSEC);
        free_and_check(kernel);
        kernel = NULL;
        life_clear(&life);
}

/* A second kernel: the pidfd path for deaths, message-mode interrupts, free while running. */
static void test_second_kernel(void) {
        _cleanup_(kernelspec_freep) KernelSpec *s = python_spec();
        Life l = {};
        Kernel *k;
        Run r;

        s->interrupt_message = true;
        k = start_python(&l, s, NULL);
        interrupt_loop(k);

        /* Freed in the middle of a run: no callback afterwards. */
        run_init(&r);
        g_assert_cmpint(kernel_execute(k, "import time; time.sleep(30)", &run_callbacks, &r), ==, 0);
        spin(200 * USEC_PER_MSEC);
        free_and_check(k);
        spin(200 * USEC_PER_MSEC);
        g_assert_false(r.done);
        g_assert_false(l.died);
        run_clear(&r);
        life_clear(&l);

        /* Killed between runs, noticed through the pidfd. */
        k = start_python(&l, s, NULL);
        g_assert_cmpint(kill(kernel_pid(k), SIGKILL), ==, 0);
        wait_for(&l.died, 5 * USEC_PER_SEC, "death by pidfd");
        g_assert_cmpstr(l.why, ==, "killed by signal 9 (Killed)");
        free_and_check(k);
        life_clear(&l);
}

static void test_heartbeat(void) {
        Life l = {};
        Kernel *k = start_python(&l, spec, NULL);
        uint64_t t0;
        Run r;

        /* Beats keep going through a busy kernel (they are answered by a thread of their own). */
        execute(k, "import time; time.sleep(7)", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_false(l.died);
        run_clear(&r);

        /* A stopped kernel answers nothing. */
        run_init(&r);
        g_assert_cmpint(kernel_execute(k, "import time; time.sleep(60)", &run_callbacks, &r), ==, 0);
        spin(300 * USEC_PER_MSEC);
        t0 = now_usec();
        g_assert_cmpint(kill(kernel_pid(k), SIGSTOP), ==, 0);
        wait_for(&l.died, 20 * USEC_PER_SEC, "heartbeat death");
        g_test_message("heartbeat death after %" PRIu64 " ms", (now_usec() - t0) / USEC_PER_MSEC);
        g_assert_cmpstr(l.why, ==, "heartbeat");
        g_assert_true(r.done);
        g_assert_cmpstr(r.status, ==, "dead");
        run_clear(&r);
        free_and_check(k);
        life_clear(&l);
}

/* One frame over the 64 MiB limit: dropped, and the run still completes (on its reply). */
static void test_oversize(void) {
        Life l = {};
        Kernel *k;
        Run r;

        if (!spec)
                spec = python_spec();
        k = start_python(&l, spec, NULL);
        execute(k, "print('z' * (65 << 20))\nprint('after')", &r);
        g_assert_cmpstr(r.status, ==, "ok");
        g_assert_null(strstr(r.out->str, "zzzz"));
        g_test_message("oversize run: %" PRIu64 " ms, output %zu bytes", r.elapsed, r.out->len);
        run_clear(&r);
        execute(k, "1+1", &r);
        g_assert_cmpstr(r.plain->pdata[0], ==, "2");
        run_clear(&r);
        g_assert_false(l.died);
        free_and_check(k);
        life_clear(&l);
}

static void test_set_user(void) {
        KernelOptions opts = {
                .runtime_dir = runtime_dir, .cwd = "/", .set_user = true, .uid = 65534, .gid = 65534,
        };
        Life l = {};
        Kernel *k = NULL;
        Run r;

        if (geteuid() != 0) {
                g_test_skip("needs root");
                return;
        }
        if (!spec)
                spec = python_spec();
        /* The kernel's user must reach its subdirectory. */
        g_assert_cmpint(chmod(runtime_dir, 0711), ==, 0);
        g_assert_cmpint(kernel_start(event, spec, &opts, &life_callbacks, &l, &k), ==, 0);
        wait_for(&l.ready, STEP_TIMEOUT_USEC + 10 * USEC_PER_SEC, "kernel ready");
        if (l.error != 0)
                g_error("kernel failed to start: %s", l.message);
        execute(k, "import os; (os.getuid(), os.getgid(), os.getgroups(), os.getcwd())", &r);
        g_assert_cmpstr(r.plain->pdata[0], ==, "(65534, 65534, [65534], '/')");
        run_clear(&r);
        free_and_check(k);
        life_clear(&l);
        g_assert_cmpint(chmod(runtime_dir, 0700), ==, 0);
}

static void test_cleanup(void) {
        spec = kernelspec_free(spec);
        /* Every kernel removed its own subdirectory. */
        g_assert_cmpint(g_rmdir(runtime_dir), ==, 0);
}

int main(int argc, char **argv) {
        int r;

        g_test_init(&argc, &argv, NULL);
        if (g_getenv("EXECD_TEST_DEBUG"))
                log_set_max_level(LOG_DEBUG);
        g_assert_cmpint(sd_event_new(&event), >=, 0);
        runtime_dir = g_dir_make_tmp("execd-jup-XXXXXX", NULL);
        g_assert_nonnull(runtime_dir);

        g_test_add_func("/jupyter/kernelspec", test_kernelspec);
        g_test_add_func("/jupyter/fake-spec", test_fake_spec);
        g_test_add_func("/jupyter/start", test_start);
        g_test_add_func("/jupyter/execute", test_execute);
        g_test_add_func("/jupyter/error", test_error);
        g_test_add_func("/jupyter/display", test_display);
        g_test_add_func("/jupyter/unicode", test_unicode);
        g_test_add_func("/jupyter/busy", test_busy);
        g_test_add_func("/jupyter/interrupt", test_interrupt);
        g_test_add_func("/jupyter/large-output", test_large_output);
        g_test_add_func("/jupyter/round-trip", test_round_trip);
        g_test_add_func("/jupyter/chain", test_chain);
        g_test_add_func("/jupyter/death", test_death);
        g_test_add_func("/jupyter/second-kernel", test_second_kernel);
        g_test_add_func("/jupyter/heartbeat", test_heartbeat);
        g_test_add_func("/jupyter/oversize", test_oversize);
        g_test_add_func("/jupyter/set-user", test_set_user);
        g_test_add_func("/jupyter/cleanup", test_cleanup);
        r = g_test_run();
        sd_event_unref(event);
        g_free(runtime_dir);
        return r;
}
