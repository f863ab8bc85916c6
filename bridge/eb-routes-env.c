/* SPDX-License-Identifier: Apache-2.0 */
/* /api/v1/org/{org}/ws/{ws}/environments…: seed 004's task environments, on the daemon's
 * Environment objects. Authenticated by API keys (Authorization: Bearer, or X-API-Key), and
 * for execute also by the environment's token, which the daemon checks. Every answer, errors
 * included, uses the canonical envelope {code, detail, type[, errors]}. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "eb-routes.h"

#define EB_ENVIRONMENT_PREFIX "/org/execd/Execd1/environment/"
#define EB_ENVIRONMENT_INTERFACE "org.execd.Execd1.Environment"
#define TIMEOUT_DEFAULT 30
/* Beyond the command's own timeout, how long the daemon may take before the answer is 504. */
#define EXECUTE_GRACE_SEC 15

/* ---- API keys ---- */

static void api_key_free(EbApiKey *k) {
        g_free(k->key);
        g_strfreev(k->orgs);
        g_free(k);
}

GPtrArray *eb_api_keys_load(const char *path, GError **error) {
        g_autoptr(GPtrArray) keys = g_ptr_array_new_with_free_func((GDestroyNotify) api_key_free);
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        struct stat st;

        if (stat(path, &st) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "cannot read the API keys file %s: %s", path,
                            g_strerror(errno));
                return NULL;
        }
        if (st.st_mode & 077) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                            "the API keys file %s must not be readable by group or others (chmod 600)", path);
                return NULL;
        }
        if (!g_file_get_contents(path, &text, NULL, error))
                return NULL;
        lines = g_strsplit(text, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) fields = NULL;
                EbApiKey *k;
                char *line = g_strstrip(*l);

                if (!*line || *line == '#')
                        continue;
                fields = g_strsplit_set(line, " \t", 2);
                k = g_new0(EbApiKey, 1);
                k->key = g_strdup(fields[0]);
                if (fields[1] && *g_strstrip(fields[1]))
                        k->orgs = g_strsplit(fields[1], ",", -1);
                g_ptr_array_add(keys, k);
        }
        return g_steal_pointer(&keys);
}

static gboolean secret_equal(const char *given, const char *expected) {
        gsize n = strlen(expected), m = strlen(given);
        guint8 diff = n != m;

        for (gsize i = 0; i < n; i++)
                diff |= (guint8) ((i < m ? given[i] : 0) ^ expected[i]);
        return diff == 0;
}

/* ---- envelopes ---- */

static void reply_env_error(SoupServerMessage *msg, guint status, const char *type, const char *detail) {
        eb_reply_error(msg, EB_API_ENVIRONMENT, status, type, detail);
}

typedef struct {
        GString *errors; /* the errors array's items, already JSON */
        guint n;
} Validation;

static void validation_add(Validation *v, const char *field, const char *msg, const char *type) {
        EbJson j;

        if (!v->errors)
                v->errors = g_string_new(NULL);
        if (v->n++)
                g_string_append_c(v->errors, ',');
        eb_json_init(&j, v->errors);
        eb_json_begin_object(&j);
        eb_json_key(&j, "loc");
        eb_json_begin_array(&j);
        eb_json_string(&j, "body");
        if (field)
                eb_json_string(&j, field);
        eb_json_end_array(&j);
        eb_json_key(&j, "msg");
        eb_json_string(&j, msg);
        eb_json_key(&j, "type");
        eb_json_string(&j, type);
        eb_json_end_object(&j);
}

static gboolean validation_reply(SoupServerMessage *msg, Validation *v) {
        GString *out;
        EbJson j;

        if (!v->n)
                return FALSE;
        out = g_string_sized_new(256);
        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        eb_json_key(&j, "code");
        eb_json_int(&j, 422);
        eb_json_key(&j, "detail");
        eb_json_string(&j, "Validation error");
        eb_json_key(&j, "type");
        eb_json_string(&j, "validation_error");
        eb_json_end_object(&j);
        /* Splice the errors array in before the closing brace. */
        g_string_truncate(out, out->len - 1);
        g_string_append(out, ",\"errors\":[");
        g_string_append_len(out, v->errors->str, (gssize) v->errors->len);
        g_string_append(out, "]}");
        g_string_free(v->errors, TRUE);
        eb_reply_json(msg, 422, out);
        return TRUE;
}

