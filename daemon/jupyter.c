/* SPDX-License-Identifier: Apache-2.0 */
/* Jupyter kernels: spawn one from its spec with an ipc connection file in a private directory,
 * speak the messaging protocol 5.3 over ZeroMQ from the sd-event loop, and watch the process by
 * pidfd and heartbeat.
 *
 * ZeroMQ and sd-event: ZMQ_FD only says "something may have changed" and is reset by any call
 * that processes the socket's commands (ZMQ_EVENTS, recv, send). So every wake-up drains while
 * ZMQ_EVENTS has ZMQ_POLLIN, and every send (which may swallow the edge) schedules a deferred
 * re-check of all sockets, as does a drain that stopped early to let other sources run.
 *
 * Memory: nothing is queued here; each message is handed to the callbacks as it arrives. An iopub
 * frame larger than MSG_SIZE_MAX makes libzmq drop the connection (ZMQ_MAXMSGSIZE) instead of
 * buffering it. libzmq 4.3 takes that for a protocol error and never reconnects, so a socket
 * monitor watches iopub for disconnections and the socket is then made anew. What was published
 * in between is lost; a run whose idle status went with it completes IDLE_GRACE_USEC after its
 * execute_reply. Shell and control carry only small replies and have no limit. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-id128.h>
#include <time.h>
#include <zmq.h>

#include "env.h"
#include "groups.h"
#include "jupyter.h"
#include "log.h"
#include "macro.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define PROTOCOL_VERSION "5.3"
#define DELIMITER "<IDS|MSG>"
#define KERNEL_INFO_RESEND_USEC (500 * USEC_PER_MSEC)
/* kernel_info_reply came but no iopub message yet: the subscription is still on its way. */
#define IOPUB_NUDGE_USEC (50 * USEC_PER_MSEC)
#define START_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define HB_INTERVAL_USEC (3 * USEC_PER_SEC)
#define HB_MAX_MISSED 3
#define IDLE_GRACE_USEC (5 * USEC_PER_SEC)
/* Messages per socket per wake-up before other event sources get a turn. */
#define MSGS_PER_DISPATCH 64
/* Identities, delimiter, signature, four dicts, buffers: buffers past this are dropped. */
#define FRAMES_MAX 32
#define MSG_SIZE_MAX ((int64_t) 64 * 1024 * 1024)
#define LOG_TAIL_MAX 2048
#define KEY_BYTES 32
#define UUID_MAX SD_ID128_UUID_STRING_MAX

/* SOCK_MONITOR receives the iopub socket's disconnection events. */
enum { SOCK_SHELL, SOCK_CONTROL, SOCK_IOPUB, SOCK_HB, SOCK_MONITOR, _SOCK_MAX };
static const char *const sock_name[_SOCK_MAX] = { "shell", "control", "iopub", "hb", "iopub monitor" };
/* Ports with the ipc transport are just suffixes of the path: <ip>-<port>. stdin gets 3. */
static const int sock_port[_SOCK_MAX] = { 1, 4, 2, 5, 0 };
#define STDIN_PORT 3

typedef enum { KERNEL_STARTING, KERNEL_READY, KERNEL_DEAD } KernelState;

struct Kernel {
        unsigned n_ref;
        bool freed;
        sd_event *event;
        KernelCallbacks cb;
        void *userdata;
        KernelState state;
        bool interrupt_message;
        char *dir;      /* private runtime subdirectory */
        char *ip;       /* ipc path prefix, inside dir */
        char key[KEY_BYTES * 2 + 1];
        char session[UUID_MAX];

        pid_t pid;
        int pidfd;
        bool reaped;
        char *group_marker; /* groups.h */
        sd_event_source *pidfd_source;
        int log_fd;     /* the kernel's stdout and stderr */
        sd_event_source *log_source;
        char log_tail[LOG_TAIL_MAX];
        size_t log_len;

        void *sock[_SOCK_MAX];
        sd_event_source *sock_source[_SOCK_MAX];
        sd_event_source *recheck_source;
        bool iopub_lost;        /* the monitor saw iopub disconnect: make it anew */

        sd_event_source *start_timer;
        uint64_t start_usec;
        bool got_info_reply, got_iopub;

        sd_event_source *hb_timer;
        bool hb_waiting;
        unsigned hb_missed;

        /* The run in progress. */
        bool running;
        char run_msg_id[UUID_MAX];
        KernelRunCallbacks run_cb;
        void *run_ud;
        uint64_t run_start_usec;
        char *reply_status;
        bool got_reply, got_idle;
        sd_event_source *idle_timer;

        Kernel *prev, *next;
};

/* One context for the daemon; created with the first kernel, never terminated. */
static void *zmq_context;
static Kernel *kernels;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void g_object_unrefp(void *p) {
        if (*(void **) p)
                g_object_unref(*(void **) p);
}

static int new_uuid(char ret[UUID_MAX]) {
        sd_id128_t id;
        int r = sd_id128_randomize(&id);

        if (r < 0)
                return r;
        sd_id128_to_uuid_string(id, ret);
        return 0;
}

static Kernel *kernel_ref(Kernel *k) {
        k->n_ref++;
        return k;
}

static void kernel_release(Kernel *k) {
        free(k->reply_status);
        free(k->ip);
        group_unmark(&k->group_marker);
        free(k->dir);
        free(k);
}

static void kernel_unref(Kernel *k) {
        if (k && --k->n_ref == 0)
                kernel_release(k);
}

static void kernel_unrefp(Kernel **k) {
        kernel_unref(*k);
}

/* Every event handler holds a reference: a callback may kernel_free() under its feet, after which
 * it must check k->freed and touch nothing else. */
#define KERNEL_HOLD(k) _cleanup_(kernel_unrefp) _unused_ Kernel *_hold = kernel_ref(k)

/* ---- the kernel's own output: only a tail, for start failure messages ---- */

