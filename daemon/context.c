/* SPDX-License-Identifier: Apache-2.0 */
/* Code contexts: a Jupyter kernel per context, started straight from its kernelspec. Each run's
 * events are built here in the API's own JSON shape, kept in a bounded ring for replay, and sent
 * as Event signals to the caller that started the run. */
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>
#include <time.h>

#include "context.h"
#include "errors.h"
#include "execd.h"
#include "files.h"
#include "log.h"
#include "macro.h"

static const char *const event_names[_CONTEXT_EVENT_MAX] = {
        [CONTEXT_EVENT_STDOUT] = "stdout",
        [CONTEXT_EVENT_STDERR] = "stderr",
        [CONTEXT_EVENT_EXECUTION_COUNT] = "execution_count",
        [CONTEXT_EVENT_RESULT] = "result",
        [CONTEXT_EVENT_ERROR] = "error",
        [CONTEXT_EVENT_COMPLETE] = "execution_complete",
};

static void context_start_run(Context *c, const char *code);

Context *manager_find_context(Manager *m, const char *id) {
        for (Context *c = m->contexts; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

Context *manager_find_default_context(Manager *m, uid_t owner_uid, const char *language) {
        for (Context *c = m->contexts; c; c = c->next)
                if (c->is_default && c->owner_uid == owner_uid && strcmp(c->language, language) == 0)
                        return c;
        return NULL;
}

static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- events ---- */

static void context_emit(Context *c, ContextEvent type, JsonBuilder *b) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *text = NULL;
        gsize len;
        uint64_t seq;
        int k;

        json_builder_set_member_name(b, "timestamp");
        json_builder_add_int_value(b, now_ms());
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, &len);
        if (ring_append(&c->ring, (uint8_t) type, text, len, &seq) < 0) {
                log_error("context %s: out of memory for an event", c->id);
                return;
        }
        if (!c->run_owner)
                return;
        k = sd_bus_message_new_signal(c->manager->bus, &s, c->path, EXECD_CONTEXT_INTERFACE, "Event");
        if (k >= 0)
                k = sd_bus_message_set_destination(s, c->run_owner);
        if (k >= 0)
                k = sd_bus_message_append(s, "tss", seq, event_names[type], text);
        if (k >= 0)
                k = sd_bus_send(c->manager->bus, s, NULL);
        if (k < 0)
                log_debug_errno(k, "context %s: failed to send an event: %m", c->id);
}

/* An event object in the API's key order: type first, timestamp added by context_emit(). */
static JsonBuilder *event_begin(ContextEvent type) {
        JsonBuilder *b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, event_names[type]);
        return b;
}

static void emit_text(Context *c, ContextEvent type, const char *text) {
        g_autoptr(JsonBuilder) b = event_begin(type);

        json_builder_set_member_name(b, "text");
        json_builder_add_string_value(b, text);
        context_emit(c, type, b);
}

static void emit_error(Context *c, const char *ename, const char *evalue, char **traceback) {
        g_autoptr(JsonBuilder) b = event_begin(CONTEXT_EVENT_ERROR);

        /* The error object sits after the timestamp in the reference; order inside is fixed. */
        json_builder_set_member_name(b, "error");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "ename");
        json_builder_add_string_value(b, ename);
        json_builder_set_member_name(b, "evalue");
        json_builder_add_string_value(b, evalue);
        json_builder_set_member_name(b, "traceback");
        json_builder_begin_array(b);
        for (size_t i = 0; traceback && traceback[i]; i++)
                json_builder_add_string_value(b, traceback[i]);
        json_builder_end_array(b);
        json_builder_end_object(b);
        context_emit(c, CONTEXT_EVENT_ERROR, b);
}

static const char *context_state(Context *c) {
        return c->dead                                       ? "dead"
               : !c->kernel || !kernel_is_ready(c->kernel) ? "starting"
               : c->running                                 ? "busy"
                                                            : "idle";
}

/* Unicast like Event (to the caller of the current run, if any): a broadcast would show every
 * bus client another uid's context, its state and its execution count. */
