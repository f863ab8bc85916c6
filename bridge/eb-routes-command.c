/* SPDX-License-Identifier: Apache-2.0 */
/* /ping and /command: run with a live SSE stream, interrupt, status, background logs. */
#include <signal.h>
#include <string.h>

#include "eb-lines.h"
#include "eb-routes.h"
#include "eb-sse.h"

/* Flow control for foreground streams: the daemon stops reading a command's output once this
 * much is unacknowledged; the bridge acknowledges as libsoup writes to the client, so a slow
 * client slows its own command instead of growing the bridge's memory. */
#define STREAM_ACK_WINDOW (1024 * 1024)
#define STREAM_ACK_EVERY (STREAM_ACK_WINDOW / 4)
#define LOG_READ_MAX (4 * 1024 * 1024)

void eb_route_ping(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        eb_reply_empty(msg, SOUP_STATUS_OK);
}

/* ---- POST /command ---------------------------------------------------------------------- */

typedef struct {
        guint64 seq, sse_end, raw;
} AckMark;

typedef struct {
        EbServer *server;
        EbSse *sse;
        char *path;
        char id[33];
        gboolean background;
        guint64 timeout_ms;
        gint64 started_us;
        EbLineSplitter lines[2];
        char *init_text;     /* session runs: the session id, not the command's */
        gboolean for_code;   /* a /code run on a bash context: errors speak of contexts */
        gboolean drop_empty; /* session runs report non-empty lines only, as the reference */
        guint64 next_seq;
        GQueue marks; /* AckMark*, in write order */
        guint64 unacked_raw;
        EbSignalTarget target;
} CommandStream;

static const char *const stream_types[] = { "stdout", "stderr" };

static void command_stream_free(CommandStream *cs) {
        if (cs->path)
                eb_server_unwatch_object(cs->server, cs->path, &cs->target);
        eb_sse_free(cs->sse);
        for (int i = 0; i < 2; i++)
                eb_lines_clear(&cs->lines[i]);
        g_queue_clear_full(&cs->marks, g_free);
        g_free(cs->init_text);
        g_free(cs->path);
        g_free(cs);
}

typedef struct {
        CommandStream *cs;
        int stream;
} LineSink;

static void emit_line(const char *line, gsize len, gpointer user_data) {
        LineSink *sink = user_data;

        /* The splitter reports an empty line as "\n" (a real line never holds its terminator). */
        if (sink->cs->drop_empty && (len == 0 || (len == 1 && line[0] == '\n')))
                return;
        eb_sse_text_event(sink->cs->sse, stream_types[sink->stream], line, len);
}

static void command_stream_terminal(CommandStream *cs, int exit_code, const char *error_text) {
        EbJson *j;

        for (int i = 0; i < 2; i++) {
                LineSink sink = { cs, i };
                eb_lines_flush(&cs->lines[i], emit_line, &sink);
        }
        if (exit_code == 0 && !error_text) {
                gint64 ms = (g_get_monotonic_time() - cs->started_us) / 1000;
                j = eb_sse_begin_event(cs->sse, "execution_complete");
                if (ms > 0) {
                        eb_json_key(j, "execution_time");
                        eb_json_int(j, ms);
                }
                eb_sse_end_event(cs->sse);
        } else {
                g_autofree char *evalue = g_strdup_printf("%d", exit_code);
                j = eb_sse_begin_event(cs->sse, "error");
                eb_json_key(j, "error");
                eb_json_begin_object(j);
                eb_json_key(j, "ename");
                eb_json_string(j, "CommandExecError");
                eb_json_key(j, "evalue");
                eb_json_string(j, evalue);
                eb_json_key(j, "traceback");
                eb_json_begin_array(j);
                eb_json_string(j, error_text ? error_text : "");
                eb_json_end_array(j);
                eb_json_end_object(j);
                eb_sse_end_event(cs->sse);
        }
        eb_sse_end(cs->sse);
}

