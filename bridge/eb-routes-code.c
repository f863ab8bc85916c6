/* SPDX-License-Identifier: Apache-2.0 */
/* /code and /code/context(s): code contexts on Jupyter kernels. The daemon builds each event in
 * the API's JSON shape; the bridge frames them as SSE and ends the stream at the run's
 * execution_complete. A /code request without a language is a plain shell command. */
#include <string.h>

#include "eb-files.h"
#include "eb-routes.h"
#include "eb-sse.h"

#define EB_CONTEXT_PREFIX "/org/execd/Execd1/context/"
#define EB_CONTEXT_INTERFACE "org.execd.Execd1.Context"

static void reply_context_not_found(SoupServerMessage *msg, const char *id) {
        g_autofree char *text = g_strdup_printf("context %s not found", id);
        eb_reply_error(msg, EB_API_EXECD, 404, "CONTEXT_NOT_FOUND", text);
}

static gboolean is_unknown(const sd_bus_error *e) {
        return sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) || sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD);
}

static void reply_context_error(EbRequest *req, const sd_bus_error *e) {
        if (is_unknown(e))
                reply_context_not_found(req->msg, req->id ? req->id : "");
        else
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
}

static void write_context(EbJson *j, const char *id, const char *language, const char *cwd) {
        eb_json_begin_object(j);
        eb_json_key(j, "id");
        eb_json_string(j, id);
        eb_json_key(j, "language");
        eb_json_string(j, language);
        if (cwd && *cwd) {
                eb_json_key(j, "cwd");
                eb_json_string(j, cwd);
        }
        eb_json_end_object(j);
}

static const char *string_member(JsonObject *o, const char *name, gboolean *bad) {
        JsonNode *n = o ? eb_json_object_get_ci(o, name) : NULL;

        if (!n || JSON_NODE_HOLDS_NULL(n))
                return NULL;
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) {
                *bad = TRUE;
                return NULL;
        }
        return json_node_get_string(n);
}

/* ---- POST /code/context ---- */

typedef struct {
        char *language, *cwd;
} CreateState;

static void create_state_free(CreateState *c) {
        g_free(c->language);
        g_free(c->cwd);
        g_free(c);
}

static int on_create_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        CreateState *c = req->data;
        const char *path;
        GString *out;
        EbJson j;

        if (e || sd_bus_message_read(reply, "o", &path) < 0)
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
        else {
                out = g_string_sized_new(128);
                eb_json_init(&j, out);
                write_context(&j, strrchr(path, '/') + 1, c->language, c->cwd);
                eb_reply_json(req->msg, SOUP_STATUS_OK, out);
        }
        eb_request_finish(req);
        return 0;
}

void eb_route_code_context_create(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(EbRequest) req = NULL;
        JsonObject *o = eb_parse_object_body(msg, &parser);
        const char *language, *cwd;
        gboolean bad = FALSE;
        CreateState *c;
        sd_bus_message *m = NULL;
        int k;

        if (!o)
                return;
        language = string_member(o, "language", &bad);
        cwd = string_member(o, "cwd", &bad);
        if (bad || !language || !*language) {
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY",
                               "error parsing request, MAYBE invalid body format. 'language' must be a non-empty string"
                               " and 'cwd' a string");
                return;
        }
        c = g_new0(CreateState, 1);
        c->language = g_ascii_strdown(language, -1);
        c->cwd = g_strdup(cwd);
        req = eb_request_new(s, msg);
        req->data = c;
        req->data_free = (GDestroyNotify) create_state_free;
        k = eb_server_new_call(s, &m, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "CreateContext");
        if (k >= 0)
                k = cwd && *cwd ? sd_bus_message_append(m, "sa{sv}", c->language, 1, "cwd", "s", cwd)
                                : sd_bus_message_append(m, "sa{sv}", c->language, 0);
        eb_request_send(req, m, k, on_create_reply);
}

/* ---- GET/DELETE /code/contexts?language= ---- */

