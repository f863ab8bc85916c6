/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>

#include "eb-bus-source.h"
#include "eb-conn.h"
#include "eb-files.h"
#include "eb-routes.h"
#include "eb-server.h"

#define RECONNECT_SECONDS 1

static const EbRoute routes[] = {
        { "GET", "/ping", eb_route_ping },
        { "POST", "/command", eb_route_command_run },
        { "DELETE", "/command", eb_route_command_interrupt },
        { "GET", "/command/status/*", eb_route_command_status },
        { "GET", "/command/*/logs", eb_route_command_logs },
        { "DELETE", "/code", eb_route_command_interrupt },
        { "POST", "/code", eb_route_code_run },
        { "POST", "/code/context", eb_route_code_context_create },
        { "GET", "/code/contexts", eb_route_code_contexts_list },
        { "DELETE", "/code/contexts", eb_route_code_contexts_delete },
        { "GET", "/code/contexts/*", eb_route_code_context_get },
        { "DELETE", "/code/contexts/*", eb_route_code_context_delete },
        { "POST", "/session", eb_route_session_create },
        { "POST", "/session/*/run", eb_route_session_run },
        { "DELETE", "/session/*", eb_route_session_delete },
        { "GET", "/metrics", eb_route_metrics },
        { "GET", "/metrics/watch", eb_route_metrics_watch },
        { "GET", "/files/info", eb_route_files_info },
        { "DELETE", "/files", eb_route_files_delete },
        { "POST", "/files/permissions", eb_route_files_permissions },
        { "POST", "/files/mv", eb_route_files_move },
        { "GET", "/files/search", eb_route_files_search },
        { "POST", "/files/replace", eb_route_files_replace },
        { "POST", "/files/upload", eb_route_files_upload },
        { "GET", "/files/download", eb_route_files_download },
        { "GET", "/directories/list", eb_route_directories_list },
        { "POST", "/directories", eb_route_directories_create },
        { "DELETE", "/directories", eb_route_directories_delete },
};

struct EbServer {
        SoupServer *soup;
        char *bus_address;
        char *token;
        sd_bus *bus;
        GSource *bus_source;
        guint reconnect_id;
        GHashTable *targets; /* object path -> GPtrArray of EbSignalTarget* (not owned) */
        char *daemon_owner;  /* unique name owning org.execd.Execd1, NULL when none */
        GData *areas;
        GPtrArray *api_keys;
        EbConnManager *conns;
        guint64 max_json_body, max_upload;
        guint max_streams, max_streams_per_client;
        guint streams;              /* open stream slots */
        GHashTable *client_streams; /* client -> slots (GUINT_TO_POINTER) */
        GHashTable *slots;          /* StreamSlot* held */
};

guint64 eb_server_max_json_body(EbServer *s) {
        return s->max_json_body;
}

guint64 eb_server_max_upload(EbServer *s) {
        return s->max_upload;
}

void eb_server_reply_body_too_large(EbServer *s, SoupServerMessage *msg, EbApi api) {
        g_autofree char *text = g_strdup_printf("the request body is larger than %" G_GUINT64_FORMAT " bytes",
                                                s->max_json_body);

        /* The rest of a refused body is not worth reading. */
        soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection", "close");
        if (api == EB_API_ENVIRONMENT)
                eb_reply_error(msg, EB_API_ENVIRONMENT, 413, "payload_too_large", text);
        else
                eb_reply_error(msg, EB_API_EXECD, 413, "REQUEST_TOO_LARGE", text);
}

/* ---- stream slots ---- */

#define STREAM_SLOT_KEY "eb-stream-slot"

typedef struct {
        EbServer *server;
        char *client;
        gulong finished_id;
        SoupServerMessage *msg;
} StreamSlot;

static void stream_slot_release(StreamSlot *slot) {
        EbServer *s = slot->server;
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(s->client_streams, slot->client));

        s->streams--;
        g_hash_table_remove(s->slots, slot);
        if (n <= 1)
                g_hash_table_remove(s->client_streams, slot->client);
        else
                g_hash_table_insert(s->client_streams, g_strdup(slot->client), GUINT_TO_POINTER(n - 1));
}

static void stream_slot_free(gpointer data) {
        StreamSlot *slot = data;

        if (slot->server)
                stream_slot_release(slot);
        g_free(slot->client);
        g_free(slot);
}

