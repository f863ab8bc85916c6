/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON file and directory routes: each is one call to org.execd.Execd1.Files. Upload and
 * download, which stream, are in eb-routes-transfer.c. */
#include <string.h>

#include "eb-files.h"
#include "eb-routes.h"

/* ---- shared helpers ---- */

static char *decode_component(const char *s, gsize len, gboolean *bad) {
        g_autofree char *plus = g_strndup(s, len);
        char *out;

        g_strdelimit(plus, "+", ' ');
        out = g_uri_unescape_segment(plus, NULL, NULL);
        if (!out)
                *bad = TRUE;
        return out;
}

char **eb_query_values(SoupServerMessage *msg, const char *name, gboolean *bad) {
        const char *q = g_uri_get_query(soup_server_message_get_uri(msg));
        g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
        gsize name_len = strlen(name);

        *bad = FALSE;
        while (q && *q) {
                const char *amp = strchr(q, '&');
                const char *end = amp ? amp : q + strlen(q);
                const char *eq = memchr(q, '=', (gsize) (end - q));
                const char *key_end = eq ? eq : end;
                g_autofree char *key = decode_component(q, (gsize) (key_end - q), bad);

                if (*bad)
                        return NULL;
                if (key && strlen(key) == name_len && memcmp(key, name, name_len) == 0) {
                        char *value = eq ? decode_component(eq + 1, (gsize) (end - eq - 1), bad) : g_strdup("");
                        /* D-Bus carries only UTF-8 strings. */
                        if (!*bad && !g_utf8_validate(value, -1, NULL)) {
                                g_free(value);
                                *bad = TRUE;
                        }
                        if (*bad)
                                return NULL;
                        g_ptr_array_add(out, value);
                }
                q = amp ? amp + 1 : end;
        }
        g_ptr_array_add(out, NULL);
        return (char **) g_ptr_array_free(g_steal_pointer(&out), FALSE);
}

char *eb_query_value(SoupServerMessage *msg, const char *name, gboolean *bad) {
        g_auto(GStrv) all = eb_query_values(msg, name, bad);

        return all && all[0] ? g_strdup(all[0]) : NULL;
}

static void reply_bad_query(SoupServerMessage *msg) {
        eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY",
                       "invalid query string: a value is not UTF-8, holds a NUL byte or a broken %-escape");
}

gboolean eb_parse_mode(JsonNode *node, guint32 *ret, char **error) {
        gint64 v, digits;
        guint32 mode = 0, shift = 0;

        *ret = 0;
        if (!node || JSON_NODE_HOLDS_NULL(node))
                return TRUE;
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64) {
                *error = g_strdup("invalid mode: want an integer of octal digits such as 755");
                return FALSE;
        }
        v = json_node_get_int(node);
        if (v < 0 || v > 7777) {
                *error = g_strdup_printf("invalid mode %" G_GINT64_FORMAT ": want octal digits from 0 to 7777", v);
                return FALSE;
        }
        for (digits = v; digits > 0; digits /= 10, shift += 3) {
                if (digits % 10 > 7) {
                        *error = g_strdup_printf("invalid mode %" G_GINT64_FORMAT ": digits 8 and 9 are not octal", v);
                        return FALSE;
                }
                mode |= (guint32) (digits % 10) << shift;
        }
        *ret = mode;
        return TRUE;
}

gboolean eb_parse_optional_string(JsonNode *node, const char **ret) {
        *ret = "";
        if (!node || JSON_NODE_HOLDS_NULL(node))
                return TRUE;
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
                return FALSE;
        *ret = json_node_get_string(node);
        return TRUE;
}