static gboolean unsupported_language(SoupServerMessage *msg, const char *language) {
        if (g_strcmp0(language, "command") != 0 && g_strcmp0(language, "background-command") != 0 &&
            g_strcmp0(language, "sql") != 0)
                return FALSE;
        {
                g_autofree char *text = g_strdup_printf("unsupported language context operation: %s", language);
                eb_reply_error(msg, EB_API_EXECD, 500, "RUNTIME_ERROR", text);
        }
        return TRUE;
}

static int on_list_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *id, *language;
        GString *out;
        EbJson j;
        int k;

        if (e) {
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
                eb_request_finish(req);
                return 0;
        }
        out = g_string_sized_new(256);
        eb_json_init(&j, out);
        eb_json_begin_array(&j);
        k = sd_bus_message_enter_container(reply, 'a', "(ss)");
        while (k >= 0 && (k = sd_bus_message_read(reply, "(ss)", &id, &language)) > 0)
                write_context(&j, id, language, NULL);
        eb_json_end_array(&j);
        eb_reply_json(req->msg, SOUP_STATUS_OK, out);
        eb_request_finish(req);
        return 0;
}

void eb_route_code_contexts_list(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        const char *language = query ? g_hash_table_lookup(query, "language") : NULL;
        g_autoptr(EbRequest) req = NULL;

        if (unsupported_language(msg, language))
                return;
        req = eb_request_new(s, msg);
        eb_request_call(req, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "ListContexts", on_list_reply, "s",
                        language ? language : "");
}

/* Deleting every context of a language: list, then delete each (fire and forget: an id that
 * went away meanwhile is as good as deleted). */
static int on_list_for_delete_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        sd_bus *bus = eb_server_bus(req->server);
        const char *id, *language;
        int k;

        if (e) {
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
                eb_request_finish(req);
                return 0;
        }
        k = sd_bus_message_enter_container(reply, 'a', "(ss)");
        while (bus && k >= 0 && (k = sd_bus_message_read(reply, "(ss)", &id, &language)) > 0) {
                gboolean bash = strcmp(language, "bash") == 0 || strcmp(language, "shell") == 0;
                g_autofree char *path = g_strconcat(bash ? EB_SESSION_PREFIX : EB_CONTEXT_PREFIX, id, NULL);
                (void) sd_bus_call_method_async(bus, NULL, EB_BUS_NAME, path,
                                                bash ? EB_SESSION_INTERFACE : EB_CONTEXT_INTERFACE, "Delete", NULL,
                                                NULL, NULL);
        }
        eb_reply_empty(req->msg, SOUP_STATUS_OK);
        eb_request_finish(req);
        return 0;
}

void eb_route_code_contexts_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        const char *language = query ? g_hash_table_lookup(query, "language") : NULL;
        g_autoptr(EbRequest) req = NULL;

        if (!language || !*language) {
                eb_reply_error(msg, EB_API_EXECD, 400, "MISSING_QUERY", "missing query parameter 'language'");
                return;
        }
        if (unsupported_language(msg, language))
                return;
        req = eb_request_new(s, msg);
        eb_request_call(req, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "ListContexts", on_list_for_delete_reply, "s",
                        language);
}

/* ---- GET/DELETE /code/contexts/{id} ---- */

static int on_get_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *language = NULL;
        GString *out;
        EbJson j;

        if (e && is_unknown(e) && !req->data) {
                /* Not a kernel: perhaps a bash context, which is a session. */
                g_autofree char *path = g_strconcat(EB_SESSION_PREFIX, req->id, NULL);
                req->data = GINT_TO_POINTER(1);
                eb_request_call(req, path, "org.freedesktop.DBus.Properties", "Get", on_get_reply, "ss",
                                EB_SESSION_INTERFACE, "Language");
                return 0;
        }
        if (e || sd_bus_message_read(reply, "v", "s", &language) < 0 || !*language)
                reply_context_error(req, e ? e : &SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_UNKNOWN_OBJECT, "not a context"));
        else {
                out = g_string_sized_new(128);
                eb_json_init(&j, out);
                write_context(&j, req->id, language, NULL);
                eb_reply_json(req->msg, SOUP_STATUS_OK, out);
        }
        eb_request_finish(req);
        return 0;
}