static void on_stream_finished(SoupServerMessage *msg, gpointer user_data) {
        StreamSlot *slot = user_data;

        /* Released now, freed with the message. */
        g_clear_signal_handler(&slot->finished_id, msg);
        if (slot->server) {
                stream_slot_release(slot);
                slot->server = NULL;
        }
}

gboolean eb_server_stream_begin(EbServer *s, SoupServerMessage *msg) {
        const char *client = eb_conn_message_client(msg);
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(s->client_streams, client));
        const char *text = NULL;
        StreamSlot *slot;

        if (g_object_get_data(G_OBJECT(msg), STREAM_SLOT_KEY))
                return TRUE;
        if (s->max_streams && s->streams >= s->max_streams)
                text = "too many concurrent streams";
        else if (s->max_streams_per_client && n >= s->max_streams_per_client)
                text = "too many concurrent streams from this client";
        if (text) {
                soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Retry-After", "1");
                eb_reply_error(msg, EB_API_EXECD, 429, "LIMITS_EXCEEDED", text);
                return FALSE;
        }
        slot = g_new0(StreamSlot, 1);
        slot->server = s;
        slot->client = g_strdup(client);
        s->streams++;
        g_hash_table_insert(s->client_streams, g_strdup(client), GUINT_TO_POINTER(n + 1));
        g_hash_table_add(s->slots, slot);
        slot->finished_id = g_signal_connect(msg, "finished", G_CALLBACK(on_stream_finished), slot);
        g_object_set_data_full(G_OBJECT(msg), STREAM_SLOT_KEY, slot, stream_slot_free);
        return TRUE;
}

GPtrArray *eb_server_api_keys(EbServer *s) {
        return s->api_keys;
}

static gboolean is_environment_route(SoupServerMessage *msg) {
        return g_str_has_prefix(g_uri_get_path(soup_server_message_get_uri(msg)), "/api/");
}

gboolean eb_server_daemon_present(EbServer *s) {
        return s->bus && s->daemon_owner;
}

gpointer eb_server_get_area(EbServer *s, const char *area) {
        return g_datalist_get_data(&s->areas, area);
}

void eb_server_set_area(EbServer *s, const char *area, gpointer data, GDestroyNotify free_func) {
        g_datalist_set_data_full(&s->areas, area, data, free_func);
}

sd_bus *eb_server_bus(EbServer *s) {
        return s->bus;
}

void eb_server_watch_object(EbServer *s, const char *path, EbSignalTarget *target) {
        GPtrArray *list = g_hash_table_lookup(s->targets, path);

        if (!list) {
                list = g_ptr_array_new();
                g_hash_table_insert(s->targets, g_strdup(path), list);
        }
        g_ptr_array_add(list, target);
}

void eb_server_unwatch_object(EbServer *s, const char *path, EbSignalTarget *target) {
        GPtrArray *list = g_hash_table_lookup(s->targets, path);

        if (list && g_ptr_array_remove(list, target) && list->len == 0)
                g_hash_table_remove(s->targets, path);
}

static gboolean target_is_watched(EbServer *s, const char *path, EbSignalTarget *target) {
        GPtrArray *list = g_hash_table_lookup(s->targets, path);

        return list && g_ptr_array_find(list, target, NULL);
}

static void notify_daemon_gone(EbServer *s) {
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) all = g_ptr_array_new();
        GHashTableIter iter;
        gpointer path, list;

        /* A snapshot: each target unwatches itself (and may free others) while being told. */
        g_hash_table_iter_init(&iter, s->targets);
        while (g_hash_table_iter_next(&iter, &path, &list))
                for (guint i = 0; i < ((GPtrArray *) list)->len; i++) {
                        g_ptr_array_add(paths, g_strdup(path));
                        g_ptr_array_add(all, g_ptr_array_index((GPtrArray *) list, i));
                }
        for (guint i = 0; i < all->len; i++) {
                EbSignalTarget *t = g_ptr_array_index(all, i);
                if (target_is_watched(s, g_ptr_array_index(paths, i), t) && t->on_daemon_gone)
                        t->on_daemon_gone(t->data);
        }
}

static void set_daemon_owner(EbServer *s, const char *owner) {
        g_free(s->daemon_owner);
        s->daemon_owner = owner && *owner ? g_strdup(owner) : NULL;
}