static void kernel_read_log(Kernel *k, unsigned max_reads) {
        char buf[4096];

        for (unsigned n = 0; k->log_fd >= 0 && n < max_reads; n++) {
                ssize_t r = read(k->log_fd, buf, sizeof buf);
                size_t len;

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 && errno == EAGAIN)
                        return;
                if (r <= 0) {
                        k->log_source = sd_event_source_disable_unref(k->log_source);
                        k->log_fd = safe_close(k->log_fd);
                        return;
                }
                len = MIN((size_t) r, sizeof k->log_tail);
                if (k->log_len + len > sizeof k->log_tail) {
                        size_t drop = k->log_len + len - sizeof k->log_tail;
                        memmove(k->log_tail, k->log_tail + drop, k->log_len - drop);
                        k->log_len -= drop;
                }
                memcpy(k->log_tail + k->log_len, buf + (size_t) r - len, len);
                k->log_len += len;
        }
}

static int on_log(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        kernel_read_log(userdata, 16);
        return 0;
}

/* The tail as valid UTF-8 without surrounding blank space, for messages that go on the bus. */
static char *kernel_log_text(Kernel *k) {
        g_autofree char *valid = g_utf8_make_valid(k->log_tail, (gssize) k->log_len);
        char *start = valid, *end;

        while (*start == '\n' || *start == ' ' || *start == '\r' || *start == '\t')
                start++;
        end = start + strlen(start);
        while (end > start && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\r' || end[-1] == '\t'))
                *--end = 0;
        return strdup(start);
}

/* ---- wire protocol ---- */

static void kernel_schedule_recheck(Kernel *k) {
        if (k->recheck_source)
                (void) sd_event_source_set_enabled(k->recheck_source, SD_EVENT_ONESHOT);
}

static void iso8601_now(char *buf, size_t size) {
        struct timespec ts;
        struct tm tm;
        size_t n;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
        (void) snprintf(buf + n, size - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static void sign(const char *key, const void *const parts[4], const size_t sizes[4], char ret[65]) {
        GHmac *h = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *) key, strlen(key));

        for (int i = 0; i < 4; i++)
                g_hmac_update(h, parts[i], (gssize) sizes[i]);
        memcpy(ret, g_hmac_get_string(h), 64);
        ret[64] = 0;
        g_hmac_unref(h);
}

static int kernel_send(Kernel *k, int i, const char *msg_type, const char *content, char *ret_msg_id) {
        char msg_id[UUID_MAX], date[64], sig[65];
        _cleanup_(freep) char *header = NULL;
        const void *parts[4];
        size_t sizes[4];
        int r;

        if (!k->sock[i])
                return -ENOTCONN;
        r = new_uuid(msg_id);
        if (r < 0)
                return r;
        iso8601_now(date, sizeof date);
        /* Every value is ours and needs no escaping. */
        if (asprintf(&header, "{\"msg_id\":\"%s\",\"session\":\"%s\",\"username\":\"execd\",\"date\":\"%s\","
                     "\"msg_type\":\"%s\",\"version\":\"" PROTOCOL_VERSION "\"}",
                     msg_id, k->session, date, msg_type) < 0)
                return -ENOMEM;

        parts[0] = header, sizes[0] = strlen(header);
        parts[1] = "{}", sizes[1] = 2;
        parts[2] = "{}", sizes[2] = 2;
        parts[3] = content, sizes[3] = strlen(content);
        sign(k->key, parts, sizes, sig);

        /* ZeroMQ delivers a multipart message whole or not at all; only the first frame can fail
         * for lack of room. */
        if (zmq_send(k->sock[i], DELIMITER, strlen(DELIMITER), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
                r = -errno;
                kernel_schedule_recheck(k);
                return r;
        }
        (void) zmq_send(k->sock[i], sig, 64, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        for (int j = 0; j < 4; j++)
                (void) zmq_send(k->sock[i], parts[j], sizes[j], (j < 3 ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
        kernel_schedule_recheck(k);
        if (ret_msg_id)
                memcpy(ret_msg_id, msg_id, UUID_MAX);
        return 0;
}

static bool verify(const char *key, zmq_msg_t *frames) {
        const void *parts[4];
        size_t sizes[4];
        const char *theirs = zmq_msg_data(&frames[0]);
        char ours[65];
        unsigned char d = 0;

        if (zmq_msg_size(&frames[0]) != 64)
                return false;
        for (int i = 0; i < 4; i++) {
                parts[i] = zmq_msg_data(&frames[i + 1]);
                sizes[i] = zmq_msg_size(&frames[i + 1]);
        }
        sign(key, parts, sizes, ours);
        /* Constant time: how much of a forged signature is right must not show in the timing. */
        for (int i = 0; i < 64; i++)
                d |= (unsigned char) (ours[i] ^ theirs[i]);
        return d == 0;
}

static JsonObject *parse_object(JsonParser *p, zmq_msg_t *frame) {
        JsonNode *n;

        if (!json_parser_load_from_data(p, zmq_msg_data(frame), (gssize) zmq_msg_size(frame), NULL))
                return NULL;
        n = json_parser_get_root(p);
        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static const char *get_string(JsonObject *o, const char *member) {
        JsonNode *n = o ? json_object_get_member(o, member) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

static int64_t get_int(JsonObject *o, const char *member) {
        JsonNode *n = o ? json_object_get_member(o, member) : NULL;

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return 0;
        return json_node_get_int(n);
}

static JsonObject *get_object(JsonObject *o, const char *member) {
        JsonNode *n = o ? json_object_get_member(o, member) : NULL;

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

/* ---- runs ---- */

static void kernel_run_finish(Kernel *k, const char *status) {
        KernelRunCallbacks cb = k->run_cb;
        void *ud = k->run_ud;
        uint64_t elapsed = (now_usec() - k->run_start_usec) / USEC_PER_MSEC;
        _cleanup_(freep) char *copy = strdup(status);

        /* Cleared first: the callback may start the next run. */
        k->running = false;
        k->run_msg_id[0] = 0;
        k->run_cb = (KernelRunCallbacks) {};
        k->run_ud = NULL;
        k->reply_status = mfree(k->reply_status);
        k->got_reply = k->got_idle = false;
        k->idle_timer = sd_event_source_disable_unref(k->idle_timer);
        if (cb.complete)
                cb.complete(ud, copy ? copy : "error", elapsed);
}

static void kernel_run_maybe_finish(Kernel *k) {
        if (k->running && k->got_reply && k->got_idle)
                kernel_run_finish(k, k->reply_status ? k->reply_status : "ok");
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Kernel *k = userdata;
        KERNEL_HOLD(k);

        /* The reply came but its idle status never did (dropped by a full or reconnecting iopub). */
        k->idle_timer = sd_event_source_disable_unref(k->idle_timer);
        if (k->running && k->got_reply) {
                log_debug("kernel %d: no idle status for run %s, completing on the reply",
                          (int) k->pid, k->run_msg_id);
                k->got_idle = true;
                kernel_run_maybe_finish(k);
        }
        return 0;
}

static void kernel_run_died(Kernel *k, const char *why) {
        if (!k->running)
                return;
        if (k->run_cb.error) {
                char *tb[] = { NULL };
                k->run_cb.error(k->run_ud, "KernelDied", why, tb);
                if (k->freed || !k->running)
                        return;
        }
        kernel_run_finish(k, "dead");
}

/* ---- life and death ---- */

static void kernel_close_socket(Kernel *k, int i) {
        if (i == SOCK_IOPUB) {
                /* Stop the monitor before closing its reader: libzmq's I/O thread sends monitor
                 * events blocking, and with no reader it would hang there for good, and every
                 * socket of the context with it. */
                if (k->sock[i])
                        (void) zmq_socket_monitor(k->sock[i], NULL, 0);
                kernel_close_socket(k, SOCK_MONITOR);
        }
        k->sock_source[i] = sd_event_source_disable_unref(k->sock_source[i]);
        if (k->sock[i]) {
                (void) zmq_close(k->sock[i]);
                k->sock[i] = NULL;
        }
}

static void kernel_close_channels(Kernel *k) {
        k->start_timer = sd_event_source_disable_unref(k->start_timer);
        k->hb_timer = sd_event_source_disable_unref(k->hb_timer);
        k->idle_timer = sd_event_source_disable_unref(k->idle_timer);
        k->recheck_source = sd_event_source_disable_unref(k->recheck_source);
        for (int i = 0; i < _SOCK_MAX; i++)
                kernel_close_socket(k, i);
}

/* Before ready a failed start (error < 0), after it a death. The process is killed if alive. */
static void kernel_end(Kernel *k, int error, const char *why) {
        KernelState was = k->state;

        if (was == KERNEL_DEAD)
                return;
        k->state = KERNEL_DEAD;
        kernel_close_channels(k);
        /* The unreaped leader pins the group id; its pidfd watch reaps it. */
        if (!k->reaped && k->pid > 0)
                (void) kill(-k->pid, SIGKILL);

        if (was == KERNEL_STARTING) {
                log_debug("kernel %d failed to start: %s", (int) k->pid, why);
                if (k->cb.ready)
                        k->cb.ready(k, error, why, k->userdata);
                return;
        }
        log_debug("kernel %d died: %s", (int) k->pid, why);
        kernel_run_died(k, why);
        if (k->freed)
                return;
        if (k->cb.died)
                k->cb.died(k, why, k->userdata);
}

static void kernel_end_start(Kernel *k, int error, const char *what) {
        _cleanup_(freep) char *tail = NULL, *msg = NULL;

        kernel_read_log(k, 64);
        tail = kernel_log_text(k);
        if (asprintf(&msg, "%s%s%s", what, tail && *tail ? "; its output ends: " : "", tail ? tail : "") < 0)
                msg = NULL;
        kernel_end(k, error, msg ? msg : what);
}

static void kernel_exited(Kernel *k, const siginfo_t *si) {
        _cleanup_(freep) char *why = NULL;
        int r;

        if (!si)
                r = asprintf(&why, "exited");
        else if (si->si_code == CLD_EXITED)
                r = asprintf(&why, "exited with status %d", si->si_status);
        else
                r = asprintf(&why, "killed by signal %d (%s)", si->si_status, strsignal(si->si_status));
        if (r < 0)
                why = NULL;

        if (k->state == KERNEL_STARTING) {
                _cleanup_(freep) char *what = NULL;
                if (asprintf(&what, "kernel %s before it was ready", why ? why : "exited") < 0)
                        what = NULL;
                kernel_end_start(k, -ECHILD, what ? what : "kernel exited before it was ready");
        } else
                kernel_end(k, -ECHILD, why ? why : "exited");
}

/* Reap the kernel through its pidfd; true when it had exited. Its group goes with it. */
static bool kernel_reap(Kernel *k) {
        siginfo_t si = {};
        bool known = true;

        if (k->reaped || k->pidfd < 0)
                return false;
        if (waitid((idtype_t) P_PIDFD, (id_t) k->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
                if (errno != ECHILD)
                        return false;
                known = false; /* reaped behind our back: gone, status unknown */
        } else if (si.si_pid == 0)
                return false;
        else {
                /* Leftovers of a dead kernel serve nobody; the zombie still pins the group id. */
                (void) kill(-k->pid, SIGKILL);
                (void) waitid((idtype_t) P_PIDFD, (id_t) k->pidfd, &si, WEXITED | WNOHANG);
        }
        k->reaped = true;
        group_unmark(&k->group_marker);
        k->pidfd_source = sd_event_source_disable_unref(k->pidfd_source);
        k->pidfd = safe_close(k->pidfd);
        kernel_exited(k, known ? &si : NULL);
        return true;
}

static int on_pidfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Kernel *k = userdata;
        KERNEL_HOLD(k);

        if (!kernel_reap(k) && !k->freed && !k->reaped)
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return 0;
}

bool kernel_reap_pid(pid_t pid) {
        for (Kernel *k = kernels; k; k = k->next)
                if (!k->freed && !k->reaped && k->pid == pid) {
                        KERNEL_HOLD(k);
                        return kernel_reap(k);
                }
        return false;
}

static void kernel_check_ready(Kernel *k) {
        if (k->state != KERNEL_STARTING || !k->got_info_reply || !k->got_iopub)
                return;
        k->state = KERNEL_READY;
        k->start_timer = sd_event_source_disable_unref(k->start_timer);
        (void) sd_event_source_set_time_relative(k->hb_timer, HB_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(k->hb_timer, SD_EVENT_ON);
        log_debug("kernel %d ready after %" PRIu64 " ms", (int) k->pid,
                  (now_usec() - k->start_usec) / USEC_PER_MSEC);
        if (k->cb.ready)
                k->cb.ready(k, 0, NULL, k->userdata);
}

/* ---- receiving ---- */

static void kernel_handle_iopub(Kernel *k, const char *msg_type, JsonObject *content) {
        const KernelRunCallbacks *cb = &k->run_cb;

        if (strcmp(msg_type, "status") == 0) {
                const char *state = get_string(content, "execution_state");
                if (state && strcmp(state, "idle") == 0) {
                        k->got_idle = true;
                        kernel_run_maybe_finish(k);
                }
        } else if (strcmp(msg_type, "stream") == 0) {
                const char *name = get_string(content, "name"), *text = get_string(content, "text");
                if (cb->stream && name && text)
                        cb->stream(k->run_ud, name, text);
        } else if (strcmp(msg_type, "execute_input") == 0) {
                if (cb->execute_input)
                        cb->execute_input(k->run_ud, get_int(content, "execution_count"));
        } else if (strcmp(msg_type, "execute_result") == 0 || strcmp(msg_type, "display_data") == 0 ||
                   strcmp(msg_type, "update_display_data") == 0) {
                JsonObject *data = get_object(content, "data");
                bool is_result = strcmp(msg_type, "execute_result") == 0;
                int64_t count = is_result ? get_int(content, "execution_count") : 0;
                if (cb->result && data)
                        cb->result(k->run_ud, count, data);
        } else if (strcmp(msg_type, "error") == 0) {
                JsonNode *n = json_object_get_member(content, "traceback");
                JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
                guint len = a ? json_array_get_length(a) : 0, j = 0;
                _cleanup_(freep) const char **tb = calloc(len + 1, sizeof *tb);
                const char *ename = get_string(content, "ename"), *evalue = get_string(content, "evalue");

                if (!tb || !cb->error)
                        return;
                for (guint i = 0; i < len; i++) {
                        JsonNode *e = json_array_get_element(a, i);
                        if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING)
                                tb[j++] = json_node_get_string(e);
                }
                cb->error(k->run_ud, ename ? ename : "", evalue ? evalue : "", (char **) tb);
        }
}

static void kernel_handle_message(Kernel *k, int i, zmq_msg_t *frames, size_t n) {
        _cleanup_(g_object_unrefp) JsonParser *hp = NULL, *pp = NULL, *cp = NULL;
        JsonObject *header, *parent, *content;
        const char *msg_type, *parent_id;
        size_t d;

        for (d = 0; d < n; d++)
                if (zmq_msg_size(&frames[d]) == strlen(DELIMITER) &&
                    memcmp(zmq_msg_data(&frames[d]), DELIMITER, strlen(DELIMITER)) == 0)
                        break;
        if (d + 6 > n) {
                log_debug("kernel %d: malformed message on %s dropped", (int) k->pid, sock_name[i]);
                return;
        }
        if (!verify(k->key, frames + d + 1)) {
                log_warning("kernel %d: message with a bad signature on %s dropped",
                            (int) k->pid, sock_name[i]);
                return;
        }
        hp = json_parser_new_immutable();
        pp = json_parser_new_immutable();
        cp = json_parser_new_immutable();
        header = parse_object(hp, &frames[d + 2]);
        parent = parse_object(pp, &frames[d + 3]);
        content = parse_object(cp, &frames[d + 5]);
        msg_type = get_string(header, "msg_type");
        if (!msg_type || !parent || !content) {
                log_debug("kernel %d: unparsable message on %s dropped", (int) k->pid, sock_name[i]);
                return;
        }
        parent_id = get_string(parent, "msg_id");

        if (i == SOCK_IOPUB) {
                if (k->state == KERNEL_STARTING) {
                        k->got_iopub = true;
                        kernel_check_ready(k);
                        return;
                }
                if (k->running && parent_id && strcmp(parent_id, k->run_msg_id) == 0)
                        kernel_handle_iopub(k, msg_type, content);
                return;
        }
        if (i != SOCK_SHELL)
                return; /* control: interrupt and shutdown replies say nothing we need */

        if (strcmp(msg_type, "kernel_info_reply") == 0 && k->state == KERNEL_STARTING) {
                k->got_info_reply = true;
                if (!k->got_iopub)
                        (void) sd_event_source_set_time_relative(k->start_timer, IOPUB_NUDGE_USEC);
                kernel_check_ready(k);
        } else if (strcmp(msg_type, "execute_reply") == 0 && k->running && parent_id &&
                   strcmp(parent_id, k->run_msg_id) == 0) {
                const char *status = get_string(content, "status");
                free(k->reply_status);
                k->reply_status = strdup(status ? status : "error");
                k->got_reply = true;
                if (!k->got_idle && !k->idle_timer)
                        (void) sd_event_add_time_relative(k->event, &k->idle_timer, CLOCK_MONOTONIC,
                                                          IDLE_GRACE_USEC, 0, on_idle_timer, k);
                kernel_run_maybe_finish(k);
        }
}

/* Receive and handle one message; 0 when there was none. */
static int kernel_recv(Kernel *k, int i) {
        zmq_msg_t frames[FRAMES_MAX];
        size_t n = 0;
        bool more = true;
        int r = 1;

        while (more) {
                zmq_msg_t scratch, *m = n < FRAMES_MAX ? &frames[n] : &scratch;

                zmq_msg_init(m);
                if (zmq_msg_recv(m, k->sock[i], ZMQ_DONTWAIT) < 0) {
                        int e = errno;
                        zmq_msg_close(m);
                        if (e == EINTR)
                                continue;
                        /* Parts of a multipart message come together: EAGAIN only before one. */
                        r = n == 0 && e == EAGAIN ? 0 : -e;
                        goto out;
                }
                more = zmq_msg_more(m);
                if (m == &scratch)
                        zmq_msg_close(m);
                else
                        n++;
        }

        if (i == SOCK_HB) {
                k->hb_waiting = false;
                k->hb_missed = 0;
        } else if (i == SOCK_MONITOR) {
                uint16_t event = 0;
                if (zmq_msg_size(&frames[0]) >= sizeof event)
                        memcpy(&event, zmq_msg_data(&frames[0]), sizeof event);
                if (event == ZMQ_EVENT_DISCONNECTED)
                        k->iopub_lost = true;
        } else
                kernel_handle_message(k, i, frames, n);
out:
        for (size_t j = 0; j < n; j++)
                zmq_msg_close(&frames[j]);
        return r;
}

/* Handle what is readable on socket i, up to MSGS_PER_DISPATCH messages (the rest is picked up by
 * the re-check). Stops as soon as a callback freed the kernel. */
static void kernel_drain(Kernel *k, int i) {
        for (unsigned n = 0; !k->freed && k->sock[i]; n++) {
                int events = 0, r;
                size_t len = sizeof events;

                if (zmq_getsockopt(k->sock[i], ZMQ_EVENTS, &events, &len) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_warning_errno(errno, "kernel %d: ZMQ_EVENTS on %s failed: %m",
                                          (int) k->pid, sock_name[i]);
                        return;
                }
                if (!(events & ZMQ_POLLIN))
                        return;
                if (n >= MSGS_PER_DISPATCH) {
                        kernel_schedule_recheck(k);
                        return;
                }
                r = kernel_recv(k, i);
                if (r < 0 && r != -EAGAIN) {
                        log_warning_errno(r, "kernel %d: receiving on %s failed: %m",
                                          (int) k->pid, sock_name[i]);
                        return;
                }
        }
}

static int kernel_open_socket(Kernel *k, int i);

static void kernel_maybe_reopen_iopub(Kernel *k) {
        int r;

        if (!k->iopub_lost || k->freed || k->state == KERNEL_DEAD)
                return;
        k->iopub_lost = false;
        /* A dead kernel disconnects too: that is reported as its death, not here. */
        if (kernel_reap(k) || k->freed || k->state == KERNEL_DEAD)
                return;
        log_warning("kernel %d: iopub connection lost (a message over %" PRIi64 " MiB?), reconnecting",
                    (int) k->pid, MSG_SIZE_MAX >> 20);
        kernel_close_socket(k, SOCK_IOPUB);
        r = kernel_open_socket(k, SOCK_IOPUB);
        if (r < 0)
                log_warning_errno(r, "kernel %d: cannot reopen iopub: %m", (int) k->pid);
        kernel_schedule_recheck(k);
}

static int on_socket(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Kernel *k = userdata;
        KERNEL_HOLD(k);

        for (int i = 0; i < _SOCK_MAX; i++)
                if (k->sock_source[i] == s) {
                        kernel_drain(k, i);
                        break;
                }
        kernel_maybe_reopen_iopub(k);
        return 0;
}

static int on_recheck(sd_event_source *s, void *userdata) {
        Kernel *k = userdata;
        KERNEL_HOLD(k);

        for (int i = 0; i < _SOCK_MAX && !k->freed; i++)
                kernel_drain(k, i);
        kernel_maybe_reopen_iopub(k);
        return 0;
}

/* ---- sockets ---- */

static int kernel_open_socket(Kernel *k, int i) {
        static const int types[_SOCK_MAX] = { ZMQ_DEALER, ZMQ_DEALER, ZMQ_SUB, ZMQ_REQ, ZMQ_PAIR };
        static unsigned n_monitors;
        char endpoint[sizeof(((struct sockaddr_un *) NULL)->sun_path) + 64];
        int linger = 0, reconnect = 50, fd, r;
        int64_t max = MSG_SIZE_MAX;
        size_t len = sizeof fd;
        void *s;

        s = zmq_socket(zmq_context, types[i]);
        if (!s)
                return -errno;
        if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
            /* Kernels bind late; retry sooner than the default 100 ms. */
            zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &reconnect, sizeof reconnect) < 0)
                goto fail;
        if (i == SOCK_IOPUB && zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max) < 0)
                goto fail;
        if (types[i] == ZMQ_DEALER) {
                char id[UUID_MAX];
                r = new_uuid(id);
                if (r < 0) {
                        zmq_close(s);
                        return r;
                }
                if (zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)) < 0)
                        goto fail;
        }
        if (types[i] == ZMQ_SUB && zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) < 0)
                goto fail;
        if (i == SOCK_MONITOR)
                (void) snprintf(endpoint, sizeof endpoint, "inproc://execd-iopub-monitor-%u", n_monitors);
        else
                (void) snprintf(endpoint, sizeof endpoint, "ipc://%s-%d", k->ip, sock_port[i]);
        if (zmq_connect(s, endpoint) < 0 || zmq_getsockopt(s, ZMQ_FD, &fd, &len) < 0)
                goto fail;
        r = sd_event_add_io(k->event, &k->sock_source[i], fd, EPOLLIN, on_socket, k);
        if (r < 0) {
                zmq_close(s);
                return r;
        }
        (void) sd_event_source_set_description(k->sock_source[i], sock_name[i]);
        k->sock[i] = s;

        if (i == SOCK_IOPUB) {
                /* The monitor's endpoint is bound by zmq_socket_monitor(), before we connect. */
                (void) snprintf(endpoint, sizeof endpoint, "inproc://execd-iopub-monitor-%u", ++n_monitors);
                if (zmq_socket_monitor(s, endpoint, ZMQ_EVENT_DISCONNECTED) < 0) {
                        r = -errno;
                        kernel_close_socket(k, i);
                        return r;
                }
                r = kernel_open_socket(k, SOCK_MONITOR);
                if (r < 0) {
                        kernel_close_socket(k, i);
                        return r;
                }
        }
        return 0;
fail:
        r = -errno;
        zmq_close(s);
        return r;
}

static int on_hb_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Kernel *k = userdata;
        KERNEL_HOLD(k);

        if (k->state != KERNEL_READY)
                return 0;
        if (k->hb_waiting) {
                int r;

                if (++k->hb_missed >= HB_MAX_MISSED) {
                        kernel_end(k, -ETIMEDOUT, "heartbeat");
                        return 0;
                }
                log_debug("kernel %d: heartbeat %u missed", (int) k->pid, k->hb_missed);
                /* A REQ socket waits for its reply for ever: start over with a new one. */
                kernel_close_socket(k, SOCK_HB);
                r = kernel_open_socket(k, SOCK_HB);
                if (r < 0) {
                        log_warning_errno(r, "kernel %d: cannot reopen heartbeat socket: %m", (int) k->pid);
                        kernel_end(k, r, "heartbeat");
                        return 0;
                }
        }
        if (zmq_send(k->sock[SOCK_HB], "ping", 4, ZMQ_DONTWAIT) >= 0)
                k->hb_waiting = true;
        kernel_schedule_recheck(k);
        (void) sd_event_source_set_time_relative(s, HB_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static int on_start_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Kernel *k = userdata;
        KERNEL_HOLD(k);

        if (k->state != KERNEL_STARTING)
                return 0;
        if (now_usec() - k->start_usec >= START_TIMEOUT_USEC) {
                kernel_end_start(k, -ETIMEDOUT,
                                 !k->got_info_reply ? "kernel did not answer within 30 s" :
                                 "kernel answered, but its iopub channel stayed silent for 30 s");
                return 0;
        }
        /* Requests queue until the kernel binds; repeating them covers one lost on the way, and
         * their iopub status messages show when the subscription is through. */
        (void) kernel_send(k, SOCK_SHELL, "kernel_info_request", "{}", NULL);
        (void) sd_event_source_set_time_relative(s, k->got_info_reply ? IOPUB_NUDGE_USEC
                                                                      : KERNEL_INFO_RESEND_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* ---- the runtime directory ---- */

static int rm_rf_at(int dfd, const char *name, unsigned depth) {
        int fd;
        DIR *d;

        if (depth > 64)
                return -ELOOP;
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno != ENOTDIR && errno != ELOOP)
                        return -errno;
                return unlinkat(dfd, name, 0) < 0 ? -errno : 0;
        }
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }
        for (struct dirent *de; (de = readdir(d));) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (de->d_type == DT_DIR || (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno == EISDIR))
                        (void) rm_rf_at(dirfd(d), de->d_name, depth + 1);
        }
        closedir(d);
        return unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int write_connection_file(Kernel *k, const char *name, const char *path, const KernelOptions *opts) {
        _cleanup_(g_object_unrefp) JsonBuilder *b = json_builder_new_immutable();
        _cleanup_(g_object_unrefp) JsonGenerator *g = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;
        _cleanup_(closep) int fd = -1;
        size_t len, done = 0;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "shell_port");
        json_builder_add_int_value(b, sock_port[SOCK_SHELL]);
        json_builder_set_member_name(b, "iopub_port");
        json_builder_add_int_value(b, sock_port[SOCK_IOPUB]);
        json_builder_set_member_name(b, "stdin_port");
        json_builder_add_int_value(b, STDIN_PORT);
        json_builder_set_member_name(b, "control_port");
        json_builder_add_int_value(b, sock_port[SOCK_CONTROL]);
        json_builder_set_member_name(b, "hb_port");
        json_builder_add_int_value(b, sock_port[SOCK_HB]);
        json_builder_set_member_name(b, "ip");
        json_builder_add_string_value(b, k->ip);
        json_builder_set_member_name(b, "key");
        json_builder_add_string_value(b, k->key);
        json_builder_set_member_name(b, "transport");
        json_builder_add_string_value(b, "ipc");
        json_builder_set_member_name(b, "signature_scheme");
        json_builder_add_string_value(b, "hmac-sha256");
        json_builder_set_member_name(b, "kernel_name");
        json_builder_add_string_value(b, name);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(g, root);
        text = json_generator_to_data(g, &len);

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (opts->set_user && fchown(fd, opts->uid, opts->gid) < 0)
                return -errno;
        while (done < len) {
                ssize_t r = write(fd, text + done, len - done);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                done += (size_t) r;
        }
        return 0;
}