int eb_write_file_info(sd_bus_message *m, EbJson *j) {
        const char *path, *type, *owner, *group;
        uint64_t size;
        int64_t mtime, ctime;
        uint32_t mode;
        int k;

        k = sd_bus_message_read(m, EB_FILE_INFO, &path, &type, &size, &mtime, &ctime, &owner, &group, &mode);
        if (k <= 0)
                return k;
        eb_json_begin_object(j);
        eb_json_key(j, "path");
        eb_json_string(j, path);
        eb_json_key(j, "type");
        eb_json_string(j, type);
        eb_json_key(j, "size");
        eb_json_int(j, (gint64) size);
        eb_json_key(j, "modified_at");
        eb_json_time_ns(j, mtime);
        eb_json_key(j, "created_at");
        eb_json_time_ns(j, ctime);
        eb_json_key(j, "owner");
        eb_json_string(j, owner);
        eb_json_key(j, "group");
        eb_json_string(j, group);
        /* The API writes the nine permission bits' octal digits as a decimal integer. */
        eb_json_key(j, "mode");
        eb_json_int(j, ((mode >> 6) & 7) * 100 + ((mode >> 3) & 7) * 10 + (mode & 7));
        eb_json_end_object(j);
        return 1;
}

void eb_reply_files_error(SoupServerMessage *msg, const sd_bus_error *e) {
        eb_reply_bus_error(msg, EB_API_EXECD, e, "FILE_NOT_FOUND");
}

static int on_empty_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                eb_reply_files_error(req->msg, e);
        else
                eb_reply_empty(req->msg, SOUP_STATUS_OK);
        eb_request_finish(req);
        return 0;
}

/* The end of every JSON reply callback: the body built from the daemon's answer, or 500 when
 * that answer could not be read (k < 0). */
static void finish_json(EbRequest *req, int k, GString *out) {
        if (k < 0) {
                g_autofree char *text = g_strdup_printf("cannot read the daemon's reply: %s", g_strerror(-k));
                g_string_free(out, TRUE);
                eb_reply_error(req->msg, EB_API_EXECD, 500, "RUNTIME_ERROR", text);
        } else
                eb_reply_json(req->msg, SOUP_STATUS_OK, out);
        eb_request_finish(req);
}

/* A call whose only argument is the request's repeated `path` parameters. */
static void call_with_paths(EbServer *s, SoupServerMessage *msg, const char *member, char **paths,
                            sd_bus_message_handler_t callback, gpointer data, GDestroyNotify data_free) {
        g_autoptr(EbRequest) req = eb_request_new(s, msg);
        sd_bus_message *m = NULL;
        int k;

        req->data = data;
        req->data_free = data_free;
        k = eb_server_new_call(s, &m, EB_FILES_PATH, EB_FILES_INTERFACE, member);
        if (k >= 0)
                k = sd_bus_message_append_strv(m, paths);
        eb_request_send(req, m, k, callback);
}

/* ---- GET /files/info ---- */

static int on_stat_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        char **asked = req->data;
        g_autoptr(GString) out = NULL;
        EbJson j;
        int k;

        if (e) {
                eb_reply_files_error(req->msg, e);
                eb_request_finish(req);
                return 0;
        }
        out = g_string_sized_new(256);
        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        k = sd_bus_message_enter_container(reply, 'a', EB_FILE_INFO);
        /* Keyed by the path as the client spelled it; the cleaned path is inside. */
        for (gsize i = 0; k >= 0 && asked[i]; i++) {
                eb_json_key(&j, asked[i]);
                k = eb_write_file_info(reply, &j);
                if (k == 0)
                        k = -EBADMSG;
        }
        eb_json_end_object(&j);
        finish_json(req, k, g_steal_pointer(&out));
        return 0;
}

void eb_route_files_info(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        gboolean bad;
        char **paths = eb_query_values(msg, "path", &bad);

        if (bad) {
                reply_bad_query(msg);
                return;
        }
        if (!paths[0]) {
                g_strfreev(paths);
                eb_reply_json(msg, SOUP_STATUS_OK, g_string_new("{}"));
                return;
        }
        call_with_paths(s, msg, "Stat", paths, on_stat_reply, paths, (GDestroyNotify) g_strfreev);
}