static void reply_bus_error(SoupServerMessage *msg, const sd_bus_error *e) {
        const EbErrorMapping *m = eb_error_lookup(e ? e->name : NULL);

        if (m->status == 429)
                soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Retry-After", "1");
        eb_reply_bus_error(msg, EB_API_ENVIRONMENT, e, NULL);
}

/* ---- where environments live ---- */

/* id -> "org/ws" of environments seen in a listing, so an execute need not list again. The
 * daemon stays the authority: an id it no longer knows answers UnknownObject (404). Bounded:
 * cleared when it grows past the cap. */
#define KNOWN_MAX 4096
static GHashTable *known;

static void known_set(const char *id, const char *org, const char *ws) {
        if (!known)
                known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        if (g_hash_table_size(known) >= KNOWN_MAX)
                g_hash_table_remove_all(known);
        g_hash_table_replace(known, g_strdup(id), g_strconcat(org, "/", ws, NULL));
}

static gboolean known_in(const char *id, const char *org, const char *ws) {
        const char *where = known ? g_hash_table_lookup(known, id) : NULL;
        g_autofree char *want = g_strconcat(org, "/", ws, NULL);

        return where && strcmp(where, want) == 0;
}

static void known_forget(const char *id) {
        if (known)
                g_hash_table_remove(known, id);
}

/* ---- request state ---- */

typedef enum { OP_LIST, OP_GET, OP_DELETE, OP_EXECUTE, OP_PROVISION } Op;

typedef struct {
        Op op;
        char *org, *ws, *id;
        char *token;   /* the environment token (execute) or the new one (provision) */
        char *command;
        guint32 timeout_sec;
} EnvRequest;

static void env_request_free(EnvRequest *r) {
        if (r->token)
                explicit_bzero(r->token, strlen(r->token));
        g_free(r->org);
        g_free(r->ws);
        g_free(r->id);
        g_free(r->token);
        g_free(r->command);
        g_free(r);
}

/* One environment from ListEnvironments' (ssssxasu), as the API shows it; FALSE at the end. */
static int write_environment(sd_bus_message *m, EbJson *j, const char *want_id, const char *token) {
        const char *id, *org, *ws, *name;
        int64_t created;
        uint32_t running;
        char **env = NULL;
        int k;

        k = sd_bus_message_enter_container(m, 'r', "ssssxasu");
        if (k <= 0)
                return k;
        k = sd_bus_message_read(m, "ssssx", &id, &org, &ws, &name, &created);
        if (k >= 0)
                k = sd_bus_message_read_strv(m, &env);
        if (k >= 0)
                k = sd_bus_message_read(m, "u", &running);
        if (k >= 0)
                k = sd_bus_message_exit_container(m);
        if (k < 0) {
                g_strfreev(env);
                return k;
        }
        if (want_id && strcmp(want_id, id) != 0) {
                g_strfreev(env);
                return 2; /* not this one */
        }
        eb_json_begin_object(j);
        eb_json_key(j, "id");
        eb_json_string(j, id);
        eb_json_key(j, "org");
        eb_json_string(j, org);
        eb_json_key(j, "workspace");
        eb_json_string(j, ws);
        eb_json_key(j, "name");
        eb_json_string(j, name);
        eb_json_key(j, "created_at");
        eb_json_time_ns(j, created * 1000000);
        eb_json_key(j, "state");
        eb_json_string(j, running ? "running" : "ready");
        eb_json_key(j, "env");
        eb_json_begin_object(j);
        for (char **v = env; v && *v; v++) {
                const char *eq = strchr(*v, '=');
                g_autofree char *name_part = eq ? g_strndup(*v, (gsize) (eq - *v)) : g_strdup(*v);
                eb_json_key(j, name_part);
                eb_json_string(j, eq ? eq + 1 : "");
        }
        eb_json_end_object(j);
        if (token) {
                eb_json_key(j, "token");
                eb_json_string(j, token);
        }
        eb_json_end_object(j);
        g_strfreev(env);
        return 1;
}