/* Every signal the daemon sends us is unicast; only the current owner of the daemon's name
 * is believed, so another bus client cannot forge a command's output. */
static int on_bus_message(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        EbServer *s = userdata;
        const char *path, *sender;
        EbSignalTarget *t;

        if (!sd_bus_message_is_signal(m, NULL, NULL))
                return 0;
        sender = sd_bus_message_get_sender(m);
        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus", "NameOwnerChanged") &&
            g_strcmp0(sender, "org.freedesktop.DBus") == 0) {
                const char *name, *old_owner, *new_owner;
                if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 &&
                    strcmp(name, EB_BUS_NAME) == 0) {
                        set_daemon_owner(s, new_owner);
                        if (*old_owner) {
                                g_message("the execd daemon %s left the bus", old_owner);
                                notify_daemon_gone(s);
                        }
                }
                (void) sd_bus_message_rewind(m, 1);
                return 0;
        }
        path = sd_bus_message_get_path(m);
        if (!path || !sender || !s->daemon_owner || strcmp(sender, s->daemon_owner) != 0)
                return 0;
        {
                GPtrArray *list = g_hash_table_lookup(s->targets, path);
                g_autoptr(GPtrArray) snapshot = NULL;
                g_autofree char *owned_path = NULL;

                if (!list)
                        return 0;
                if (list->len == 1) {
                        t = g_ptr_array_index(list, 0);
                        t->on_signal(m, t->data);
                        return 0;
                }
                /* Several requests watch one object (runs on one context): each may unwatch. */
                snapshot = g_ptr_array_copy(list, NULL, NULL);
                owned_path = g_strdup(path);
                for (guint i = 0; i < snapshot->len; i++) {
                        t = g_ptr_array_index(snapshot, i);
                        if (!target_is_watched(s, owned_path, t))
                                continue;
                        (void) sd_bus_message_rewind(m, 1);
                        t->on_signal(m, t->data);
                }
        }
        return 0;
}

static gboolean reconnect(gpointer user_data);

static gboolean on_bus_disconnected(gpointer user_data) {
        EbServer *s = user_data;

        g_warning("lost the bus connection; reconnecting every %d s", RECONNECT_SECONDS);
        notify_daemon_gone(s);
        g_clear_pointer(&s->bus_source, g_source_unref);
        s->bus = sd_bus_flush_close_unref(s->bus);
        if (!s->reconnect_id)
                s->reconnect_id = g_timeout_add_seconds(RECONNECT_SECONDS, reconnect, s);
        return G_SOURCE_REMOVE;
}

static int connect_bus(EbServer *s, GError **error) {
        sd_bus *bus = NULL;
        int k;

        if (!s->bus_address)
                k = sd_bus_open_system(&bus);
        else if (strcmp(s->bus_address, "session") == 0)
                k = sd_bus_open_user(&bus);
        else {
                k = sd_bus_new(&bus);
                if (k >= 0)
                        k = sd_bus_set_address(bus, s->bus_address);
                if (k >= 0)
                        k = sd_bus_set_bus_client(bus, 1);
                if (k >= 0)
                        k = sd_bus_start(bus);
        }
        if (k >= 0)
                k = sd_bus_add_filter(bus, NULL, on_bus_message, s);
        if (k >= 0)
                k = sd_bus_add_match(bus, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                                     "member='NameOwnerChanged',arg0='" EB_BUS_NAME "'", NULL, NULL);
        if (k < 0) {
                sd_bus_unref(bus);
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-k), "Failed to connect to the bus: %s",
                            g_strerror(-k));
                return k;
        }
        s->bus = bus;
        {
                /* Once, at connect time; NameOwnerChanged keeps it current afterwards. */
                sd_bus_creds *creds = NULL;
                const char *unique = NULL;
                if (sd_bus_get_name_creds(bus, EB_BUS_NAME, SD_BUS_CREDS_UNIQUE_NAME, &creds) >= 0 &&
                    sd_bus_creds_get_unique_name(creds, &unique) >= 0)
                        set_daemon_owner(s, unique);
                else
                        set_daemon_owner(s, NULL);
                sd_bus_creds_unref(creds);
        }
        s->bus_source = eb_bus_source_new(bus, on_bus_disconnected, s);
        g_source_attach(s->bus_source, NULL);
        return 0;
}