/* ---- DELETE /files and DELETE /directories ---- */

static void remove_paths(EbServer *s, SoupServerMessage *msg, const char *member) {
        gboolean bad;
        char **paths = eb_query_values(msg, "path", &bad);

        if (bad) {
                reply_bad_query(msg);
                return;
        }
        if (!paths[0]) {
                g_strfreev(paths);
                eb_reply_empty(msg, SOUP_STATUS_OK);
                return;
        }
        call_with_paths(s, msg, member, paths, on_empty_reply, paths, (GDestroyNotify) g_strfreev);
}

void eb_route_files_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        remove_paths(s, msg, "RemoveFiles");
}

void eb_route_directories_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        remove_paths(s, msg, "RemoveDirectories");
}

/* ---- POST /files/permissions and POST /directories: {"<path>": {mode, owner, group}} ---- */

static void call_with_modes(EbServer *s, SoupServerMessage *msg, const char *member) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(EbRequest) req = NULL;
        JsonObject *body = eb_parse_object_body(msg, &parser);
        JsonObjectIter iter;
        const char *path;
        JsonNode *node;
        sd_bus_message *m = NULL;
        int k;

        if (!body)
                return;
        req = eb_request_new(s, msg);
        k = eb_server_new_call(s, &m, EB_FILES_PATH, EB_FILES_INTERFACE, member);
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "(suss)");
        json_object_iter_init(&iter, body);
        while (k >= 0 && json_object_iter_next(&iter, &path, &node)) {
                g_autofree char *problem = NULL;
                const char *owner, *group;
                JsonObject *o;
                guint32 mode;

                o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
                if (!o && !JSON_NODE_HOLDS_NULL(node))
                        problem = g_strdup("want an object with mode, owner and group");
                else if (!eb_parse_mode(o ? eb_json_object_get_ci(o, "mode") : NULL, &mode, &problem))
                        ;
                else if (!eb_parse_optional_string(o ? eb_json_object_get_ci(o, "owner") : NULL, &owner) ||
                         !eb_parse_optional_string(o ? eb_json_object_get_ci(o, "group") : NULL, &group))
                        problem = g_strdup("owner and group must be strings");
                if (problem) {
                        g_autofree char *text = g_strdup_printf("error parsing request, MAYBE invalid body format. %s: %s",
                                                                path, problem);
                        sd_bus_message_unref(m);
                        eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", text);
                        eb_request_finish(req);
                        return;
                }
                k = sd_bus_message_append(m, "(suss)", path, mode, owner, group);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        eb_request_send(req, m, k, on_empty_reply);
}

void eb_route_files_permissions(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        call_with_modes(s, msg, "SetPermissions");
}

void eb_route_directories_create(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        call_with_modes(s, msg, "MakeDirectories");
}

/* ---- POST /files/mv: [{"src", "dest"}] ---- */

static void reply_bad_body(SoupServerMessage *msg, const char *detail) {
        g_autofree char *text = g_strdup_printf("error parsing request, MAYBE invalid body format. %s", detail);
        eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", text);
}