/* Every occurrence of {connection_file} and {resource_dir} replaced. */
static char *format_arg(const char *arg, const char *connection_file, const char *resource_dir) {
        static const char *const names[] = { "{connection_file}", "{resource_dir}" };
        const char *values[] = { connection_file, resource_dir ? resource_dir : "" };
        GString *s = g_string_new(NULL);

        while (*arg) {
                size_t i;
                for (i = 0; i < ELEMENTSOF(names); i++)
                        if (strncmp(arg, names[i], strlen(names[i])) == 0)
                                break;
                if (i < ELEMENTSOF(names)) {
                        g_string_append(s, values[i]);
                        arg += strlen(names[i]);
                } else
                        g_string_append_c(s, *arg++);
        }
        /* GLib allocates with malloc(): the caller may free() it. */
        return g_string_free(s, false);
}

/* argv[0] as execve() wants it: a path, searched in the kernel's $PATH when it has no slash. */
static int find_executable(const char *name, char *const *envp, char **ret) {
        const char *path = env_get(envp, "PATH");

        if (strchr(name, '/')) {
                *ret = strdup(name);
                return *ret ? 0 : -ENOMEM;
        }
        if (!path)
                path = "/usr/local/bin:/usr/bin:/bin";
        while (*path) {
                size_t len = strcspn(path, ":");
                char *p;

                if (len > 0) {
                        if (asprintf(&p, "%.*s/%s", (int) len, path, name) < 0)
                                return -ENOMEM;
                        if (access(p, X_OK) == 0) {
                                *ret = p;
                                return 0;
                        }
                        free(p);
                }
                path += len;
                if (*path == ':')
                        path++;
        }
        return -ENOENT;
}