static int on_delete_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        EnvRequest *r = req->data;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        known_forget(r->id);
        if (e)
                reply_bus_error(req->msg, e);
        else {
                GString *out = g_string_new(NULL);
                EbJson j;
                eb_json_init(&j, out);
                eb_json_begin_object(&j);
                eb_json_key(&j, "id");
                eb_json_string(&j, r->id);
                eb_json_key(&j, "deleted");
                eb_json_bool(&j, TRUE);
                eb_json_end_object(&j);
                eb_reply_json(req->msg, 200, out);
        }
        eb_request_finish(req);
        return 0;
}

static int on_execute_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        EnvRequest *r = req->data;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int32_t exit_code;
        const void *output;
        size_t size;
        int truncated, timed_out;

        if (e && (sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_OBJECT) ||
                  sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD))) {
                g_autofree char *text = g_strdup_printf("environment %s not found in %s/%s", r->id, r->org, r->ws);
                known_forget(r->id);
                reply_env_error(req->msg, 404, "not_found", text);
        } else if (e)
                reply_bus_error(req->msg, e);
        else if (sd_bus_message_read(reply, "i", &exit_code) < 0 ||
                 sd_bus_message_read_array(reply, 'y', &output, &size) < 0 ||
                 sd_bus_message_read(reply, "bb", &truncated, &timed_out) < 0)
                reply_env_error(req->msg, 500, "internal_error", "cannot read the daemon's answer");
        else {
                GString *out = g_string_sized_new(size + 128);
                EbJson j;
                eb_json_init(&j, out);
                eb_json_begin_object(&j);
                eb_json_key(&j, "exit_code");
                eb_json_int(&j, exit_code);
                eb_json_key(&j, "output");
                eb_json_string_len(&j, output, size);
                eb_json_key(&j, "truncated");
                eb_json_bool(&j, truncated);
                eb_json_key(&j, "timed_out");
                eb_json_bool(&j, timed_out);
                eb_json_end_object(&j);
                eb_reply_json(req->msg, 200, out);
        }
        eb_request_finish(req);
        return 0;
}

static void call_execute(EbRequest *req, EnvRequest *r) {
        g_autofree char *path = g_strconcat(EB_ENVIRONMENT_PREFIX, r->id, NULL);
        sd_bus_message *m = NULL;
        int k = eb_server_new_call(req->server, &m, path, EB_ENVIRONMENT_INTERFACE, "Execute");

        if (k >= 0)
                k = sd_bus_message_append(m, "ssu", r->token, r->command, r->timeout_sec);
        /* The daemon answers when the command ends: allow its timeout plus a grace. */
        if (k >= 0) {
                k = sd_bus_call_async(eb_server_bus(req->server), &req->slot, m, on_execute_reply, eb_request_ref(req),
                                      ((uint64_t) r->timeout_sec + EXECUTE_GRACE_SEC) * G_USEC_PER_SEC);
                if (k < 0)
                        eb_request_unref(req);
        }
        sd_bus_message_unref(m);
        if (k < 0) {
                reply_env_error(req->msg, 502, "bad_gateway", "the execd daemon is not available");
                eb_request_finish(req);
        }
}

/* Every operation on one environment first finds it among its org/ws's, so an id of another
 * org or workspace is simply not found. */