static int on_delete_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e && is_unknown(e) && !req->data) {
                g_autofree char *path = g_strconcat(EB_SESSION_PREFIX, req->id, NULL);
                req->data = GINT_TO_POINTER(1);
                eb_request_call(req, path, EB_SESSION_INTERFACE, "Delete", on_delete_reply, NULL);
                return 0;
        }
        if (e)
                reply_context_error(req, e);
        else
                eb_reply_empty(req->msg, SOUP_STATUS_OK);
        eb_request_finish(req);
        return 0;
}

static EbRequest *context_request(EbServer *s, SoupServerMessage *msg, const char *id, char **ret_path) {
        EbRequest *req;

        if (!eb_is_object_id(id)) {
                reply_context_not_found(msg, id);
                return NULL;
        }
        req = eb_request_new(s, msg);
        req->id = g_strdup(id);
        *ret_path = g_strconcat(EB_CONTEXT_PREFIX, id, NULL);
        return req;
}

void eb_route_code_context_get(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autofree char *path = NULL;
        g_autoptr(EbRequest) req = context_request(s, msg, param, &path);

        if (req)
                eb_request_call(req, path, "org.freedesktop.DBus.Properties", "Get", on_get_reply, "ss",
                                EB_CONTEXT_INTERFACE, "Language");
}

void eb_route_code_context_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autofree char *path = NULL;
        g_autoptr(EbRequest) req = context_request(s, msg, param, &path);

        if (req)
                eb_request_call(req, path, EB_CONTEXT_INTERFACE, "Delete", on_delete_reply, NULL);
}

/* ---- POST /code ---- */

typedef struct {
        EbServer *server;
        EbSse *sse;
        char *path;
        char *id;
        char *code;
        guint64 first_seq;
        gint64 called_ms; /* when Execute went out: the init event's timestamp */
        gboolean started;
        EbSignalTarget target;
} CodeRun;

static void code_run_free(CodeRun *r) {
        if (r->path)
                eb_server_unwatch_object(r->server, r->path, &r->target);
        eb_sse_free(r->sse);
        g_free(r->path);
        g_free(r->id);
        g_free(r->code);
        g_free(r);
}

static void code_run_on_signal(sd_bus_message *m, gpointer data) {
        CodeRun *r = data;
        const char *type, *event;
        guint64 seq;

        if (!r->started || !sd_bus_message_is_signal(m, EB_CONTEXT_INTERFACE, "Event") ||
            sd_bus_message_read(m, "tss", &seq, &type, &event) < 0 || seq < r->first_seq)
                return;
        eb_sse_data_event(r->sse, event, strlen(event));
        if (strcmp(type, "execution_complete") == 0) {
                eb_sse_end(r->sse);
                code_run_free(r);
                return;
        }
        eb_sse_flush(r->sse);
}

static void code_run_on_daemon_gone(gpointer data) {
        CodeRun *r = data;

        if (r->started) {
                EbJson *j = eb_sse_begin_event(r->sse, "error");
                eb_json_key(j, "error");
                eb_json_begin_object(j);
                eb_json_key(j, "ename");
                eb_json_string(j, "RuntimeError");
                eb_json_key(j, "evalue");
                eb_json_string(j, "the execd daemon went away");
                eb_json_key(j, "traceback");
                eb_json_begin_array(j);
                eb_json_end_array(j);
                eb_json_end_object(j);
                eb_sse_end_event(r->sse);
                eb_sse_end(r->sse);
        }
        code_run_free(r);
}

static void code_run_on_client_gone(gpointer data) {
        /* As in the reference, the cell runs on; only the stream is gone. */
        code_run_free(data);
}