static void context_send_changed(Context *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int k;

        if (!c->run_owner)
                return;
        k = sd_bus_message_new_signal(c->manager->bus, &s, c->path, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged");
        if (k >= 0)
                k = sd_bus_message_set_destination(s, c->run_owner);
        if (k >= 0)
                k = sd_bus_message_append(s, "sa{sv}as", EXECD_CONTEXT_INTERFACE, 2, "State", "s", context_state(c),
                                          "ExecutionCount", "x", (int64_t) c->execution_count, 0);
        if (k >= 0)
                k = sd_bus_send(c->manager->bus, s, NULL);
        if (k < 0)
                log_debug_errno(k, "context %s: failed to send PropertiesChanged: %m", c->id);
}

static void run_end(Context *c, uint64_t elapsed_ms) {
        g_autoptr(JsonBuilder) b = event_begin(CONTEXT_EVENT_COMPLETE);

        if (elapsed_ms > 0) {
                json_builder_set_member_name(b, "execution_time");
                json_builder_add_int_value(b, (gint64) elapsed_ms);
        }
        context_emit(c, CONTEXT_EVENT_COMPLETE, b);
        c->running = false;
        context_send_changed(c);
        c->run_owner = mfree(c->run_owner);
        c->run_code = mfree(c->run_code);
}

static void on_stream(void *ud, const char *name, const char *text) {
        Context *c = ud;

        if (*text)
                emit_text(c, strcmp(name, "stderr") == 0 ? CONTEXT_EVENT_STDERR : CONTEXT_EVENT_STDOUT, text);
}

static void on_result(void *ud, int64_t execution_count, JsonObject *data) {
        Context *c = ud;
        JsonObjectIter iter;
        const char *mime;
        JsonNode *value;

        if (execution_count > 0) {
                g_autoptr(JsonBuilder) b = event_begin(CONTEXT_EVENT_EXECUTION_COUNT);
                json_builder_set_member_name(b, "execution_count");
                json_builder_add_int_value(b, execution_count);
                context_emit(c, CONTEXT_EVENT_EXECUTION_COUNT, b);
                c->execution_count = execution_count;
        }
        if (json_object_get_size(data) == 0)
                return;
        {
                g_autoptr(JsonBuilder) b = event_begin(CONTEXT_EVENT_RESULT);
                json_builder_set_member_name(b, "results");
                json_builder_begin_object(b);
                json_object_iter_init(&iter, data);
                /* The SDKs read "text"; every other MIME type passes through as it is. */
                while (json_object_iter_next(&iter, &mime, &value)) {
                        json_builder_set_member_name(b, strcmp(mime, "text/plain") == 0 ? "text" : mime);
                        json_builder_add_value(b, json_node_copy(value));
                }
                json_builder_end_object(b);
                context_emit(c, CONTEXT_EVENT_RESULT, b);
        }
}

static void on_error(void *ud, const char *ename, const char *evalue, char **traceback) {
        emit_error(ud, ename, evalue, traceback);
}

static void on_execute_input(void *ud, int64_t execution_count) {
        Context *c = ud;

        c->execution_count = execution_count;
}

static void on_complete(void *ud, const char *reply_status, uint64_t elapsed_ms) {
        run_end(ud, elapsed_ms);
}

static const KernelRunCallbacks run_callbacks = {
        .stream = on_stream,
        .result = on_result,
        .error = on_error,
        .execute_input = on_execute_input,
        .complete = on_complete,
};

/* ---- the kernel ---- */

static void reply_waiting(Context *c, const char *error_message) {
        for (size_t i = 0; i < c->n_waiting; i++) {
                if (error_message)
                        (void) sd_bus_reply_method_errorf(c->waiting[i], EXECD_ERROR_START_FAILED,
                                                          "error creating code context. %s", error_message);
                else
                        (void) sd_bus_reply_method_return(c->waiting[i], "o", c->path);
                sd_bus_message_unref(c->waiting[i]);
        }
        c->waiting = mfree(c->waiting);
        c->n_waiting = 0;
}

static void on_kernel_ready(Kernel *k, int error, const char *message, void *userdata) {
        Context *c = userdata;

        if (error < 0) {
                log_warning("context %s: the %s kernel failed to start: %s", c->id, c->language, message);
                c->dead = true;
                free(c->dead_reason);
                c->dead_reason = strdup(message ? message : "the kernel failed to start");
                reply_waiting(c, message ? message : "the kernel failed to start");
                if (c->running) {
                        char *tb[] = { (char *) (message ? message : ""), NULL };
                        emit_error(c, "KernelStartError", "the kernel failed to start", tb);
                        run_end(c, 0);
                }
                context_send_changed(c);
                return;
        }
        log_debug("context %s: %s kernel ready as pid %d", c->id, c->language, (int) kernel_pid(k));
        reply_waiting(c, NULL);
        if (c->running && c->run_code) {
                _cleanup_(freep) char *code = TAKE_PTR(c->run_code);
                context_start_run(c, code);
        }
        context_send_changed(c);
}

static void on_kernel_died(Kernel *k, const char *why, void *userdata) {
        Context *c = userdata;

        log_warning("context %s: the %s kernel died: %s", c->id, c->language, why);
        c->dead = true;
        free(c->dead_reason);
        c->dead_reason = strdup(why ? why : "unknown reason");
        context_send_changed(c);
}

static const KernelCallbacks kernel_callbacks = {
        .ready = on_kernel_ready,
        .died = on_kernel_died,
};

static int context_start_kernel(Context *c, sd_bus_error *error) {
        Manager *m = c->manager;
        KernelOptions o = {
                .cwd = c->cwd,
                .runtime_dir = m->runtime_dir,
        };
        int k;

        /* Kernels of other users run as those users, like their commands. */
        if (c->owner_uid != 0 && c->owner_uid != m->euid) {
                struct passwd pw, *pwp = NULL;
                char buf[16384];

                (void) getpwuid_r(c->owner_uid, &pw, buf, sizeof buf, &pwp);
                o.set_user = true;
                o.uid = c->owner_uid;
                o.gid = pwp ? pwp->pw_gid : (gid_t) c->owner_uid;
        }
        c->kernel = kernel_free(c->kernel);
        c->dead = false;
        k = kernel_start(m->event, c->spec, &o, &kernel_callbacks, c, &c->kernel);
        if (k < 0) {
                c->dead = true;
                return sd_bus_error_set_errnof(error, k, "error creating code context. cannot start the %s kernel: %m",
                                               c->language);
        }
        return 0;
}

/* Each kernel is a process of its own with tens of MiB: this bounds what callers can start.
 * Dead kernels count too, since the next run restarts them. */
int context_check_limits(Manager *m, uid_t owner_uid, sd_bus_error *error) {
        unsigned n_uid = 0;

        if (m->n_contexts < m->config.max_contexts)
                for (Context *c = m->contexts; c; c = c->next)
                        if (c->owner_uid == owner_uid)
                                n_uid++;
        return manager_check_limit("code contexts", m->n_contexts, m->config.max_contexts, "max-contexts",
                                   owner_uid, n_uid, m->config.max_contexts_per_uid, "max-contexts-per-uid", error);
}

int context_new(Manager *m, uid_t owner_uid, const char *language, const char *cwd, bool is_default,
                Context **ret, sd_bus_error *error) {
        _cleanup_(kernelspec_freep) KernelSpec *spec = NULL;
        Context *c;
        sd_id128_t id;
        int k;

        k = context_check_limits(m, owner_uid, error);
        if (k < 0)
                return k;
        k = kernelspec_find(language, &spec);
        if (k == -ENOENT) {
                _cleanup_(strv_freep) char **languages = NULL;
                _cleanup_(freep) char *list = NULL;
                size_t len = 0;

                if (kernelspec_languages(&languages) >= 0)
                        for (size_t i = 0; languages[i]; i++)
                                len += strlen(languages[i]) + 2;
                list = calloc(1, len + 1);
                for (size_t i = 0; list && languages && languages[i]; i++) {
                        if (i)
                                strcat(list, ", ");
                        strcat(list, languages[i]);
                }
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "no Jupyter kernel is installed for language '%s' (available: %s)", language,
                                         list && *list ? list : "none");
        }
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot read the Jupyter kernel specs: %m");

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->owner_uid = owner_uid;
        c->is_default = is_default;
        c->spec = TAKE_PTR(spec);
        ring_init(&c->ring, m->config.ring_size);
        k = sd_id128_randomize(&id);
        if (k < 0) {
                context_free(c);
                return k;
        }
        sd_id128_to_string(id, c->id);
        c->language = strdup(language);
        c->cwd = cwd ? strdup(cwd) : NULL;
        if (asprintf(&c->path, EXECD_CONTEXT_PREFIX "/%s", c->id) < 0)
                c->path = NULL;
        if (!c->language || (cwd && !c->cwd) || !c->path) {
                context_free(c);
                return -ENOMEM;
        }
        for (char *p = c->language; *p; p++)
                *p = (char) (*p >= 'A' && *p <= 'Z' ? *p + 'a' - 'A' : *p);
        k = context_start_kernel(c, error);
        if (k < 0) {
                context_free(c);
                return k;
        }
        c->next = m->contexts;
        if (m->contexts)
                m->contexts->prev = c;
        m->contexts = c;
        m->n_contexts++;
        *ret = c;
        return 0;
}