static void send_ack(CommandStream *cs, guint64 seq) {
        sd_bus *bus = eb_server_bus(cs->server);

        if (bus)
                (void) sd_bus_call_method_async(bus, NULL, EB_BUS_NAME, cs->path, EB_COMMAND_INTERFACE, "Ack",
                                                NULL, NULL, "t", seq);
}

static void on_stream_written(gpointer sse, gpointer user_data) {
        CommandStream *cs = user_data;
        guint64 written = eb_sse_written(cs->sse), last_seq = 0;
        gboolean any = FALSE;
        AckMark *mark;

        while ((mark = g_queue_peek_head(&cs->marks)) && mark->sse_end <= written) {
                g_queue_pop_head(&cs->marks);
                cs->unacked_raw += mark->raw;
                last_seq = mark->seq;
                any = TRUE;
                g_free(mark);
        }
        if (any && cs->unacked_raw >= STREAM_ACK_EVERY) {
                send_ack(cs, last_seq);
                cs->unacked_raw = 0;
        }
}

static void command_stream_on_output(CommandStream *cs, sd_bus_message *m) {
        const char *stream;
        const void *data;
        size_t size;
        guint64 seq;
        int i;

        if (sd_bus_message_read(m, "ts", &seq, &stream) < 0 || sd_bus_message_read_array(m, 'y', &data, &size) < 0)
                return;
        if (seq < cs->next_seq)
                return; /* already seen */
        cs->next_seq = seq + 1;
        i = strcmp(stream, "stderr") == 0 ? 1 : 0;
        {
                LineSink sink = { cs, i };
                eb_lines_feed(&cs->lines[i], data, size, emit_line, &sink);
        }
        eb_sse_flush(cs->sse);
        {
                AckMark *mark = g_new(AckMark, 1);
                *mark = (AckMark) { seq, eb_sse_appended(cs->sse), size };
                g_queue_push_tail(&cs->marks, mark);
        }
        on_stream_written(cs->sse, cs);
}

static void command_stream_on_signal(sd_bus_message *m, gpointer data) {
        CommandStream *cs = data;

        if (sd_bus_message_is_signal(m, EB_COMMAND_INTERFACE, "Output"))
                command_stream_on_output(cs, m);
        else if (sd_bus_message_is_signal(m, EB_COMMAND_INTERFACE, "Exited")) {
                int32_t exit_code, sig;
                int timed_out;
                g_autofree char *text = NULL;

                if (sd_bus_message_read(m, "iib", &exit_code, &sig, &timed_out) < 0)
                        return;
                /* The same words as the daemon's Error property. */
                if (timed_out)
                        text = g_strdup_printf("timed out after %" G_GUINT64_FORMAT " ms", cs->timeout_ms);
                else if (sig > 0) {
                        g_autofree char *name = g_ascii_strdown(g_strsignal(sig), -1);
                        text = g_strdup_printf("signal: %s", name);
                } else if (exit_code != 0)
                        text = g_strdup_printf("exit status %d", exit_code);
                command_stream_terminal(cs, sig > 0 ? -1 : exit_code, text);
                command_stream_free(cs);
        }
}

static void command_stream_on_daemon_gone(gpointer data) {
        CommandStream *cs = data;

        command_stream_terminal(cs, -1, "the execd daemon went away");
        command_stream_free(cs);
}

static void command_stream_on_client_gone(gpointer data) {
        CommandStream *cs = data;
        sd_bus *bus = eb_server_bus(cs->server);

        /* A foreground command belongs to its stream. */
        if (bus && !cs->background)
                (void) sd_bus_call_method_async(bus, NULL, EB_BUS_NAME, cs->path, EB_COMMAND_INTERFACE, "Signal",
                                                NULL, NULL, "i", (int32_t) SIGKILL);
        command_stream_free(cs);
}