static gboolean reconnect(gpointer user_data) {
        EbServer *s = user_data;
        g_autoptr(GError) error = NULL;

        if (connect_bus(s, &error) < 0)
                return G_SOURCE_CONTINUE;
        g_message("reconnected to the bus");
        s->reconnect_id = 0;
        return G_SOURCE_REMOVE;
}

gboolean eb_is_object_id(const char *s) {
        gsize n = 0;

        for (; s[n]; n++)
                if (!g_ascii_isdigit(s[n]) && !(s[n] >= 'a' && s[n] <= 'f'))
                        return FALSE;
        return n == 32;
}

JsonNode *eb_json_object_get_ci(JsonObject *o, const char *name) {
        JsonObjectIter iter;
        const char *member;
        JsonNode *node;

        node = json_object_get_member(o, name);
        if (node)
                return node;
        json_object_iter_init(&iter, o);
        while (json_object_iter_next(&iter, &member, &node))
                if (g_ascii_strcasecmp(member, name) == 0)
                        return node;
        return NULL;
}

JsonObject *eb_parse_object_body(SoupServerMessage *msg, JsonParser **ret_parser) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GBytes) body = soup_message_body_flatten(soup_server_message_get_request_body(msg));
        g_autoptr(GError) error = NULL;
        g_autofree char *message = NULL;
        gsize len;
        const char *data = g_bytes_get_data(body, &len);
        JsonNode *root;

        if (len == 0)
                message = g_strdup("error parsing request, MAYBE invalid body format. EOF");
        else if (eb_json_text_has_nul_escape(data, len))
                message = g_strdup("error parsing request, MAYBE invalid body format. "
                                   "strings must not contain NUL characters or unpaired surrogates");
        else if (eb_json_text_has_trailing_value(data, len))
                message = g_strdup("error parsing request, MAYBE invalid body format. "
                                   "invalid character after top-level value");
        else if (!json_parser_load_from_data(parser, data, (gssize) len, &error))
                message = g_strdup_printf("error parsing request, MAYBE invalid body format. %s", error->message);
        else if (!(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                message = g_strdup("error parsing request, MAYBE invalid body format. the body must be a JSON object");
        if (message) {
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", message);
                return NULL;
        }
        *ret_parser = g_steal_pointer(&parser);
        return json_node_get_object(json_parser_get_root(*ret_parser));
}

static void on_request_finished(SoupServerMessage *msg, gpointer user_data) {
        EbRequest *r = user_data;

        r->gone = TRUE;
        /* Dropping the slot cancels the pending call; its callback will not run. */
        if (r->slot && !r->finish_call_when_gone) {
                r->slot = sd_bus_slot_unref(r->slot);
                eb_request_unref(r); /* the reference the call held */
        }
}

EbRequest *eb_request_new(EbServer *server, SoupServerMessage *msg) {
        EbRequest *r = g_new0(EbRequest, 1);

        r->ref = 1;
        r->server = server;
        r->msg = g_object_ref(msg);
        r->finished_id = g_signal_connect(msg, "finished", G_CALLBACK(on_request_finished), r);
        soup_server_message_pause(msg);
        return r;
}

EbRequest *eb_request_ref(EbRequest *r) {
        r->ref++;
        return r;
}

void eb_request_unref(EbRequest *r) {
        if (!r || --r->ref > 0)
                return;
        g_clear_signal_handler(&r->finished_id, r->msg);
        sd_bus_slot_unref(r->slot);
        g_object_unref(r->msg);
        if (r->body)
                g_string_free(r->body, TRUE);
        if (r->data && r->data_free)
                r->data_free(r->data);
        g_free(r->id);
        g_free(r);
}

void eb_request_finish(EbRequest *r) {
        if (!r->gone)
                soup_server_message_unpause(r->msg);
}

int eb_server_new_call(EbServer *s, sd_bus_message **ret, const char *path, const char *interface,
                       const char *member) {
        if (!s->bus)
                return -ENOTCONN;
        return sd_bus_message_new_method_call(s->bus, ret, EB_BUS_NAME, path, interface, member);
}

gboolean eb_request_send(EbRequest *req, sd_bus_message *m, int prepare_error, sd_bus_message_handler_t callback) {
        int k = prepare_error;

        if (k >= 0 && m)
                k = sd_bus_call_async(req->server->bus, &req->slot, m, callback, req, 0);
        sd_bus_message_unref(m);
        if (k < 0) {
                g_autofree char *text = g_strdup_printf("the execd daemon is not available: %s", g_strerror(-k));
                if (req->api == EB_API_ENVIRONMENT)
                        eb_reply_error(req->msg, req->api, 502, "bad_gateway", text);
                else
                        eb_reply_error(req->msg, EB_API_EXECD, 503, "SERVICE_UNAVAILABLE", text);
                eb_request_finish(req);
                return FALSE;
        }
        eb_request_ref(req); /* held by the pending call, dropped by the callback */
        return TRUE;
}

EbRequest *eb_request_take_reply(void *userdata) {
        EbRequest *r = userdata;

        r->slot = sd_bus_slot_unref(r->slot);
        return r;
}

gboolean eb_request_call(EbRequest *req, const char *path, const char *interface, const char *member,
                         sd_bus_message_handler_t callback, const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;
        int k;

        k = eb_server_new_call(req->server, &m, path, interface, member);
        if (k >= 0 && types) {
                va_start(ap, types);
                k = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        return eb_request_send(req, m, k, callback);
}

static gboolean token_equal(const char *given, const char *expected) {
        gsize n = strlen(expected), m = given ? strlen(given) : 0;
        guint8 diff = n != m;

        /* Constant time in the length of the expected token. */
        for (gsize i = 0; i < n; i++)
                diff |= (guint8) ((i < m ? given[i] : 0) ^ expected[i]);
        return given && diff == 0;
}

static gboolean check_early(EbServer *s, SoupServerMessage *msg) {
        SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
        const char *token = soup_message_headers_get_one(h, "X-EXECD-ACCESS-TOKEN");

        /* The environments API authenticates with its own API keys, in its own envelope. */
        if (is_environment_route(msg)) {
                if (soup_message_headers_get_encoding(h) == SOUP_ENCODING_CONTENT_LENGTH &&
                    (guint64) soup_message_headers_get_content_length(h) > s->max_json_body) {
                        eb_server_reply_body_too_large(s, msg, EB_API_ENVIRONMENT);
                        return FALSE;
                }
                return TRUE;
        }
        if (!token_equal(token, s->token)) {
                GString *out = g_string_new(
                        "{\"error\":\"Unauthorized: invalid or missing header X-EXECD-ACCESS-TOKEN\","
                        "\"code\":\"UNAUTHORIZED\",\"message\":\"invalid or missing header X-EXECD-ACCESS-TOKEN\"}");
                eb_reply_json(msg, 401, out);
                return FALSE;
        }
        /* Uploads stream to disk as they arrive; every other body is JSON and read whole. */
        if (!eb_files_is_upload(msg) && soup_message_headers_get_encoding(h) == SOUP_ENCODING_CONTENT_LENGTH &&
            (guint64) soup_message_headers_get_content_length(h) > s->max_json_body) {
                eb_server_reply_body_too_large(s, msg, EB_API_EXECD);
                return FALSE;
        }
        return TRUE;
}

#define BODY_TOO_LARGE_KEY "eb-body-too-large"

/* A body without Content-Length (chunked): counted as it comes; beyond the cap the rest is
 * read and dropped, and the answer is 413. */
static void on_body_chunk(SoupServerMessage *msg, GBytes *chunk, gpointer user_data) {
        EbServer *s = user_data;
        SoupMessageBody *body = soup_server_message_get_request_body(msg);

        if (g_object_get_data(G_OBJECT(msg), BODY_TOO_LARGE_KEY))
                return;
        if ((guint64) body->length > s->max_json_body) {
                g_object_set_data(G_OBJECT(msg), BODY_TOO_LARGE_KEY, GINT_TO_POINTER(1));
                soup_message_body_set_accumulate(body, FALSE);
                soup_message_body_truncate(body);
        }
}

/* Decided once the headers are in, so a refused request's body is never read. */
static void on_got_headers(SoupServerMessage *msg, gpointer user_data) {
        if (!check_early(user_data, msg))
                return;
        if (eb_files_is_upload(msg))
                eb_files_upload_begin(user_data, msg);
        else if (soup_message_headers_get_encoding(soup_server_message_get_request_headers(msg)) != SOUP_ENCODING_CONTENT_LENGTH)
                g_signal_connect(msg, "got-chunk", G_CALLBACK(on_body_chunk), user_data);
}

static void on_request_started(SoupServer *server, SoupServerMessage *msg, gpointer user_data) {
        g_signal_connect(msg, "got-headers", G_CALLBACK(on_got_headers), user_data);
}

static gboolean pattern_match(const char *pattern, const char *path, const char **param_start, gsize *param_len) {
        *param_start = NULL;
        *param_len = 0;
        while (*pattern) {
                if (*pattern == '*') {
                        const char *end = strchr(path, '/');
                        gsize n = end ? (gsize) (end - path) : strlen(path);
                        if (n == 0)
                                return FALSE;
                        *param_start = path;
                        *param_len = n;
                        path += n;
                        pattern++;
                        continue;
                }
                if (*pattern++ != *path++)
                        return FALSE;
        }
        return *path == 0;
}

static void handle_request(SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
                           gpointer user_data) {
        EbServer *s = user_data;
        const char *method = soup_server_message_get_method(msg);
        g_autoptr(GString) allow = NULL;

        if (soup_server_message_get_status(msg) != 0)
                return; /* refused in got-headers */
        if (!check_early(s, msg))
                return;
        if (g_object_get_data(G_OBJECT(msg), BODY_TOO_LARGE_KEY) ||
            (!eb_files_is_upload(msg) && (guint64) soup_server_message_get_request_body(msg)->length > s->max_json_body)) {
                eb_server_reply_body_too_large(s, msg, is_environment_route(msg) ? EB_API_ENVIRONMENT : EB_API_EXECD);
                return;
        }
        if (is_environment_route(msg)) {
                eb_route_environments(s, msg, path);
                return;
        }

        for (gsize i = 0; i < G_N_ELEMENTS(routes); i++) {
                const char *param;
                gsize param_len;

                if (!pattern_match(routes[i].pattern, path, &param, &param_len))
                        continue;
                if (strcmp(routes[i].method, method) != 0) {
                        if (!allow)
                                allow = g_string_new(NULL);
                        g_string_append_printf(allow, "%s%s", allow->len ? ", " : "", routes[i].method);
                        continue;
                }
                {
                        g_autofree char *p = param ? g_strndup(param, param_len) : NULL;
                        routes[i].handler(s, msg, p, query);
                }
                return;
        }
        if (allow) {
                g_autofree char *text = g_strdup_printf("method %s is not allowed on %s", method, path);
                soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", allow->str);
                eb_reply_error(msg, EB_API_EXECD, 405, "METHOD_NOT_ALLOWED", text);
                return;
        }
        {
                g_autofree char *text = g_strdup_printf("no route for %s %s", method, path);
                eb_reply_error(msg, EB_API_EXECD, 404, "NOT_FOUND", text);
        }
}

/* Bursts of clients (hundreds of concurrent streams) must queue in the kernel, not be
 * dropped: GSocket's default backlog is 10. */
#define LISTEN_BACKLOG 4096

static gboolean listen_on(EbConnManager *conns, const char *listen, GError **error) {
        g_autoptr(GSocketAddress) address = NULL;
        g_autoptr(GSocket) socket = NULL;
        g_autofree char *host = NULL;
        const char *colon = strrchr(listen, ':');
        guint64 port;

        if (!colon || !g_ascii_string_to_unsigned(colon + 1, 10, 0, 65535, &port, NULL)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid listen address '%s' (want HOST:PORT)", listen);
                return FALSE;
        }
        host = g_strndup(listen, (gsize) (colon - listen));
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                memmove(host, host + 1, strlen(host));
                host[strlen(host) - 1] = 0;
        }
        address = g_inet_socket_address_new_from_string(host, (guint) port);
        if (!address) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid listen host '%s'", host);
                return FALSE;
        }
        socket = g_socket_new(g_socket_address_get_family(address), G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, error);
        if (!socket)
                return FALSE;
        g_socket_set_listen_backlog(socket, LISTEN_BACKLOG);
        if (!g_socket_bind(socket, address, TRUE, error) || !g_socket_listen(socket, error))
                return FALSE;
        return eb_conn_manager_add_listener(conns, g_steal_pointer(&socket), error);
}