static int build_env(Kernel *k, const KernelSpec *spec, const KernelOptions *opts, char ***ret) {
        static const struct {
                const char *name, *sub;
        } dirs[] = {
                { "IPYTHONDIR", "ipython" },
                { "JUPYTER_RUNTIME_DIR", "runtime" },
                { "JUPYTER_DATA_DIR", "data" },
                { "JUPYTER_CONFIG_DIR", "config" },
                { "MPLCONFIGDIR", "matplotlib" },
        };
        _cleanup_(strv_freep) char **env = env_copy(opts->envp ? opts->envp : environ);
        char pid[32];
        int r;

        if (!env)
                return -ENOMEM;
        for (char **e = spec->env; e && *e; e++) {
                _cleanup_(freep) char *name = strndup(*e, strcspn(*e, "="));
                const char *eq = strchr(*e, '=');
                if (!name)
                        return -ENOMEM;
                r = env_set(&env, name, eq ? eq + 1 : "");
                if (r < 0)
                        return r;
        }
        /* Everything the kernel would write under $HOME goes into its private directory. */
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_(freep) char *p = NULL;
                if (asprintf(&p, "%s/%s", k->dir, dirs[i].sub) < 0)
                        return -ENOMEM;
                if (mkdir(p, 0700) < 0 && errno != EEXIST)
                        return -errno;
                if (opts->set_user && chown(p, opts->uid, opts->gid) < 0)
                        return -errno;
                r = env_set(&env, dirs[i].name, p);
                if (r < 0)
                        return r;
        }
        r = env_set(&env, "PYDEVD_DISABLE_FILE_VALIDATION", "1");
        if (r < 0)
                return r;
        /* ipykernel then exits by itself if it is orphaned to init. */
        (void) snprintf(pid, sizeof pid, "%d", (int) getpid());
        r = env_set(&env, "JPY_PARENT_PID", pid);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(env);
        return 0;
}