static void reply_session_not_found(SoupServerMessage *msg, const char *id) {
        g_autofree char *text = g_strdup_printf("session %s not found", id);
        eb_reply_error(msg, EB_API_EXECD, 404, "CONTEXT_NOT_FOUND", text);
}

static int on_run_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        CommandStream *cs = g_steal_pointer(&req->data);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *path;

        if (e || sd_bus_message_read(reply, "o", &path) < 0) {
                if (cs->init_text && e && (sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                                           sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD))) {
                        g_autofree char *text = g_strdup_printf("%s %s not found", cs->for_code ? "context" : "session",
                                                                cs->init_text);
                        eb_reply_error(req->msg, EB_API_EXECD, 404, "CONTEXT_NOT_FOUND", text);
                } else
                        eb_reply_bus_error(req->msg, EB_API_EXECD, e, "NOT_FOUND");
                eb_request_finish(req);
                command_stream_free(cs);
                return 0;
        }
        if (req->gone) {
                /* The client left while the command was being started: it is nobody's now. */
                cs->path = g_strdup(path);
                command_stream_on_client_gone(cs);
                return 0;
        }

        cs->path = g_strdup(path);
        g_strlcpy(cs->id, strrchr(path, '/') + 1, sizeof cs->id);
        cs->sse = eb_sse_start(req->msg, command_stream_on_client_gone, cs);
        {
                const char *init = cs->init_text ? cs->init_text : cs->id;
                eb_sse_text_event(cs->sse, "init", init, strlen(init));
        }
        if (cs->background) {
                /* The command lives on; status and logs tell the rest. */
                eb_sse_begin_event(cs->sse, "execution_complete");
                eb_sse_end_event(cs->sse);
                eb_sse_end(cs->sse);
                g_clear_pointer(&cs->path, g_free);
                command_stream_free(cs);
                return 0;
        }
        eb_sse_set_written_callback(cs->sse, on_stream_written, cs);
        cs->target = (EbSignalTarget) { command_stream_on_signal, command_stream_on_daemon_gone, cs };
        eb_server_watch_object(cs->server, cs->path, &cs->target);
        eb_sse_flush(cs->sse);
        return 0;
}

/* Typed member access for request bodies: JSON null counts as absent. */
static JsonNode *member(JsonObject *o, const char *name) {
        JsonNode *n = eb_json_object_get_ci(o, name);
        return n && !JSON_NODE_HOLDS_NULL(n) ? n : NULL;
}

static gboolean node_is_int(JsonNode *n) {
        return JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64;
}

static gboolean bad_request(SoupServerMessage *msg, const char *format, ...) G_GNUC_PRINTF(2, 3);
static gboolean bad_request(SoupServerMessage *msg, const char *format, ...) {
        g_autofree char *detail = NULL, *text = NULL;
        va_list ap;

        va_start(ap, format);
        detail = g_strdup_vprintf(format, ap);
        va_end(ap);
        text = g_strdup_printf("invalid request, validation error %s", detail);
        eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", text);
        return FALSE;
}

static gboolean read_uint32(SoupServerMessage *msg, JsonObject *o, const char *name, gboolean *has, guint32 *ret) {
        JsonNode *n = member(o, name);
        gint64 v;

        *has = n != NULL;
        if (!n)
                return TRUE;
        if (!node_is_int(n) || (v = json_node_get_int(n)) < 0 || v > G_MAXUINT32)
                return bad_request(msg, "'%s' must be an integer from 0 to 4294967295", name);
        *ret = (guint32) v;
        return TRUE;
}

