/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-bridge-fake.h"

static sd_bus *fake_bus;      /* open (authenticating), so messages can be built on it */
static sd_bus *closed_bus;    /* never started: sd_bus_call_async on it fails, as with no daemon */
static GPtrArray *api_keys;
static const char *current_method;
static GUri *current_uri;
static int fake_server_tag;

void fuzz_bridge_init(void) {
        int fds[2];

        setenv("G_SLICE", "always-malloc", 1);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0 || sd_bus_new(&fake_bus) < 0 ||
            sd_bus_set_fd(fake_bus, fds[0], fds[0]) < 0 || sd_bus_start(fake_bus) < 0 || sd_bus_new(&closed_bus) < 0) {
                fprintf(stderr, "fuzz: cannot set up the fake bus\n");
                abort();
        }
        api_keys = g_ptr_array_new();
        {
                EbApiKey *k = g_new0(EbApiKey, 1);
                k->key = g_strdup(FUZZ_API_KEY);
                g_ptr_array_add(api_keys, k);
        }
}

EbServer *fuzz_bridge_server(void) {
        return (EbServer *) &fake_server_tag;
}

SoupServerMessage *fuzz_bridge_message(const char *method, const char *uri, const guint8 *body, gsize len) {
        SoupServerMessage *msg = g_object_new(SOUP_TYPE_SERVER_MESSAGE, NULL);

        current_method = method;
        g_clear_pointer(&current_uri, g_uri_unref);
        current_uri = g_uri_parse(uri, G_URI_FLAGS_ENCODED, NULL);
        if (!current_uri)
                abort();
        if (len > 0)
                soup_message_body_append(soup_server_message_get_request_body(msg), SOUP_MEMORY_COPY, body, len);
        return msg;
}

void fuzz_bridge_done(SoupServerMessage *msg) {
        /* Every path through a route ends in a response (an error, or the fake send's 200). */
        if (soup_server_message_get_status(msg) == 0) {
                fprintf(stderr, "fuzz: the route left the request without a response\n");
                abort();
        }
        g_object_unref(msg);
        g_clear_pointer(&current_uri, g_uri_unref);
        current_method = NULL;
}

/* ---- libsoup getters that need the connection's request line ---- */

const char *__wrap_soup_server_message_get_method(SoupServerMessage *msg);
const char *__wrap_soup_server_message_get_method(SoupServerMessage *msg) {
        return current_method;
}

GUri *__wrap_soup_server_message_get_uri(SoupServerMessage *msg);
GUri *__wrap_soup_server_message_get_uri(SoupServerMessage *msg) {
        return current_uri;
}

/* ---- eb-server.c's request machinery ---- */

EbRequest *__wrap_eb_request_new(EbServer *server, SoupServerMessage *msg);
EbRequest *__wrap_eb_request_new(EbServer *server, SoupServerMessage *msg) {
        EbRequest *r = g_new0(EbRequest, 1);

        r->ref = 1;
        r->server = server;
        r->msg = g_object_ref(msg);
        return r;
}

EbRequest *__wrap_eb_request_ref(EbRequest *r);
EbRequest *__wrap_eb_request_ref(EbRequest *r) {
        r->ref++;
        return r;
}

void __wrap_eb_request_unref(EbRequest *r);
void __wrap_eb_request_unref(EbRequest *r) {
        if (!r || --r->ref > 0)
                return;
        sd_bus_slot_unref(r->slot);
        g_object_unref(r->msg);
        if (r->body)
                g_string_free(r->body, TRUE);
        if (r->data && r->data_free)
                r->data_free(r->data);
        g_free(r->id);
        g_free(r);
}

void __wrap_eb_request_finish(EbRequest *r);
void __wrap_eb_request_finish(EbRequest *r) {
}

int __wrap_eb_server_new_call(EbServer *s, sd_bus_message **ret, const char *path, const char *interface,
                              const char *member);
int __wrap_eb_server_new_call(EbServer *s, sd_bus_message **ret, const char *path, const char *interface,
                              const char *member) {
        return sd_bus_message_new_method_call(fake_bus, ret, EB_BUS_NAME, path, interface, member);
}

gboolean __wrap_eb_request_send(EbRequest *req, sd_bus_message *m, int prepare_error, sd_bus_message_handler_t callback);
gboolean __wrap_eb_request_send(EbRequest *req, sd_bus_message *m, int prepare_error, sd_bus_message_handler_t callback) {
        static uint64_t cookie;
        int k = prepare_error;

        /* What sd_bus_call_async would do first: a message with an open container or a bad
         * signature cannot be sealed, and would never reach the daemon. */
        if (k >= 0 && m)
                k = sd_bus_message_seal(m, ++cookie, 0);
        if (k >= 0 && !m)
                k = -EINVAL;
        if (k < 0 && k != -EINVAL) {
                fprintf(stderr, "fuzz: a route built a D-Bus call that cannot be sent: %s\n", strerror(-k));
                abort();
        }
        sd_bus_message_unref(m);
        if (k < 0) {
                /* -EINVAL: sd-bus refused a value (a string that is not UTF-8, say); the bridge
                 * answers 503/502 as the real eb_request_send does. */
                eb_reply_error(req->msg, req->api, req->api == EB_API_ENVIRONMENT ? 502 : 503,
                               req->api == EB_API_ENVIRONMENT ? "bad_gateway" : "SERVICE_UNAVAILABLE", "not sent");
                return FALSE;
        }
        /* Sent: the daemon's answer never comes here; the request is answered at once. */
        eb_reply_empty(req->msg, 200);
        return TRUE;
}

gboolean __wrap_eb_request_call(EbRequest *req, const char *path, const char *interface, const char *member,
                                sd_bus_message_handler_t callback, const char *types, ...);
gboolean __wrap_eb_request_call(EbRequest *req, const char *path, const char *interface, const char *member,
                                sd_bus_message_handler_t callback, const char *types, ...) {
        sd_bus_message *m = NULL;
        va_list ap;
        int k;

        k = __wrap_eb_server_new_call(req->server, &m, path, interface, member);
        if (k >= 0 && types) {
                va_start(ap, types);
                k = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        return __wrap_eb_request_send(req, m, k, callback);
}

sd_bus *__wrap_eb_server_bus(EbServer *s);
sd_bus *__wrap_eb_server_bus(EbServer *s) {
        return closed_bus;
}

GPtrArray *__wrap_eb_server_api_keys(EbServer *s);
GPtrArray *__wrap_eb_server_api_keys(EbServer *s) {
        return api_keys;
}

/* The server's limits: none (the fake server has no state). */
gboolean __wrap_eb_server_stream_begin(EbServer *s, SoupServerMessage *msg);
gboolean __wrap_eb_server_stream_begin(EbServer *s, SoupServerMessage *msg) {
        return TRUE;
}

guint64 __wrap_eb_server_max_upload(EbServer *s);
guint64 __wrap_eb_server_max_upload(EbServer *s) {
        return 0;
}

void __wrap_eb_server_watch_object(EbServer *s, const char *path, EbSignalTarget *target);
void __wrap_eb_server_watch_object(EbServer *s, const char *path, EbSignalTarget *target) {
}

void __wrap_eb_server_unwatch_object(EbServer *s, const char *path, EbSignalTarget *target);
void __wrap_eb_server_unwatch_object(EbServer *s, const char *path, EbSignalTarget *target) {
}