/* ---- spawning ---- */

typedef struct ChildArgs {
        const char *path;
        char **argv, **envp;
        const char *cwd;
        const struct rlimit *nofile;
        bool set_user;
        uid_t uid;
        gid_t gid;
        int null_fd, log_fd, report_fd;
} ChildArgs;

/* In the vfork()ed child, which shares our memory until it execs: only plain system calls, and
 * the setxid ones raw (glibc's wrappers synchronise with threads that are not there). */
_Noreturn static void child_exec(const ChildArgs *a) {
        sigset_t mask;
        int e;

        sigemptyset(&mask);
        (void) sigprocmask(SIG_SETMASK, &mask, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);
        if (setsid() < 0)
                goto fail;
        if (dup2(a->null_fd, STDIN_FILENO) < 0 || dup2(a->log_fd, STDOUT_FILENO) < 0 ||
            dup2(a->log_fd, STDERR_FILENO) < 0 || dup2(a->report_fd, 3) < 0)
                goto fail;
        if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0 || close_range(4, ~0U, 0) < 0)
                goto fail;
        if (a->nofile)
                (void) setrlimit(RLIMIT_NOFILE, a->nofile);
        if (a->set_user) {
                if (syscall(SYS_setgroups, (size_t) 1, &a->gid) < 0 ||
                    syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0 ||
                    syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0)
                        goto fail;
        }
        /* After the credential change, which clears it. A kernel nobody can reach is useless. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (a->cwd && chdir(a->cwd) < 0)
                goto fail;
        execve(a->path, a->argv, a->envp);
fail:
        e = errno;
        (void) !write(3, &e, sizeof e);
        _exit(127);
}

static __attribute__((noinline)) pid_t vfork_exec(const ChildArgs *a) {
        pid_t pid = vfork();

        if (pid == 0)
                child_exec(a);
        return pid;
}

/* Its group is marked in mark_dir (groups.h). */
static int kernel_spawn(Kernel *k, ChildArgs *a, const char *mark_dir) {
        _cleanup_(closep) int null_fd = -1, report_r = -1, report_w = -1, log_r = -1, log_w = -1;
        int pipefd[2], r;
        pid_t pid;

        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                return -errno;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        report_r = pipefd[0], report_w = pipefd[1];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        log_r = pipefd[0], log_w = pipefd[1];
        a->null_fd = null_fd, a->log_fd = log_w, a->report_fd = report_w;

        pid = vfork_exec(a);
        if (pid < 0)
                return -errno;
        report_w = safe_close(report_w);
        log_w = safe_close(log_w);
        r = group_spawned(pid, report_r, mark_dir, &k->pidfd, &k->group_marker);
        if (r < 0)
                return r;
        k->pid = pid;
        if (fcntl(log_r, F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        k->log_fd = TAKE_FD(log_r);
        return 0;
}

/* ---- the API ---- */

static void kernel_unlink(Kernel *k) {
        if (k->prev)
                k->prev->next = k->next;
        else if (kernels == k)
                kernels = k->next;
        if (k->next)
                k->next->prev = k->prev;
        k->prev = k->next = NULL;
}

/* A kernel keeps nothing worth a graceful shutdown, and ipykernel takes over a second to honour
 * shutdown_request: waiting for it would stall the daemon's loop. The whole group is killed and
 * the leader reaped at once. */
static void kernel_stop_process(Kernel *k) {
        siginfo_t si;

        if (k->reaped || k->pid <= 0)
                return;
        (void) kill(-k->pid, SIGKILL);
        for (;;) {
                si = (siginfo_t) {};
                if (waitid((idtype_t) P_PIDFD, (id_t) k->pidfd, &si, WEXITED) >= 0 || errno != EINTR)
                        break;
        }
        k->reaped = true;
}

Kernel *kernel_free(Kernel *k) {
        if (!k || k->freed)
                return NULL;
        k->freed = true;
        kernel_unlink(k);

        k->start_timer = sd_event_source_disable_unref(k->start_timer);
        k->hb_timer = sd_event_source_disable_unref(k->hb_timer);
        k->idle_timer = sd_event_source_disable_unref(k->idle_timer);
        k->recheck_source = sd_event_source_disable_unref(k->recheck_source);
        k->pidfd_source = sd_event_source_disable_unref(k->pidfd_source);
        k->log_source = sd_event_source_disable_unref(k->log_source);
        for (int i = 0; i < _SOCK_MAX; i++)
                k->sock_source[i] = sd_event_source_disable_unref(k->sock_source[i]);

        kernel_stop_process(k);
        kernel_close_channels(k);
        k->pidfd = safe_close(k->pidfd);
        k->log_fd = safe_close(k->log_fd);
        if (k->dir) {
                int r = rm_rf_at(AT_FDCWD, k->dir, 0);
                if (r < 0 && r != -ENOENT)
                        log_warning_errno(r, "cannot remove kernel directory %s: %m", k->dir);
        }
        k->event = sd_event_unref(k->event);
        kernel_unref(k);
        return NULL;
}

int kernel_start(sd_event *event, const KernelSpec *spec, const KernelOptions *opts,
                 const KernelCallbacks *callbacks, void *userdata, Kernel **ret) {
        _cleanup_(kernel_freep) Kernel *k = NULL;
        _cleanup_(strv_freep) char **argv = NULL, **envp = NULL;
        _cleanup_(freep) char *template = NULL, *conn = NULL, *path = NULL;
        uint8_t raw[KEY_BYTES];
        size_t argc = 0;
        ChildArgs a;
        int r;

        if (!event || !spec || !spec->argv || !spec->argv[0] || !opts || !opts->runtime_dir || !ret)
                return -EINVAL;
        if (!zmq_context) {
                zmq_context = zmq_ctx_new();
                if (!zmq_context)
                        return -errno;
        }

        k = calloc(1, sizeof *k);
        if (!k)
                return -ENOMEM;
        k->n_ref = 1;
        k->pidfd = k->log_fd = -1;
        k->event = sd_event_ref(event);
        k->cb = callbacks ? *callbacks : (KernelCallbacks) {};
        k->userdata = userdata;
        k->interrupt_message = spec->interrupt_message;
        k->next = kernels;
        if (kernels)
                kernels->prev = k;
        kernels = k;

        if (asprintf(&template, "%s/kXXXXXX", opts->runtime_dir) < 0)
                return -ENOMEM;
        if (!mkdtemp(template))
                return -errno;
        k->dir = TAKE_PTR(template);
        if (opts->set_user && chown(k->dir, opts->uid, opts->gid) < 0)
                return -errno;
        if (asprintf(&k->ip, "%s/k", k->dir) < 0) {
                k->ip = NULL;
                return -ENOMEM;
        }
        if (strlen(k->ip) + strlen("-5") >= sizeof(((struct sockaddr_un *) NULL)->sun_path))
                return -ENAMETOOLONG;

        if (getrandom(raw, sizeof raw, 0) != sizeof raw)
                return -EIO;
        for (size_t i = 0; i < sizeof raw; i++)
                (void) snprintf(k->key + 2 * i, 3, "%02x", raw[i]);
        r = new_uuid(k->session);
        if (r < 0)
                return r;

        if (asprintf(&conn, "%s/connection.json", k->dir) < 0)
                return -ENOMEM;
        r = write_connection_file(k, spec->name ? spec->name : "", conn, opts);
        if (r < 0)
                return r;

        while (spec->argv[argc])
                argc++;
        argv = calloc(argc + 1, sizeof *argv);
        if (!argv)
                return -ENOMEM;
        for (size_t i = 0; i < argc; i++)
                argv[i] = format_arg(spec->argv[i], conn, spec->resource_dir);
        r = build_env(k, spec, opts, &envp);
        if (r < 0)
                return r;
        r = find_executable(argv[0], envp, &path);
        if (r < 0)
                return r;

        /* The sockets first: the very first kernel_info_request queues while the kernel starts. */
        r = sd_event_add_defer(event, &k->recheck_source, on_recheck, k);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(k->recheck_source, SD_EVENT_OFF);
        for (int i = 0; i < SOCK_MONITOR; i++) {
                r = kernel_open_socket(k, i);
                if (r < 0)
                        return r;
        }

        a = (ChildArgs) {
                .path = path, .argv = argv, .envp = envp, .cwd = opts->cwd, .nofile = opts->nofile,
                .set_user = opts->set_user, .uid = opts->uid, .gid = opts->gid,
        };
        k->start_usec = now_usec();
        r = kernel_spawn(k, &a, opts->runtime_dir);
        if (r < 0)
                return r;

        r = sd_event_add_io(event, &k->pidfd_source, k->pidfd, EPOLLIN, on_pidfd, k);
        if (r < 0)
                return r;
        r = sd_event_add_io(event, &k->log_source, k->log_fd, EPOLLIN, on_log, k);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(event, &k->start_timer, CLOCK_MONOTONIC, KERNEL_INFO_RESEND_USEC, 0,
                                       on_start_timer, k);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(event, &k->hb_timer, CLOCK_MONOTONIC, HB_INTERVAL_USEC, 0,
                                       on_hb_timer, k);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(k->hb_timer, SD_EVENT_OFF);
        r = kernel_send(k, SOCK_SHELL, "kernel_info_request", "{}", NULL);
        if (r < 0)
                return r;

        log_debug("kernel %s started as pid %d in %s", spec->name ? spec->name : "?", (int) k->pid, k->dir);
        *ret = TAKE_PTR(k);
        return 0;
}

int kernel_execute(Kernel *k, const char *code, const KernelRunCallbacks *cb, void *ud) {
        _cleanup_(g_object_unrefp) JsonBuilder *b = NULL;
        _cleanup_(g_object_unrefp) JsonGenerator *g = NULL;
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *content = NULL;
        int r;

        if (!k || !code)
                return -EINVAL;
        if (k->state != KERNEL_READY)
                return -ENOTCONN;
        if (k->running)
                return -EBUSY;
        if (!g_utf8_validate(code, -1, NULL))
                return -EINVAL;

        b = json_builder_new_immutable();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "code");
        json_builder_add_string_value(b, code);
        json_builder_set_member_name(b, "silent");
        json_builder_add_boolean_value(b, false);
        json_builder_set_member_name(b, "store_history");
        json_builder_add_boolean_value(b, true);
        json_builder_set_member_name(b, "user_expressions");
        json_builder_begin_object(b);
        json_builder_end_object(b);
        json_builder_set_member_name(b, "allow_stdin");
        json_builder_add_boolean_value(b, false);
        /* Runs never queue here, so all that stop_on_error could abort is the caller's next run:
         * ipykernel keeps aborting until a callback it schedules after the reply has run, and a
         * request sent as soon as the reply and idle arrive can beat it (seen under load). */
        json_builder_set_member_name(b, "stop_on_error");
        json_builder_add_boolean_value(b, false);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        g = json_generator_new();
        json_generator_set_root(g, root);
        content = json_generator_to_data(g, NULL);

        r = kernel_send(k, SOCK_SHELL, "execute_request", content, k->run_msg_id);
        if (r < 0)
                return r;
        k->running = true;
        k->run_cb = cb ? *cb : (KernelRunCallbacks) {};
        k->run_ud = ud;
        k->run_start_usec = now_usec();
        k->got_reply = k->got_idle = false;
        return 0;
}

int kernel_interrupt(Kernel *k) {
        if (!k)
                return -EINVAL;
        if (k->state != KERNEL_READY || k->reaped)
                return -ENOTCONN;
        if (k->interrupt_message)
                return kernel_send(k, SOCK_CONTROL, "interrupt_request", "{}", NULL);
        /* The whole group, as jupyter_client does: what the code started is interrupted too. */
        if (kill(-k->pid, SIGINT) < 0 && kill(k->pid, SIGINT) < 0)
                return -errno;
        return 0;
}

pid_t kernel_pid(Kernel *k) {
        return k ? k->pid : 0;
}

bool kernel_is_running(Kernel *k) {
        return k && k->running;
}

bool kernel_is_ready(Kernel *k) {
        return k && k->state == KERNEL_READY;
}

const char *kernel_runtime_dir(Kernel *k) {
        return k ? k->dir : NULL;
}