static int append_options(sd_bus_message *m, JsonObject *o, SoupServerMessage *msg, gboolean *ret_background,
                          guint64 *ret_timeout_ms) {
        JsonNode *n;
        const char *command;
        gboolean has_uid, has_gid, background = FALSE;
        guint32 uid = 0, gid = 0;
        gint64 timeout = 0;
        int k;

        n = member(o, "command");
        if (n && !(JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING))
                return bad_request(msg, "'command' must be a string"), -EINVAL;
        command = n ? json_node_get_string(n) : NULL;
        if (!command || !*command)
                return bad_request(msg, "'command' is required"), -EINVAL;

        n = member(o, "background");
        if (n && !(JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_BOOLEAN))
                return bad_request(msg, "'background' must be a boolean"), -EINVAL;
        background = n && json_node_get_boolean(n);

        n = member(o, "timeout");
        if (n && (!node_is_int(n) || (timeout = json_node_get_int(n)) < 0))
                return bad_request(msg, "'timeout' must be a non-negative integer (milliseconds)"), -EINVAL;

        if (!read_uint32(msg, o, "uid", &has_uid, &uid) || !read_uint32(msg, o, "gid", &has_gid, &gid))
                return -EINVAL;
        if (has_gid && !has_uid)
                return bad_request(msg, "uid is required when gid is provided"), -EINVAL;

        k = sd_bus_message_append(m, "s", command);
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "{sv}");
        if (k < 0)
                return k;

        n = member(o, "cwd");
        if (n) {
                if (!(JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING))
                        return bad_request(msg, "'cwd' must be a string"), -EINVAL;
                if (*json_node_get_string(n))
                        k = sd_bus_message_append(m, "{sv}", "cwd", "s", json_node_get_string(n));
        }
        n = member(o, "envs");
        if (n && k >= 0) {
                JsonObjectIter iter;
                const char *name;
                JsonNode *value;

                if (!JSON_NODE_HOLDS_OBJECT(n))
                        return bad_request(msg, "'envs' must be an object of strings"), -EINVAL;
                k = sd_bus_message_open_container(m, 'e', "sv");
                if (k >= 0)
                        k = sd_bus_message_append(m, "s", "envs");
                if (k >= 0)
                        k = sd_bus_message_open_container(m, 'v', "a{ss}");
                if (k >= 0)
                        k = sd_bus_message_open_container(m, 'a', "{ss}");
                json_object_iter_init(&iter, json_node_get_object(n));
                while (k >= 0 && json_object_iter_next(&iter, &name, &value)) {
                        if (!(JSON_NODE_HOLDS_VALUE(value) && json_node_get_value_type(value) == G_TYPE_STRING))
                                return bad_request(msg, "'envs.%s' must be a string", name), -EINVAL;
                        k = sd_bus_message_append(m, "{ss}", name, json_node_get_string(value));
                }
                for (int i = 0; i < 3 && k >= 0; i++)
                        k = sd_bus_message_close_container(m);
        }
        if (k >= 0 && timeout > 0)
                k = sd_bus_message_append(m, "{sv}", "timeout_ms", "t", (uint64_t) timeout);
        if (k >= 0 && has_uid)
                k = sd_bus_message_append(m, "{sv}", "uid", "u", uid);
        if (k >= 0 && has_gid)
                k = sd_bus_message_append(m, "{sv}", "gid", "u", gid);
        if (k >= 0)
                k = sd_bus_message_append(m, "{sv}", "background", "b", background);
        if (k >= 0 && !background)
                k = sd_bus_message_append(m, "{sv}", "ack_window", "t", (uint64_t) STREAM_ACK_WINDOW);
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        *ret_background = background;
        *ret_timeout_ms = (guint64) timeout;
        return k;
}

/* Start the stream of a prepared RunCommand or Session.Run call (consumes m). */
static void start_stream(EbServer *s, SoupServerMessage *msg, sd_bus_message *m, int k, const char *session,
                         gboolean background, guint64 timeout_ms, gboolean for_code) {
        g_autoptr(EbRequest) req = NULL;
        CommandStream *cs;

        /* A background run answers at once; a foreground one holds a stream. */
        if (!background && !eb_server_stream_begin(s, msg)) {
                sd_bus_message_unref(m);
                return;
        }
        req = eb_request_new(s, msg);
        cs = g_new0(CommandStream, 1);

        cs->server = s;
        cs->background = background;
        cs->timeout_ms = timeout_ms;
        cs->started_us = g_get_monotonic_time();
        cs->init_text = g_strdup(session);
        cs->drop_empty = session != NULL;
        cs->for_code = for_code;
        g_queue_init(&cs->marks);
        for (int i = 0; i < 2; i++)
                eb_lines_init(&cs->lines[i]);
        req->data = cs; /* taken by on_run_reply */
        req->data_free = (GDestroyNotify) command_stream_free;
        req->finish_call_when_gone = TRUE;
        eb_request_send(req, m, k, on_run_reply);
}