void eb_route_files_move(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GBytes) bytes = soup_message_body_flatten(soup_server_message_get_request_body(msg));
        g_autoptr(GError) error = NULL;
        g_autoptr(EbRequest) req = NULL;
        gsize len;
        const char *data = g_bytes_get_data(bytes, &len);
        JsonNode *root;
        JsonArray *items;
        sd_bus_message *m = NULL;
        int k;

        if (len == 0) {
                reply_bad_body(msg, "EOF");
                return;
        }
        if (eb_json_text_has_nul_escape(data, len)) {
                reply_bad_body(msg, "strings must not contain NUL characters or unpaired surrogates");
                return;
        }
        if (eb_json_text_has_trailing_value(data, len)) {
                reply_bad_body(msg, "invalid character after top-level value");
                return;
        }
        if (!json_parser_load_from_data(parser, data, (gssize) len, &error)) {
                reply_bad_body(msg, error->message);
                return;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_ARRAY(root)) {
                reply_bad_body(msg, "the body must be a JSON array of {\"src\", \"dest\"} objects");
                return;
        }
        items = json_node_get_array(root);
        for (guint i = 0; i < json_array_get_length(items); i++) {
                JsonNode *item = json_array_get_element(items, i);
                const char *src, *dest;
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(item) ? json_node_get_object(item) : NULL;

                if (!o || !eb_parse_optional_string(eb_json_object_get_ci(o, "src"), &src) ||
                    !eb_parse_optional_string(eb_json_object_get_ci(o, "dest"), &dest) || !*src || !*dest) {
                        reply_bad_body(msg, "every item needs non-empty \"src\" and \"dest\" strings");
                        return;
                }
        }

        req = eb_request_new(s, msg);
        k = eb_server_new_call(s, &m, EB_FILES_PATH, EB_FILES_INTERFACE, "Move");
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "(ss)");
        for (guint i = 0; k >= 0 && i < json_array_get_length(items); i++) {
                JsonObject *o = json_array_get_object_element(items, i);
                const char *src, *dest;
                (void) eb_parse_optional_string(eb_json_object_get_ci(o, "src"), &src);
                (void) eb_parse_optional_string(eb_json_object_get_ci(o, "dest"), &dest);
                k = sd_bus_message_append(m, "(ss)", src, dest);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        eb_request_send(req, m, k, on_empty_reply);
}

/* ---- GET /files/search ---- */

static int on_entries_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autoptr(GString) out = NULL;
        EbJson j;
        int k;

        if (e) {
                eb_reply_files_error(req->msg, e);
                eb_request_finish(req);
                return 0;
        }
        out = g_string_sized_new(4096);
        eb_json_init(&j, out);
        eb_json_begin_array(&j);
        k = sd_bus_message_enter_container(reply, 'a', EB_FILE_INFO);
        while (k >= 0 && (k = eb_write_file_info(reply, &j)) > 0)
                ;
        eb_json_end_array(&j);
        finish_json(req, k, g_steal_pointer(&out));
        return 0;
}

static gboolean required_path(SoupServerMessage *msg, char **ret) {
        gboolean bad;
        char *path = eb_query_value(msg, "path", &bad);

        if (bad) {
                reply_bad_query(msg);
                return FALSE;
        }
        if (!path || !*path) {
                g_free(path);
                eb_reply_error(msg, EB_API_EXECD, 400, "MISSING_QUERY", "missing query parameter 'path'");
                return FALSE;
        }
        *ret = path;
        return TRUE;
}

void eb_route_files_search(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autofree char *path = NULL, *pattern = NULL;
        g_autoptr(EbRequest) req = NULL;
        gboolean bad;

        if (!required_path(msg, &path))
                return;
        pattern = eb_query_value(msg, "pattern", &bad);
        if (bad) {
                reply_bad_query(msg);
                return;
        }
        req = eb_request_new(s, msg);
        eb_request_call(req, EB_FILES_PATH, EB_FILES_INTERFACE, "Search", on_entries_reply, "ss", path,
                        pattern ? pattern : "");
}

/* ---- GET /directories/list ---- */

void eb_route_directories_list(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autofree char *path = NULL, *depth_text = NULL;
        g_autoptr(EbRequest) req = NULL;
        guint64 depth = 1;
        gboolean bad;

        if (!required_path(msg, &path))
                return;
        depth_text = eb_query_value(msg, "depth", &bad);
        if (bad) {
                reply_bad_query(msg);
                return;
        }
        if (depth_text && *depth_text && !g_ascii_string_to_unsigned(depth_text, 10, 0, G_MAXINT32, &depth, NULL)) {
                g_autofree char *text = g_strdup_printf("invalid query parameter 'depth': %s", depth_text);
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", text);
                return;
        }
        req = eb_request_new(s, msg);
        eb_request_call(req, EB_FILES_PATH, EB_FILES_INTERFACE, "List", on_entries_reply, "su", path,
                        (guint32) depth);
}