static int on_list_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        EnvRequest *r = req->data;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        g_autoptr(GString) out = g_string_sized_new(512);
        gboolean found = FALSE;
        EbJson j;
        int k;

        if (e) {
                reply_bus_error(req->msg, e);
                eb_request_finish(req);
                return 0;
        }
        eb_json_init(&j, out);
        if (r->op == OP_LIST) {
                eb_json_begin_object(&j);
                eb_json_key(&j, "environments");
                eb_json_begin_array(&j);
        }
        k = sd_bus_message_enter_container(reply, 'a', "(ssssxasu)");
        while (k >= 0 && (k = write_environment(reply, &j, r->op == OP_LIST ? NULL : r->id,
                                                r->op == OP_PROVISION ? r->token : NULL)) > 0)
                if (k == 1 && r->op != OP_LIST) {
                        found = TRUE;
                        break;
                }
        if (r->op == OP_LIST) {
                eb_json_end_array(&j);
                eb_json_end_object(&j);
        }
        if (k < 0) {
                reply_env_error(req->msg, 500, "internal_error", "cannot read the daemon's answer");
                eb_request_finish(req);
                return 0;
        }
        if (found && r->id)
                known_set(r->id, r->org, r->ws);
        if (r->op != OP_LIST && !found) {
                g_autofree char *text = g_strdup_printf("environment %s not found in %s/%s", r->id, r->org, r->ws);
                reply_env_error(req->msg, 404, "not_found", text);
                eb_request_finish(req);
                return 0;
        }
        switch (r->op) {
        case OP_LIST:
        case OP_GET:
                eb_reply_json(req->msg, 200, g_steal_pointer(&out));
                break;
        case OP_PROVISION:
                eb_reply_json(req->msg, 201, g_steal_pointer(&out));
                break;
        case OP_DELETE: {
                g_autofree char *path = g_strconcat(EB_ENVIRONMENT_PREFIX, r->id, NULL);
                eb_request_call(req, path, EB_ENVIRONMENT_INTERFACE, "Delete", on_delete_reply, NULL);
                return 0;
        }
        case OP_EXECUTE:
                call_execute(req, r);
                return 0;
        }
        eb_request_finish(req);
        return 0;
}

static void list_then(EbServer *s, SoupServerMessage *msg, EnvRequest *r) {
        g_autoptr(EbRequest) req = eb_request_new(s, msg);

        req->api = EB_API_ENVIRONMENT;
        req->data = r;
        req->data_free = (GDestroyNotify) env_request_free;
        eb_request_call(req, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "ListEnvironments", on_list_reply, "ss", r->org,
                        r->ws);
}

static int on_provision_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        EnvRequest *r = req->data;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *path, *id, *token;

        if (e || sd_bus_message_read(reply, "oss", &path, &id, &token) < 0) {
                reply_bus_error(req->msg, e);
                eb_request_finish(req);
                return 0;
        }
        r->id = g_strdup(id);
        r->token = g_strdup(token);
        eb_request_call(req, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "ListEnvironments", on_list_reply, "ss", r->org,
                        r->ws);
        return 0;
}

/* ---- bodies ---- */

static JsonObject *parse_body(SoupServerMessage *msg, JsonParser *parser) {
        g_autoptr(GBytes) bytes = soup_message_body_flatten(soup_server_message_get_request_body(msg));
        g_autoptr(GError) error = NULL;
        gsize len;
        const char *data = g_bytes_get_data(bytes, &len);
        JsonNode *root;

        /* Bodies beyond --max-json-body were refused (413) before any route ran. */
        if (len == 0 || eb_json_text_has_nul_escape(data, len) || eb_json_text_has_trailing_value(data, len) ||
            !json_parser_load_from_data(parser, data, (gssize) len, &error)) {
                g_autofree char *text = g_strdup_printf("malformed JSON body%s%s", error ? ": " : "",
                                                        error ? error->message : "");
                reply_env_error(msg, 400, "invalid_request", text);
                return NULL;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                Validation v = {};
                validation_add(&v, NULL, "the body must be a JSON object", "model_attributes_type");
                validation_reply(msg, &v);
                return NULL;
        }
        return json_node_get_object(root);
}

static gboolean is_string(JsonNode *n) {
        return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING;
}

/* -1 or 1 when the integer written for member in the raw body does not fit 64 bits (by its
 * sign), 0 when it does (or cannot be found). */