/* POST /command, and POST /session/{id}/run (session set): the same stream. */
static void start_run(EbServer *s, SoupServerMessage *msg, const char *session) {
        g_autoptr(JsonParser) parser = NULL;
        g_autofree char *session_path = NULL;
        sd_bus_message *m = NULL;
        JsonObject *o;
        gboolean background = FALSE;
        guint64 timeout_ms = 0;
        int k;

        o = eb_parse_object_body(msg, &parser);
        if (!o)
                return;

        if (session) {
                session_path = g_strconcat(EB_SESSION_PREFIX, session, NULL);
                k = eb_server_new_call(s, &m, session_path, EB_SESSION_INTERFACE, "Run");
        } else
                k = eb_server_new_call(s, &m, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "RunCommand");
        if (k >= 0) {
                k = append_options(m, o, msg, &background, &timeout_ms);
                if (k == -EINVAL) {
                        sd_bus_message_unref(m);
                        return; /* the reply is set */
                }
        }
        start_stream(s, msg, m, k, session, background, timeout_ms, FALSE);
}

void eb_session_run_code(EbServer *s, SoupServerMessage *msg, const char *session, const char *code) {
        g_autofree char *path = g_strconcat(EB_SESSION_PREFIX, session, NULL);
        sd_bus_message *m = NULL;
        int k;

        k = eb_server_new_call(s, &m, path, EB_SESSION_INTERFACE, "Run");
        if (k >= 0)
                k = sd_bus_message_append(m, "sa{sv}", code, 1, "ack_window", "t", (uint64_t) STREAM_ACK_WINDOW);
        start_stream(s, msg, m, k, session, FALSE, 0, TRUE);
}

void eb_command_run_code(EbServer *s, SoupServerMessage *msg, const char *code) {
        sd_bus_message *m = NULL;
        int k;

        k = eb_server_new_call(s, &m, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "RunCommand");
        if (k >= 0)
                k = sd_bus_message_append(m, "sa{sv}", code, 1, "ack_window", "t", (uint64_t) STREAM_ACK_WINDOW);
        start_stream(s, msg, m, k, NULL, FALSE, 0, TRUE);
}

void eb_route_command_run(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        start_run(s, msg, NULL);
}

void eb_route_session_run(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        if (!eb_is_object_id(param)) {
                reply_session_not_found(msg, param);
                return;
        }
        start_run(s, msg, param);
}

/* ---- POST /session and DELETE /session/{id} ------------------------------------------------ */

static int on_create_session_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *path;
        GString *out;
        EbJson j;

        if (e || sd_bus_message_read(reply, "o", &path) < 0)
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "NOT_FOUND");
        else {
                out = g_string_sized_new(64);
                eb_json_init(&j, out);
                eb_json_begin_object(&j);
                eb_json_key(&j, "session_id");
                eb_json_string(&j, strrchr(path, '/') + 1);
                eb_json_end_object(&j);
                eb_reply_json(req->msg, SOUP_STATUS_OK, out);
        }
        eb_request_finish(req);
        return 0;
}