int context_reply_when_ready(Context *c, sd_bus_message *msg) {
        sd_bus_message **grown;

        if (c->kernel && kernel_is_ready(c->kernel))
                return sd_bus_reply_method_return(msg, "o", c->path);
        if (c->dead && !c->kernel)
                return sd_bus_reply_method_errorf(msg, EXECD_ERROR_START_FAILED, "error creating code context. %s",
                                                  c->dead_reason ? c->dead_reason : "the kernel is not running");
        /* Each waiting call holds its message until the kernel answers: bounded. */
        if (c->n_waiting >= c->manager->config.max_context_waiters)
                return sd_bus_reply_method_errorf(msg, EXECD_ERROR_LIMITS_EXCEEDED,
                                                  "Too many callers waiting for context %s to start: %zu of %u "
                                                  "(limit --max-context-waiters=%u)",
                                                  c->id, c->n_waiting, c->manager->config.max_context_waiters,
                                                  c->manager->config.max_context_waiters);
        grown = realloc(c->waiting, (c->n_waiting + 1) * sizeof *grown);
        if (!grown)
                return -ENOMEM;
        c->waiting = grown;
        c->waiting[c->n_waiting++] = sd_bus_message_ref(msg);
        return 1;
}

Context *context_free(Context *c) {
        Manager *m;

        if (!c)
                return NULL;
        m = c->manager;
        if (c->path && (c->prev || c->next || m->contexts == c)) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        m->contexts = c->next;
                if (c->next)
                        c->next->prev = c->prev;
                m->n_contexts--;
        }
        if (c->running) {
                char *tb[] = { (char *) "the context was deleted", NULL };
                emit_error(c, "ContextDeleted", "the context was deleted while the cell ran", tb);
                run_end(c, 0);
        }
        reply_waiting(c, "the context was deleted");
        kernel_free(c->kernel);
        kernelspec_free(c->spec);
        ring_clear(&c->ring);
        free(c->dead_reason);
        free(c->run_code);
        free(c->run_owner);
        free(c->language);
        free(c->cwd);
        free(c->path);
        free(c);
        return NULL;
}