static int raw_integer_range(SoupServerMessage *msg, const char *member, gint64 *ret) {
        g_autoptr(GBytes) bytes = soup_message_body_flatten(soup_server_message_get_request_body(msg));
        g_autofree char *key = g_strdup_printf("\"%s\"", member);
        g_autofree char *text = g_strndup(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes));
        const char *p = strstr(text, key), *start;
        g_autofree char *number = NULL;

        if (!p)
                return 0;
        p += strlen(key);
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':')
                p++;
        start = p;
        if (*p == '-')
                p++;
        while (g_ascii_isdigit(*p))
                p++;
        number = g_strndup(start, (gsize) (p - start));
        if (g_ascii_string_to_signed(number, 10, G_MININT64, G_MAXINT64, ret, NULL))
                return 0;
        return *start == '-' ? -1 : 1;
}

static void route_execute(EbServer *s, SoupServerMessage *msg, EnvRequest *r) {
        SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
        const char *token = soup_message_headers_get_one(h, "X-Environment-Token");
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        JsonObject *o;
        JsonObjectIter iter;
        const char *member;
        JsonNode *node;
        Validation v = {};

        if (token && g_ascii_strncasecmp(token, "Bearer ", 7) == 0)
                token += 7;
        if (!token || !*token) {
                reply_env_error(msg, 401, "authentication_error", "missing X-Environment-Token");
                env_request_free(r);
                return;
        }
        o = parse_body(msg, parser);
        if (!o) {
                env_request_free(r);
                return;
        }
        node = json_object_get_member(o, "command");
        if (!node)
                validation_add(&v, "command", "Field required", "missing");
        else if (!is_string(node))
                validation_add(&v, "command", "Input should be a valid string", "string_type");
        else if (!*json_node_get_string(node))
                validation_add(&v, "command", "String should have at least 1 character", "string_too_short");
        r->timeout_sec = TIMEOUT_DEFAULT;
        node = json_object_get_member(o, "timeout_sec");
        if (node && !JSON_NODE_HOLDS_NULL(node)) {
                gint64 t = 0;
                int range = 0;

                if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64)
                        validation_add(&v, "timeout_sec", "Input should be a valid integer", "int_type");
                else {
                        /* json-glib wraps integers beyond 64 bits; the text says what was sent. */
                        range = raw_integer_range(msg, "timeout_sec", &t);
                        if (range < 0 || (range == 0 && json_node_get_int(node) < 1))
                                validation_add(&v, "timeout_sec", "Input should be greater than or equal to 1",
                                               "greater_than_equal");
                        else if (range > 0 || json_node_get_int(node) > 600)
                                validation_add(&v, "timeout_sec", "Input should be less than or equal to 600",
                                               "less_than_equal");
                        else
                                r->timeout_sec = (guint32) json_node_get_int(node);
                }
        }
        json_object_iter_init(&iter, o);
        while (json_object_iter_next(&iter, &member, &node))
                if (strcmp(member, "command") != 0 && strcmp(member, "timeout_sec") != 0)
                        validation_add(&v, member, "Extra inputs are not permitted", "extra_forbidden");
        if (validation_reply(msg, &v)) {
                env_request_free(r);
                return;
        }
        r->command = g_strdup(json_object_get_string_member(o, "command"));
        r->token = g_strdup(token);
        if (known_in(r->id, r->org, r->ws)) {
                g_autoptr(EbRequest) req = eb_request_new(s, msg);
                req->api = EB_API_ENVIRONMENT;
                req->data = r;
                req->data_free = (GDestroyNotify) env_request_free;
                call_execute(req, r);
                return;
        }
        list_then(s, msg, r);
}

static gboolean slug_valid(const char *s) {
        gsize n = strlen(s);

        if (n == 0 || n > 64)
                return FALSE;
        for (; *s; s++)
                if (!g_ascii_isalnum(*s) && *s != '.' && *s != '_' && *s != '-')
                        return FALSE;
        return TRUE;
}