void eb_route_session_create(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(EbRequest) req = NULL;
        SoupMessageBody *body = soup_server_message_get_request_body(msg);
        sd_bus_message *m = NULL;
        const char *cwd = "";
        JsonNode *n;
        int k;

        /* An empty body is {} here: the Python SDK sends exactly that. */
        if (body->length > 0) {
                JsonObject *o = eb_parse_object_body(msg, &parser);
                if (!o)
                        return;
                n = member(o, "cwd");
                if (n && !(JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING)) {
                        bad_request(msg, "'cwd' must be a string");
                        return;
                }
                if (n)
                        cwd = json_node_get_string(n);
        }
        req = eb_request_new(s, msg);
        k = eb_server_new_call(s, &m, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "CreateSession");
        if (k >= 0)
                k = *cwd ? sd_bus_message_append(m, "a{sv}", 1, "cwd", "s", cwd) : sd_bus_message_append(m, "a{sv}", 0);
        eb_request_send(req, m, k, on_create_session_reply);
}

static int on_delete_session_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (!e)
                eb_reply_empty(req->msg, SOUP_STATUS_OK);
        else if (sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                 sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD))
                reply_session_not_found(req->msg, req->id);
        else
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
        eb_request_finish(req);
        return 0;
}

void eb_route_session_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(EbRequest) req = NULL;
        g_autofree char *path = NULL;

        if (!eb_is_object_id(param)) {
                reply_session_not_found(msg, param);
                return;
        }
        path = g_strconcat(EB_SESSION_PREFIX, param, NULL);
        req = eb_request_new(s, msg);
        req->id = g_strdup(param);
        eb_request_call(req, path, EB_SESSION_INTERFACE, "Delete", on_delete_session_reply, NULL);
}

/* ---- DELETE /command?id= ----------------------------------------------------------------- */

static gboolean is_unknown(const sd_bus_error *e) {
        return sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) || sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD);
}

static void reply_interrupt(EbRequest *req, const sd_bus_error *e) {
        if (!e)
                eb_reply_empty(req->msg, SOUP_STATUS_OK);
        else if (is_unknown(e)) {
                g_autofree char *text = g_strdup_printf("no such command, context or session: %s", req->id);
                eb_reply_error(req->msg, EB_API_EXECD, 404, "CONTEXT_NOT_FOUND", text);
        } else
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
        eb_request_finish(req);
}

static int on_context_interrupt_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);

        reply_interrupt(req, sd_bus_message_get_error(reply));
        return 0;
}

static int on_session_interrupt_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e && is_unknown(e)) {
                g_autofree char *path = g_strconcat("/org/execd/Execd1/context/", req->id, NULL);
                eb_request_call(req, path, "org.execd.Execd1.Context", "Interrupt", on_context_interrupt_reply, NULL);
                return 0;
        }
        reply_interrupt(req, e);
        return 0;
}

/* The id names a command, or else a session (whose running command is interrupted; the
 * session stays), or else a code context (its kernel is interrupted). */
static int on_interrupt_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e && is_unknown(e)) {
                g_autofree char *path = g_strconcat(EB_SESSION_PREFIX, req->id, NULL);
                eb_request_call(req, path, EB_SESSION_INTERFACE, "Interrupt", on_session_interrupt_reply, NULL);
                return 0;
        }
        reply_interrupt(req, e);
        return 0;
}

void eb_route_command_interrupt(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        const char *id = query ? g_hash_table_lookup(query, "id") : NULL;
        g_autoptr(EbRequest) req = NULL;
        g_autofree char *path = NULL;

        if (!id || !*id) {
                eb_reply_error(msg, EB_API_EXECD, 400, "MISSING_QUERY", "missing query parameter 'id'");
                return;
        }
        if (!eb_is_object_id(id)) {
                g_autofree char *text = g_strdup_printf("no such command, context or session: %s", id);
                eb_reply_error(msg, EB_API_EXECD, 404, "CONTEXT_NOT_FOUND", text);
                return;
        }
        path = g_strconcat(EB_COMMAND_PREFIX, id, NULL);
        req = eb_request_new(s, msg);
        req->id = g_strdup(id);
        eb_request_call(req, path, EB_COMMAND_INTERFACE, "Interrupt", on_interrupt_reply, NULL);
}