/* ---- runs ---- */

static void context_start_run(Context *c, const char *code) {
        int k;

        if (c->restarted) {
                _cleanup_(freep) char *text = NULL;
                c->restarted = false;
                if (asprintf(&text, "execd: the %s kernel had died (%s) and was restarted; variables, imports and "
                                    "definitions from earlier runs are lost\n",
                             c->language, c->dead_reason ? c->dead_reason : "unknown reason") >= 0)
                        emit_text(c, CONTEXT_EVENT_STDERR, text);
        }
        k = kernel_execute(c->kernel, code, &run_callbacks, c);
        if (k < 0) {
                char *tb[] = { NULL };
                emit_error(c, "RuntimeError", strerror(-k), tb);
                run_end(c, 0);
        }
        context_send_changed(c);
}

static int method_execute(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        const char *code;
        int k;

        k = sd_bus_message_read(msg, "s", &code);
        if (k < 0)
                return k;
        if (!*code)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "The code must not be empty");
        if (c->running)
                return sd_bus_error_setf(error, EXECD_ERROR_BUSY, "context %s is busy running another cell", c->id);

        c->run_owner = strdup(sd_bus_message_get_sender(msg));
        if (!c->run_owner)
                return -ENOMEM;
        c->running = true;
        c->run_first_seq = c->ring.next_seq;
        if (c->dead) {
                /* A dead kernel comes back for the next run, with its state gone (said in the run). */
                k = context_start_kernel(c, error);
                if (k < 0) {
                        c->running = false;
                        c->run_owner = mfree(c->run_owner);
                        return k;
                }
                c->restarted = true;
        }
        k = sd_bus_reply_method_return(msg, "t", c->run_first_seq);
        if (k < 0)
                return k;
        if (kernel_is_ready(c->kernel))
                context_start_run(c, code);
        else {
                /* Still starting: runs as soon as the kernel answers. */
                c->run_code = strdup(code);
                if (!c->run_code) {
                        char *tb[] = { NULL };
                        emit_error(c, "RuntimeError", "out of memory", tb);
                        run_end(c, 0);
                }
        }
        return 1;
}