static void route_provision(EbServer *s, SoupServerMessage *msg, EnvRequest *r) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(EbRequest) req = NULL;
        JsonObject *o, *env = NULL;
        JsonObjectIter iter;
        const char *member;
        JsonNode *node;
        Validation v = {};
        sd_bus_message *m = NULL;
        int k;

        o = parse_body(msg, parser);
        if (!o) {
                env_request_free(r);
                return;
        }
        node = json_object_get_member(o, "name");
        if (!node)
                validation_add(&v, "name", "Field required", "missing");
        else if (!is_string(node))
                validation_add(&v, "name", "Input should be a valid string", "string_type");
        else if (!slug_valid(json_node_get_string(node)))
                validation_add(&v, "name", "String should be 1 to 64 characters of A-Z a-z 0-9 . _ -", "string_pattern_mismatch");
        node = json_object_get_member(o, "env");
        if (node && !JSON_NODE_HOLDS_NULL(node)) {
                if (!JSON_NODE_HOLDS_OBJECT(node))
                        validation_add(&v, "env", "Input should be a valid dictionary", "dict_type");
                else {
                        env = json_node_get_object(node);
                        json_object_iter_init(&iter, env);
                        while (json_object_iter_next(&iter, &member, &node)) {
                                gboolean name_ok = *member && !g_ascii_isdigit(*member);
                                for (const char *c = member; *c; c++)
                                        name_ok = name_ok && (g_ascii_isalnum(*c) || *c == '_');
                                if (!is_string(node))
                                        validation_add(&v, "env", "Values should be valid strings", "string_type");
                                else if (!name_ok)
                                        validation_add(&v, "env", "Variable names are letters, digits and _, not starting with a digit",
                                                       "string_pattern_mismatch");
                        }
                }
        }
        json_object_iter_init(&iter, o);
        while (json_object_iter_next(&iter, &member, &node))
                if (strcmp(member, "name") != 0 && strcmp(member, "env") != 0)
                        validation_add(&v, member, "Extra inputs are not permitted", "extra_forbidden");
        if (validation_reply(msg, &v)) {
                env_request_free(r);
                return;
        }

        req = eb_request_new(s, msg);
        req->api = EB_API_ENVIRONMENT;
        req->data = r;
        req->data_free = (GDestroyNotify) env_request_free;
        k = eb_server_new_call(s, &m, EB_MANAGER_PATH, EB_MANAGER_INTERFACE, "ProvisionEnvironment");
        if (k >= 0)
                k = sd_bus_message_append(m, "sss", r->org, r->ws, json_object_get_string_member(o, "name"));
        if (k >= 0)
                k = sd_bus_message_open_container(m, 'a', "{ss}");
        if (env) {
                json_object_iter_init(&iter, env);
                while (k >= 0 && json_object_iter_next(&iter, &member, &node))
                        k = sd_bus_message_append(m, "{ss}", member, json_node_get_string(node));
        }
        if (k >= 0)
                k = sd_bus_message_close_container(m);
        if (k < 0) {
                sd_bus_message_unref(m);
                if (k == -ENOTCONN) {
                        reply_env_error(msg, 502, "bad_gateway", "the execd daemon is not available");
                } else
                        reply_env_error(msg, 422, "validation_error", "the environment variables are not valid");
                eb_request_finish(req);
                return;
        }
        if (k >= 0)
                k = sd_bus_call_async(eb_server_bus(s), &req->slot, m, on_provision_reply, eb_request_ref(req), 0);
        sd_bus_message_unref(m);
        if (k < 0) {
                eb_request_unref(req);
                reply_env_error(msg, 502, "bad_gateway", "the execd daemon is not available");
                eb_request_finish(req);
        }
}

/* ---- the router ---- */