/* ---- GET /command/status/{id} and /command/{id}/logs ------------------------------------- */

typedef struct {
        char *command_line;
        gboolean running, background;
        int32_t exit_code, signal;
        char *error;
        uint64_t started_at, finished_at;
} CommandProps;

static void command_props_clear(CommandProps *p) {
        g_free(p->command_line);
        g_free(p->error);
}

static int read_command_props(sd_bus_message *m, CommandProps *p) {
        int k;

        k = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (k >= 0 && (k = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *s;
                int b;

                k = sd_bus_message_read(m, "s", &key);
                if (k < 0)
                        break;
                if (strcmp(key, "CommandLine") == 0 || strcmp(key, "Error") == 0) {
                        k = sd_bus_message_read(m, "v", "s", &s);
                        if (k >= 0) {
                                char **dest = key[0] == 'C' ? &p->command_line : &p->error;
                                g_free(*dest);
                                *dest = g_strdup(s);
                        }
                } else if (strcmp(key, "Running") == 0 || strcmp(key, "Background") == 0) {
                        k = sd_bus_message_read(m, "v", "b", &b);
                        *(key[0] == 'R' ? &p->running : &p->background) = b;
                } else if (strcmp(key, "ExitCode") == 0)
                        k = sd_bus_message_read(m, "v", "i", &p->exit_code);
                else if (strcmp(key, "Signal") == 0)
                        k = sd_bus_message_read(m, "v", "i", &p->signal);
                else if (strcmp(key, "StartedAt") == 0)
                        k = sd_bus_message_read(m, "v", "t", &p->started_at);
                else if (strcmp(key, "FinishedAt") == 0)
                        k = sd_bus_message_read(m, "v", "t", &p->finished_at);
                else
                        k = sd_bus_message_skip(m, "v");
                if (k >= 0)
                        k = sd_bus_message_exit_container(m);
        }
        return k < 0 ? k : 0;
}

static void reply_command_not_found(SoupServerMessage *msg, const char *id) {
        g_autofree char *text = g_strdup_printf("command not found: %s", id);
        eb_reply_error(msg, EB_API_EXECD, 404, "INVALID_REQUEST_BODY", text);
}

static int on_status_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        CommandProps p = {};
        GString *out;
        EbJson j;

        if (e || read_command_props(reply, &p) < 0) {
                if (e && sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT))
                        reply_command_not_found(req->msg, req->id);
                else
                        eb_reply_bus_error(req->msg, EB_API_EXECD, e, "INVALID_REQUEST_BODY");
                eb_request_finish(req);
                command_props_clear(&p);
                return 0;
        }

        out = g_string_sized_new(256);
        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        eb_json_key(&j, "id");
        eb_json_string(&j, req->id);
        eb_json_key(&j, "content");
        eb_json_string(&j, p.command_line ? p.command_line : "");
        eb_json_key(&j, "running");
        eb_json_bool(&j, p.running);
        eb_json_key(&j, "exit_code");
        if (p.running)
                eb_json_null(&j);
        else
                eb_json_int(&j, p.exit_code);
        if (p.error && *p.error) {
                eb_json_key(&j, "error");
                eb_json_string(&j, p.error);
        }
        eb_json_key(&j, "started_at");
        eb_json_time_ns(&j, (gint64) p.started_at * 1000);
        eb_json_key(&j, "finished_at");
        if (p.running)
                eb_json_null(&j);
        else
                eb_json_time_ns(&j, (gint64) p.finished_at * 1000);
        eb_json_end_object(&j);
        eb_reply_json(req->msg, SOUP_STATUS_OK, out);
        eb_request_finish(req);
        command_props_clear(&p);
        return 0;
}