static int method_interrupt(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Context *c = userdata;
        int k;

        if (!c->running)
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_RUNNING, "context %s is not running a cell", c->id);
        if (c->run_code) {
                /* Never started: end it here. */
                char *tb[] = { NULL };
                emit_error(c, "KeyboardInterrupt", "interrupted before the kernel was ready", tb);
                run_end(c, 0);
                return sd_bus_reply_method_return(msg, NULL);
        }
        k = kernel_interrupt(c->kernel);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Failed to interrupt the kernel: %m");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_delete(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        /* Gone before the answer: whoever reads the reply finds no kernel and no files left. */
        context_free(userdata);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_read_events(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Context *c = userdata;
        uint64_t from_seq, next_seq;
        size_t bytes = 0;
        int k;

        k = sd_bus_message_read(msg, "t", &from_seq);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_return(msg, &reply);
        if (k >= 0)
                k = sd_bus_message_open_container(reply, 'a', "(tss)");
        if (k < 0)
                return k;
        next_seq = MAX(from_seq, c->ring.count ? ring_at(&c->ring, 0)->seq : c->ring.next_seq);
        for (size_t i = ring_index_by_seq(&c->ring, from_seq); i < c->ring.count; i++) {
                const RingChunk *chunk = ring_at(&c->ring, i);
                _cleanup_(freep) char *text = strndup((const char *) chunk->data, chunk->size);

                if (bytes > 0 && bytes + chunk->size > READ_REPLY_MAX)
                        break;
                if (!text)
                        return -ENOMEM;
                k = sd_bus_message_append(reply, "(tss)", chunk->seq, event_names[chunk->stream], text);
                if (k < 0)
                        return k;
                bytes += chunk->size;
                next_seq = chunk->seq + 1;
        }
        k = sd_bus_message_close_container(reply);
        if (k >= 0)
                k = sd_bus_message_append(reply, "t", MIN(next_seq, c->ring.next_seq));
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;

        return sd_bus_message_append(reply, "s", context_state(c));
}

static int property_get_cwd(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;

        return sd_bus_message_append(reply, "s", c->cwd ? c->cwd : "");
}

static int property_get_kernel(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;

        return sd_bus_message_append(reply, "s", c->spec->name);
}

static int property_get_pid(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *c = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) (c->kernel && !c->dead ? kernel_pid(c->kernel) : 0));
}

/* The id is an array, not the char * sd-bus's own getter would read. */
static int property_get_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Context *x = userdata;

        return sd_bus_message_append(reply, "s", x->id);
}

const sd_bus_vtable context_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Language", "s", NULL, offsetof(Context, language), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kernel", "s", property_get_kernel, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("OwnerUid", "u", NULL, offsetof(Context, owner_uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Default", "b", NULL, offsetof(Context, is_default), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Cwd", "s", property_get_cwd, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ExecutionCount", "x", NULL, offsetof(Context, execution_count),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KernelPid", "u", property_get_pid, 0, 0),
        SD_BUS_METHOD_WITH_ARGS("Execute", SD_BUS_ARGS("s", code), SD_BUS_RESULT("t", first_seq), method_execute,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Interrupt", NULL, NULL, method_interrupt, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Delete", NULL, NULL, method_delete, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReadEvents", SD_BUS_ARGS("t", from_seq), SD_BUS_RESULT("a(tss)", events, "t", next_seq),
                                method_read_events, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Event", SD_BUS_ARGS("t", seq, "s", type, "s", event), 0),
        SD_BUS_VTABLE_END
};

int context_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                        void **found, sd_bus_error *error) {
        Manager *m = userdata;
        Context *c;

        if (strncmp(path, EXECD_CONTEXT_PREFIX "/", strlen(EXECD_CONTEXT_PREFIX "/")) != 0)
                return 0;
        c = manager_find_context(m, path + strlen(EXECD_CONTEXT_PREFIX "/"));
        if (!c)
                return 0;
        if (!manager_caller_may_access(m, c->owner_uid, error))
                return -EACCES;
        *found = c;
        return 1;
}

int context_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                            sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **l = NULL;
        size_t k = 0;

        l = calloc(m->n_contexts + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (Context *c = m->contexts; c && k < m->n_contexts; c = c->next) {
                bool visible = manager_caller_sees(m, c->owner_uid);
                if (!visible)
                        continue;
                l[k] = strdup(c->path);
                if (!l[k])
                        return -ENOMEM;
                k++;
        }
        *nodes = TAKE_PTR(l);
        return 1;
}

/* ---- Manager methods ---- */