static int on_execute_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        CodeRun *r = g_steal_pointer(&req->data);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        EbJson *j;

        if (e || sd_bus_message_read(reply, "t", &r->first_seq) < 0) {
                if (e && is_unknown(e)) {
                        /* Not a kernel: a bash context is a session. */
                        eb_session_run_code(r->server, req->msg, r->id, r->code);
                        code_run_free(r);
                        return 0;
                }
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
                eb_request_finish(req);
                code_run_free(r);
                return 0;
        }
        if (req->gone) {
                code_run_free(r);
                return 0;
        }
        r->started = TRUE;
        r->sse = eb_sse_start(req->msg, code_run_on_client_gone, r);
        /* The kernel's events carry the daemon's clock and may predate this reply: init takes
         * the time of the call, so no event of the stream is older than it. */
        j = eb_sse_begin_event(r->sse, "init");
        eb_json_key(j, "text");
        eb_json_string(j, r->id);
        eb_sse_frame_end(j, r->called_ms);
        eb_sse_flush(r->sse);
        return 0;
}

static void code_run_execute(EbRequest *req, CodeRun *r) {
        r->target = (EbSignalTarget) { code_run_on_signal, code_run_on_daemon_gone, r };
        /* Watch before the call, so no event of the run can slip past. */
        eb_server_watch_object(r->server, r->path, &r->target);
        req->data = r;
        req->data_free = (GDestroyNotify) code_run_free;
        r->called_ms = eb_now_ms();
        eb_request_call(req, r->path, EB_CONTEXT_INTERFACE, "Execute", on_execute_reply, "s", r->code);
}

static int on_default_context_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        CodeRun *r = g_steal_pointer(&req->data);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *path;

        if (e || sd_bus_message_read(reply, "o", &path) < 0) {
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, "CONTEXT_NOT_FOUND");
                eb_request_finish(req);
                code_run_free(r);
                return 0;
        }
        r->id = g_strdup(strrchr(path, '/') + 1);
        if (g_str_has_prefix(path, EB_SESSION_PREFIX)) {
                eb_session_run_code(r->server, req->msg, r->id, r->code);
                code_run_free(r);
                return 0;
        }
        r->path = g_strdup(path);
        code_run_execute(req, r);
        return 0;
}

void eb_route_code_run(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(EbRequest) req = NULL;
        JsonObject *o = eb_parse_object_body(msg, &parser), *context = NULL;
        const char *code, *id = NULL, *language = NULL;
        gboolean bad = FALSE;
        JsonNode *n;
        CodeRun *r;

        if (!o)
                return;
        code = string_member(o, "code", &bad);
        n = eb_json_object_get_ci(o, "context");
        if (n && JSON_NODE_HOLDS_OBJECT(n))
                context = json_node_get_object(n);
        else if (n && !JSON_NODE_HOLDS_NULL(n))
                bad = TRUE;
        id = string_member(context, "id", &bad);
        language = string_member(context, "language", &bad);
        if (bad || !code || !*code) {
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY",
                               "invalid request, validation error 'code' must be a non-empty string and 'context' an "
                               "object of strings");
                return;
        }
        if (!eb_server_stream_begin(s, msg))
                return;
        if ((!id || !*id) && (!language || !*language)) {
                /* No language: a plain shell command, as the reference runs it. */
                eb_command_run_code(s, msg, code);
                return;
        }
        if (id && *id && !eb_is_object_id(id)) {
                reply_context_not_found(msg, id);
                return;
        }
        r = g_new0(CodeRun, 1);
        r->server = s;
        r->code = g_strdup(code);
        req = eb_request_new(s, msg);
        if (id && *id) {
                r->id = g_strdup(id);
                r->path = g_strconcat(EB_CONTEXT_PREFIX, id, NULL);
                code_run_execute(req, r);
                return;
        }
        req->data = r;
        req->data_free = (GDestroyNotify) code_run_free;
        {
                g_autofree char *lower = g_ascii_strdown(language, -1);
                eb_request_call(req, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "DefaultContext", on_default_context_reply,
                                "s", lower);
        }
}