static gboolean authenticate(EbServer *s, SoupServerMessage *msg, const char *org) {
        SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
        const char *auth = soup_message_headers_get_one(h, "Authorization");
        const char *key = soup_message_headers_get_one(h, "X-API-Key");
        GPtrArray *keys = eb_server_api_keys(s);
        EbApiKey *match = NULL;

        if (!key && auth && g_ascii_strncasecmp(auth, "Bearer ", 7) == 0)
                key = auth + 7;
        if (!key || !*key) {
                reply_env_error(msg, 401, "authentication_error", "Authentication failed: no API key given");
                return FALSE;
        }
        /* Every key is compared, in constant time, so the timing says nothing about which. */
        for (guint i = 0; keys && i < keys->len; i++) {
                EbApiKey *k = g_ptr_array_index(keys, i);
                if (secret_equal(key, k->key) && !match)
                        match = k;
        }
        if (!match) {
                reply_env_error(msg, 401, "authentication_error", "Authentication failed");
                return FALSE;
        }
        if (match->orgs && !g_strv_contains((const char *const *) match->orgs, org)) {
                g_autofree char *text = g_strdup_printf("this API key may not act for org %s", org);
                reply_env_error(msg, 403, "forbidden", text);
                return FALSE;
        }
        return TRUE;
}

static void reply_method_not_allowed(SoupServerMessage *msg, const char *allow) {
        soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", allow);
        reply_env_error(msg, 405, "method_not_allowed", "method not allowed on this route");
}

void eb_route_environments(EbServer *s, SoupServerMessage *msg, const char *path) {
        SoupMessageHeaders *h = soup_server_message_get_request_headers(msg);
        const char *method = soup_server_message_get_method(msg);
        const char *version = soup_message_headers_get_one(h, "X-API-Version");
        g_auto(GStrv) seg = g_strsplit(path + 1, "/", -1);
        guint n = g_strv_length(seg);
        EnvRequest *r;

        /* The route: api v1 org {org} ws {ws} environments [{id} [execute]] */
        if (n < 7 || n > 9 || strcmp(seg[0], "api") != 0 || strcmp(seg[1], "v1") != 0 || strcmp(seg[2], "org") != 0 ||
            strcmp(seg[4], "ws") != 0 || strcmp(seg[6], "environments") != 0 || !*seg[3] || !*seg[5] ||
            (n >= 8 && !*seg[7]) || (n == 9 && strcmp(seg[8], "execute") != 0)) {
                g_autofree char *text = g_strdup_printf("no route for %s %s", method, path);
                reply_env_error(msg, 404, "not_found", text);
                return;
        }
        /* 426: this server speaks version 1 of the API; a client that asks for another must upgrade. */
        if (version && strcmp(version, "1") != 0) {
                g_autofree char *text = g_strdup_printf("API version %s is not supported; this server speaks version 1", version);
                soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Upgrade", "execd-api/1");
                reply_env_error(msg, 426, "upgrade_required", text);
                return;
        }
        if (n == 7 && strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0) {
                reply_method_not_allowed(msg, "GET, POST");
                return;
        }
        if (n == 8 && strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0) {
                reply_method_not_allowed(msg, "GET, DELETE");
                return;
        }
        if (n == 9 && strcmp(method, "POST") != 0) {
                reply_method_not_allowed(msg, "POST");
                return;
        }
        if (!authenticate(s, msg, seg[3]))
                return;
        if (!slug_valid(seg[3]) || !slug_valid(seg[5])) {
                reply_env_error(msg, 404, "not_found", "no such organization or workspace");
                return;
        }

        r = g_new0(EnvRequest, 1);
        r->org = g_strdup(seg[3]);
        r->ws = g_strdup(seg[5]);
        r->id = n >= 8 ? g_strdup(seg[7]) : NULL;
        if (n == 7 && strcmp(method, "POST") == 0) {
                r->op = OP_PROVISION;
                route_provision(s, msg, r);
        } else if (n == 7) {
                r->op = OP_LIST;
                list_then(s, msg, r);
        } else if (n == 8) {
                r->op = strcmp(method, "GET") == 0 ? OP_GET : OP_DELETE;
                list_then(s, msg, r);
        } else {
                r->op = OP_EXECUTE;
                route_execute(s, msg, r);
        }
}