/* ---- POST /files/replace ---- */

typedef struct {
        char **paths; /* as the client spelled them, in body order */
        gboolean verbose;
} ReplaceState;

static void replace_state_free(ReplaceState *r) {
        g_strfreev(r->paths);
        g_free(r);
}

static int on_replace_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        ReplaceState *r = req->data;
        g_autoptr(GString) out = NULL;
        EbJson j;
        int k;

        if (e || !r->verbose) {
                if (e)
                        eb_reply_files_error(req->msg, e);
                else
                        eb_reply_empty(req->msg, SOUP_STATUS_OK);
                eb_request_finish(req);
                return 0;
        }
        out = g_string_sized_new(256);
        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        k = sd_bus_message_enter_container(reply, 'a', "u");
        for (gsize i = 0; k >= 0 && r->paths[i]; i++) {
                uint32_t count = 0;
                k = sd_bus_message_read(reply, "u", &count);
                eb_json_key(&j, r->paths[i]);
                eb_json_begin_object(&j);
                eb_json_key(&j, "replacedCount");
                eb_json_int(&j, count);
                eb_json_end_object(&j);
        }
        eb_json_end_object(&j);
        finish_json(req, k, g_steal_pointer(&out));
        return 0;
}

void eb_route_files_replace(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(EbRequest) req = NULL;
        g_autofree char *verbose = NULL;
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        JsonObject *body;
        JsonObjectIter iter;
        const char *path;
        JsonNode *node;
        ReplaceState *r;
        sd_bus_message *m = NULL;
        gboolean bad;
        int k;

        verbose = eb_query_value(msg, "verbose", &bad);
        if (bad) {
                reply_bad_query(msg);
                return;
        }
        body = eb_parse_object_body(msg, &parser);
        if (!body)
                return;
        json_object_iter_init(&iter, body);
        while (json_object_iter_next(&iter, &path, &node)) {
                JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
                const char *old, *new_text;
                if (!o || !eb_parse_optional_string(eb_json_object_get_ci(o, "old"), &old) ||
                    !eb_parse_optional_string(eb_json_object_get_ci(o, "new"), &new_text)) {
                        g_autofree char *text = g_strdup_printf("%s: want an object with \"old\" and \"new\" strings", path);
                        reply_bad_body(msg, text);
                        return;
                }
                if (!*old) {
                        g_autofree char *text = g_strdup_printf("old content must not be empty (%s)", path);
                        eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY", text);
                        return;
                }
                g_ptr_array_add(paths, g_strdup(path));
        }
        g_ptr_array_add(paths, NULL);

        r = g_new0(ReplaceState, 1);
        r->verbose = g_strcmp0(verbose, "true") == 0;
        r->paths = (char **) g_ptr_array_free(g_steal_pointer(&paths), FALSE);
        req = eb_request_new(s, msg);
        req->data = r;
        req->data_free = (GDestroyNotify) replace_state_free;
        k = eb_server_new_call(s, &m, EB_FILES_PATH, EB_FILES_INTERFACE, "Replace");
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "(sss)");
        json_object_iter_init(&iter, body);
        while (k >= 0 && json_object_iter_next(&iter, &path, &node)) {
                JsonObject *o = json_node_get_object(node);
                const char *old, *new_text;
                (void) eb_parse_optional_string(eb_json_object_get_ci(o, "old"), &old);
                (void) eb_parse_optional_string(eb_json_object_get_ci(o, "new"), &new_text);
                k = sd_bus_message_append(m, "(sss)", path, old, new_text);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        eb_request_send(req, m, k, on_replace_reply);
}