void eb_route_command_status(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(EbRequest) req = NULL;
        g_autofree char *path = NULL;

        if (!eb_is_object_id(param)) {
                reply_command_not_found(msg, param);
                return;
        }
        path = g_strconcat(EB_COMMAND_PREFIX, param, NULL);
        req = eb_request_new(s, msg);
        req->id = g_strdup(param);
        eb_request_call(req, path, "org.freedesktop.DBus.Properties", "GetAll", on_status_reply, "s",
                        EB_COMMAND_INTERFACE);
}

static void logs_finish(EbRequest *req) {
        SoupMessageHeaders *h = soup_server_message_get_response_headers(req->msg);
        g_autofree char *cursor = g_strdup_printf("%" G_GUINT64_FORMAT, req->number);
        gsize len = req->body->len;

        soup_message_headers_replace(h, "EXECD-COMMANDS-TAIL-CURSOR", cursor);
        soup_server_message_set_status(req->msg, SOUP_STATUS_OK, NULL);
        soup_server_message_set_response(req->msg, "text/plain; charset=utf-8", SOUP_MEMORY_TAKE,
                                         g_string_free(g_steal_pointer(&req->body), FALSE), len);
        eb_request_finish(req);
}

static int on_read_log_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autofree char *path = NULL;
        const void *data;
        size_t size;
        uint64_t next;

        if (e || sd_bus_message_read_array(reply, 'y', &data, &size) < 0 || sd_bus_message_read(reply, "t", &next) < 0) {
                if (e && sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT))
                        reply_command_not_found(req->msg, req->id);
                else
                        eb_reply_bus_error(req->msg, EB_API_EXECD, e, "INVALID_REQUEST_BODY");
                eb_request_finish(req);
                return 0;
        }
        g_string_append_len(req->body, data, (gssize) size);
        req->number = MAX(req->number, next);
        if (size < LOG_READ_MAX) {
                logs_finish(req);
                return 0;
        }
        path = g_strconcat(EB_COMMAND_PREFIX, req->id, NULL);
        eb_request_call(req, path, EB_COMMAND_INTERFACE, "ReadLog", on_read_log_reply, "tu", req->number,
                        (uint32_t) LOG_READ_MAX);
        return 0;
}

static int on_logs_props_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autofree char *path = NULL;
        CommandProps p = {};
        int k;

        k = e ? -EIO : read_command_props(reply, &p);
        command_props_clear(&p);
        if (k < 0) {
                if (e && sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT))
                        reply_command_not_found(req->msg, req->id);
                else
                        eb_reply_bus_error(req->msg, EB_API_EXECD, e, "INVALID_REQUEST_BODY");
                eb_request_finish(req);
                return 0;
        }
        if (!p.background) {
                g_autofree char *text = g_strdup_printf("command %s is not running in background", req->id);
                eb_reply_error(req->msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", text);
                eb_request_finish(req);
                return 0;
        }
        path = g_strconcat(EB_COMMAND_PREFIX, req->id, NULL);
        req->body = g_string_new(NULL);
        eb_request_call(req, path, EB_COMMAND_INTERFACE, "ReadLog", on_read_log_reply, "tu", req->number,
                        (uint32_t) LOG_READ_MAX);
        return 0;
}

void eb_route_command_logs(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        const char *cursor = query ? g_hash_table_lookup(query, "cursor") : NULL;
        g_autoptr(EbRequest) req = NULL;
        g_autofree char *path = NULL;
        guint64 offset = 0;

        if (!eb_is_object_id(param)) {
                reply_command_not_found(msg, param);
                return;
        }
        if (cursor && *cursor && !g_ascii_string_to_unsigned(cursor, 10, 0, G_MAXINT64, &offset, NULL)) {
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY",
                               "cursor must be a non-negative integer byte offset");
                return;
        }
        path = g_strconcat(EB_COMMAND_PREFIX, param, NULL);
        req = eb_request_new(s, msg);
        req->id = g_strdup(param);
        req->number = offset;
        eb_request_call(req, path, "org.freedesktop.DBus.Properties", "GetAll", on_logs_props_reply, "s",
                        EB_COMMAND_INTERFACE);
}
