/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "eb-errors.h"
#include "eb-json.h"

static const EbErrorMapping error_table[] = {
        { "org.freedesktop.DBus.Error.InvalidArgs", 400, "INVALID_REQUEST_BODY", "validation_error" },
        { "org.execd.Execd1.Error.InvalidArgument", 400, "INVALID_REQUEST_BODY", "validation_error" },
        { "org.execd.Execd1.Error.InvalidPath", 400, "INVALID_REQUEST_BODY", "validation_error" },
        { "org.execd.Execd1.Error.IsDirectory", 400, "INVALID_REQUEST_BODY", "validation_error" },
        { "org.execd.Execd1.Error.NotDirectory", 400, "INVALID_REQUEST_BODY", "validation_error" },
        { "org.freedesktop.DBus.Error.AccessDenied", 403, "FORBIDDEN", "forbidden" },
        { "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", 403, "FORBIDDEN", "forbidden" },
        { "org.execd.Execd1.Error.NotOwner", 403, "FORBIDDEN", "forbidden" },
        { "org.execd.Execd1.Error.NotFound", 404, "NOT_FOUND", "not_found" },
        { "org.freedesktop.DBus.Error.UnknownObject", 404, "NOT_FOUND", "not_found" },
        { "org.execd.Execd1.Error.AlreadyExists", 409, "ALREADY_EXISTS", "conflict" },
        { "org.execd.Execd1.Error.Busy", 409, "BUSY", "conflict" },
        { "org.execd.Execd1.Error.RangeNotSatisfiable", 416, "RANGE_NOT_SATISFIABLE", "range_not_satisfiable" },
        { "org.execd.Execd1.Error.LimitsExceeded", 429, "LIMITS_EXCEEDED", "rate_limited" },
        { "org.freedesktop.DBus.Error.LimitsExceeded", 429, "LIMITS_EXCEEDED", "rate_limited" },
        { "org.freedesktop.DBus.Error.ServiceUnknown", 503, "SERVICE_UNAVAILABLE", "bad_gateway" },
        { "org.freedesktop.DBus.Error.NameHasNoOwner", 503, "SERVICE_UNAVAILABLE", "bad_gateway" },
        { "org.freedesktop.DBus.Error.Disconnected", 503, "SERVICE_UNAVAILABLE", "bad_gateway" },
        { "org.freedesktop.DBus.Error.NoReply", 504, "GATEWAY_TIMEOUT", "gateway_timeout" },
        { "org.freedesktop.DBus.Error.TimedOut", 504, "GATEWAY_TIMEOUT", "gateway_timeout" },
        { NULL, 500, "RUNTIME_ERROR", "internal_error" },
};

const EbErrorMapping *eb_error_lookup(const char *dbus_name) {
        const EbErrorMapping *m = error_table;

        for (; m->dbus_name; m++)
                if (dbus_name && strcmp(m->dbus_name, dbus_name) == 0)
                        break;
        return m;
}

guint eb_error_status(const EbErrorMapping *m, EbApi api) {
        if (m->status == 503 && api == EB_API_ENVIRONMENT)
                return 502;
        return m->status;
}

void eb_reply_json(SoupServerMessage *msg, guint status, GString *json) {
        gsize len = json->len;

        soup_server_message_set_status(msg, status, NULL);
        soup_server_message_set_response(msg, "application/json; charset=utf-8", SOUP_MEMORY_TAKE,
                                         g_string_free(json, FALSE), len);
}

void eb_reply_error(SoupServerMessage *msg, EbApi api, guint status, const char *code, const char *message) {
        GString *out = g_string_sized_new(128);
        EbJson j;

        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        if (api == EB_API_EXECD) {
                eb_json_key(&j, "code");
                eb_json_string(&j, code);
                eb_json_key(&j, "message");
                eb_json_string(&j, message);
        } else {
                eb_json_key(&j, "code");
                eb_json_int(&j, status);
                eb_json_key(&j, "detail");
                eb_json_string(&j, message);
                eb_json_key(&j, "type");
                eb_json_string(&j, code);
        }
        eb_json_end_object(&j);
        eb_reply_json(msg, status, out);
}

/* dbus-daemon answers the calls pending on a daemon that died with NoReply, like a timeout,
 * but with this text: that is a daemon gone (503/502), not a daemon too slow (504). */
static const char *bus_error_name(const sd_bus_error *e) {
        if (e && e->name && e->message && strcmp(e->name, "org.freedesktop.DBus.Error.NoReply") == 0 &&
            strstr(e->message, "recipient disconnected"))
                return "org.freedesktop.DBus.Error.Disconnected";
        return e ? e->name : NULL;
}

void eb_reply_bus_error(SoupServerMessage *msg, EbApi api, const sd_bus_error *error, const char *not_found_code) {
        const EbErrorMapping *m = eb_error_lookup(bus_error_name(error));
        guint status = eb_error_status(m, api);
        const char *code = api == EB_API_EXECD ? m->code : m->type;
        g_autofree char *message = NULL;

        if (status == 404 && not_found_code && api == EB_API_EXECD)
                code = not_found_code;
        if (m->status == 503)
                message = g_strdup_printf("the execd daemon is not available: %s",
                                          error && error->message ? error->message : "not on the bus");
        else
                message = g_strdup(error && error->message ? error->message : "internal error");
        eb_reply_error(msg, api, status, code, message);
}

void eb_reply_empty(SoupServerMessage *msg, guint status) {
        /* Content-Length: 0 and no Content-Type: the SDKs JSON-parse any other 200. */
        soup_server_message_set_status(msg, status, NULL);
        soup_message_headers_set_content_length(soup_server_message_get_response_headers(msg), 0);
}