/* Socket activation: systemd bound them (with the socket unit's Backlog=) and keeps them
 * across restarts of the bridge. */
static gboolean listen_on_fds(EbConnManager *conns, int n, GError **error) {
        for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
                g_autoptr(GSocket) socket = NULL;
                int k = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);

                if (k <= 0) {
                        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                    "Descriptor %d passed by systemd (LISTEN_FDS) is not a listening stream socket%s%s",
                                    fd, k < 0 ? ": " : "", k < 0 ? g_strerror(-k) : "");
                        return FALSE;
                }
                socket = g_socket_new_from_fd(fd, error);
                if (!socket || !eb_conn_manager_add_listener(conns, g_steal_pointer(&socket), error))
                        return FALSE;
        }
        return TRUE;
}

EbServer *eb_server_new(const EbServerOptions *options, GError **error) {
        EbServer *s = g_new0(EbServer, 1);
        g_autoptr(GError) bus_error = NULL;
        GSList *listeners;
        EbConnLimits limits = {
                .max_connections = options->max_connections,
                .max_connections_per_client = options->max_connections_per_client,
                .header_timeout = options->header_timeout,
                .idle_timeout = options->idle_timeout,
        };

        s->max_json_body = options->max_json_body ? options->max_json_body : G_MAXUINT64;
        s->max_upload = options->max_upload;
        s->max_streams = options->max_streams;
        s->max_streams_per_client = options->max_streams_per_client;
        s->client_streams = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        s->slots = g_hash_table_new(NULL, NULL);
        s->bus_address = g_strdup(options->bus_address);
        s->token = g_strdup(options->token);
        s->api_keys = options->api_keys;
        s->targets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_ptr_array_unref);
        s->soup = soup_server_new("server-header", NULL, NULL);
        soup_server_add_handler(s->soup, NULL, handle_request, s, NULL);
        g_signal_connect(s->soup, "request-started", G_CALLBACK(on_request_started), s);

        s->conns = eb_conn_manager_new(s->soup, &limits, error);
        if (!s->conns || (options->listen_fds > 0 ? !listen_on_fds(s->conns, options->listen_fds, error)
                                                  : !listen_on(s->conns, options->listen, error))) {
                eb_server_free(s);
                return NULL;
        }
        /* A missing bus is not fatal: requests answer 503 until the connection is back. */
        if (connect_bus(s, &bus_error) < 0) {
                g_warning("%s; retrying every %d s", bus_error->message, RECONNECT_SECONDS);
                s->reconnect_id = g_timeout_add_seconds(RECONNECT_SECONDS, reconnect, s);
        }

        /* Not soup_server_get_uris(): it assumes IP sockets, and systemd may pass AF_UNIX ones. */
        listeners = eb_conn_manager_get_listeners(s->conns);
        for (GSList *l = listeners; l; l = l->next) {
                g_autoptr(GSocketAddress) address = g_socket_get_local_address(l->data, NULL);
                g_autofree char *where = address ? g_socket_connectable_to_string(G_SOCKET_CONNECTABLE(address)) : NULL;
                gboolean inet = G_IS_INET_SOCKET_ADDRESS(address);

                /* The address line is what scripts and tests wait for. */
                g_print("execd-bridge: listening on %s%s%s%s\n", inet ? "http://" : "unix:", where ? where : "?",
                        inet ? "/" : "", options->listen_fds > 0 ? " (socket from systemd)" : "");
        }
        return s;
}

void eb_server_free(EbServer *s) {
        if (!s)
                return;
        g_datalist_clear(&s->areas);
        g_clear_handle_id(&s->reconnect_id, g_source_remove);
        if (s->bus_source) {
                g_source_destroy(s->bus_source);
                g_source_unref(s->bus_source);
        }
        sd_bus_flush_close_unref(s->bus);
        /* Closes the server's connections (it holds a reference to the server). */
        eb_conn_manager_free(s->conns);
        g_clear_object(&s->soup);
        g_hash_table_unref(s->targets);
        if (s->slots) {
                /* Messages may outlive the server: their slots must not touch it. */
                GHashTableIter iter;
                gpointer slot;
                g_hash_table_iter_init(&iter, s->slots);
                while (g_hash_table_iter_next(&iter, &slot, NULL))
                        ((StreamSlot *) slot)->server = NULL;
                g_hash_table_unref(s->slots);
        }
        if (s->client_streams)
                g_hash_table_unref(s->client_streams);
        g_free(s->daemon_owner);
        g_free(s->bus_address);
        g_free(s->token);
        if (s->api_keys)
                g_ptr_array_unref(s->api_keys);
        g_free(s);
}