static int read_context_options(sd_bus_message *msg, char **ret_cwd, sd_bus_error *error) {
        const char *key, *cwd = NULL;
        int k;

        k = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                k = sd_bus_message_read(msg, "s", &key);
                if (k < 0)
                        return k;
                if (strcmp(key, "cwd") != 0)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "Unknown option '%s'", key);
                k = sd_bus_message_read(msg, "v", "s", &cwd);
                if (k < 0)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "Option 'cwd' must be a string");
                k = sd_bus_message_exit_container(msg);
                if (k < 0)
                        return k;
        }
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(msg);
        if (k < 0)
                return k;
        *ret_cwd = NULL;
        if (cwd && *cwd) {
                k = files_expand(cwd, ret_cwd, error);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int create_context(Manager *m, sd_bus_message *msg, const char *language, bool is_default,
                          const char *cwd, sd_bus_error *error) {
        Context *c;
        uid_t caller;
        int k;

        if (!*language)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "language is required");
        if (m->stopping)
                return sd_bus_error_setf(error, EXECD_ERROR_BUSY, "The daemon is shutting down");
        k = manager_caller_uid(m, msg, &caller);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot determine the caller's uid: %m");
        k = manager_authorize_run(m, msg, NULL, error);
        if (k <= 0)
                return k < 0 ? k : 1;
        if (is_default) {
                c = manager_find_default_context(m, caller, language);
                if (c)
                        return context_reply_when_ready(c, msg);
        }
        /* bash and shell contexts are bash sessions: no kernel, state carried by the daemon. */
        if (strcmp(language, "bash") == 0 || strcmp(language, "shell") == 0) {
                Session *s = is_default ? manager_find_default_session(m, caller, language) : NULL;

                if (!s) {
                        k = session_new(m, caller, cwd, &s, error);
                        if (k < 0)
                                return k;
                        s->language = strdup(language);
                        s->is_default = is_default;
                        if (!s->language) {
                                session_free(s);
                                return -ENOMEM;
                        }
                }
                return sd_bus_reply_method_return(msg, "o", s->path);
        }
        /* Before the directory is made: a refused call creates nothing. */
        k = context_check_limits(m, caller, error);
        if (k < 0)
                return k;
        if (cwd) {
                FileCaller fc = {};

                /* Created if missing, with the caller's rights. */
                k = files_caller_enter(m->files, msg, &fc, error);
                if (k >= 0)
                        k = files_mkdir_p(cwd, 0777, error);
                files_caller_leave(&fc);
                if (k < 0)
                        return k;
        }
        k = context_new(m, caller, language, cwd, is_default, &c, error);
        if (k < 0)
                return k;
        return context_reply_when_ready(c, msg);
}

int method_create_context(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(freep) char *cwd = NULL;
        const char *language;
        int k;

        k = sd_bus_message_read(msg, "s", &language);
        if (k < 0)
                return k;
        k = read_context_options(msg, &cwd, error);
        if (k < 0)
                return k;
        {
                _cleanup_(freep) char *lower = strdup(language);
                if (!lower)
                        return -ENOMEM;
                for (char *p = lower; *p; p++)
                        *p = (char) (*p >= 'A' && *p <= 'Z' ? *p + 'a' - 'A' : *p);
                return create_context(userdata, msg, lower, false, cwd, error);
        }
}

int method_default_context(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(freep) char *lower = NULL;
        const char *language;
        int k;

        k = sd_bus_message_read(msg, "s", &language);
        if (k < 0)
                return k;
        lower = strdup(language);
        if (!lower)
                return -ENOMEM;
        for (char *p = lower; *p; p++)
                *p = (char) (*p >= 'A' && *p <= 'Z' ? *p + 'a' - 'A' : *p);
        return create_context(userdata, msg, lower, true, NULL, error);
}

int method_list_contexts(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        const char *language;
        int k;

        k = sd_bus_message_read(msg, "s", &language);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_return(msg, &reply);
        if (k >= 0)
                k = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (Context *c = m->contexts; k >= 0 && c; c = c->next) {
                bool visible = manager_caller_sees(m, c->owner_uid);
                if (visible && (!*language || strcasecmp(language, c->language) == 0))
                        k = sd_bus_message_append(reply, "(ss)", c->id, c->language);
        }
        for (Session *s = m->sessions; k >= 0 && s; s = s->next) {
                bool visible = s->language && manager_caller_sees(m, s->owner_uid);
                if (visible && (!*language || strcasecmp(language, s->language) == 0))
                        k = sd_bus_message_append(reply, "(ss)", s->id, s->language);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(reply);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}
