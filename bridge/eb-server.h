/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <json-glib/json-glib.h>
#include <libsoup/soup.h>
#include <systemd/sd-bus.h>

#include "eb-errors.h"
#include "eb-json.h"

#define EB_BUS_NAME "org.execd.Execd1"
#define EB_MANAGER_PATH "/org/execd/Execd1"
#define EB_COMMAND_PREFIX "/org/execd/Execd1/command/"
#define EB_MANAGER_INTERFACE "org.execd.Execd1.Manager"
#define EB_COMMAND_INTERFACE "org.execd.Execd1.Command"
#define EB_SESSION_PREFIX "/org/execd/Execd1/session/"
#define EB_SESSION_INTERFACE "org.execd.Execd1.Session"
/* Defaults of the limits (see EbServerOptions and --help). */
#define EB_JSON_BODY_MAX (1024 * 1024)
#define EB_STREAMS_MAX 1024
#define EB_STREAMS_PER_CLIENT_MAX 256
#define EB_CONNECTIONS_MAX 4096
#define EB_CONNECTIONS_PER_CLIENT_MAX 512
#define EB_HEADER_TIMEOUT_SECONDS 30
#define EB_IDLE_TIMEOUT_SECONDS 60

typedef struct EbServer EbServer;

/* Receives the daemon's unicast signals for one object path, and the daemon's departure. */
typedef struct {
        void (*on_signal)(sd_bus_message *m, gpointer data);
        void (*on_daemon_gone)(gpointer data);
        gpointer data;
} EbSignalTarget;

/* Task environment API keys: each may be limited to some orgs. */
typedef struct {
        char *key;
        char **orgs; /* NULL: every org */
} EbApiKey;

/* Read a keys file (lines "KEY" or "KEY org1,org2", # comments); it must not be readable by
 * group or others. Returns a GPtrArray of EbApiKey*. */
GPtrArray *eb_api_keys_load(const char *path, GError **error);

typedef struct {
        char *listen;       /* HOST:PORT */
        int listen_fds;     /* > 0: listen on systemd's SD_LISTEN_FDS_START… instead of listen */
        char *bus_address;  /* NULL: system bus, "session": session bus */
        char *token;
        GPtrArray *api_keys; /* EbApiKey*, taken by the server; NULL: none */
        /* Limits; 0 means none (every one has a default in eb-main.c). */
        guint64 max_json_body;  /* bytes of a JSON request body: 413 beyond */
        guint64 max_upload;     /* bytes of an upload, all files together: 413 beyond */
        guint max_streams, max_streams_per_client; /* concurrent SSE streams: 429 beyond */
        guint max_connections, max_connections_per_client;
        guint header_timeout, idle_timeout; /* seconds */
} EbServerOptions;

EbServer *eb_server_new(const EbServerOptions *options, GError **error);
void eb_server_free(EbServer *s);
/* The bus, or NULL while it is being reconnected. */
sd_bus *eb_server_bus(EbServer *s);
/* Whether the daemon's name has an owner, as far as the bridge has seen. */
gboolean eb_server_daemon_present(EbServer *s);
GPtrArray *eb_server_api_keys(EbServer *s);
/* The JSON body cap (bytes). */
guint64 eb_server_max_json_body(EbServer *s);
/* The upload cap (bytes), 0 for none. */
guint64 eb_server_max_upload(EbServer *s);
/* The 413 answer for a JSON body beyond the cap, in the API's envelope. */
void eb_server_reply_body_too_large(EbServer *s, SoupServerMessage *msg, EbApi api);
/* Take a stream slot for msg (held until the message is finished; taking it again for the same
 * message is a no-op). Beyond --max-streams or --max-streams-per-client: replies 429 with
 * Retry-After and returns FALSE. */
gboolean eb_server_stream_begin(EbServer *s, SoupServerMessage *msg);

/* Per-server state of one API area (e.g. the metrics watchers), owned by that area. */
gpointer eb_server_get_area(EbServer *s, const char *area);
void eb_server_set_area(EbServer *s, const char *area, gpointer data, GDestroyNotify free_func);

void eb_server_watch_object(EbServer *s, const char *path, EbSignalTarget *target);
/* Several targets may watch one path; each gets every signal for it. */
void eb_server_unwatch_object(EbServer *s, const char *path, EbSignalTarget *target);

/* A request waiting for the daemon: holds the message paused and owns the call's slot, which
 * is dropped (cancelling the call) if the client goes away first. */
typedef struct {
        gint ref;
        EbServer *server;
        SoupServerMessage *msg;
        sd_bus_slot *slot;
        gboolean gone;
        gulong finished_id;
        char *id;
        guint64 number;
        GString *body;
        gpointer data; /* route state, freed with data_free unless a callback took it */
        GDestroyNotify data_free;
        /* The call must finish even if the client leaves (it may have started something the
         * callback has to undo); the callback then sees gone set. */
        gboolean finish_call_when_gone;
        EbApi api; /* whose envelope a failure to reach the daemon is reported in */
} EbRequest;

EbRequest *eb_request_new(EbServer *server, SoupServerMessage *msg);
EbRequest *eb_request_ref(EbRequest *r);
void eb_request_unref(EbRequest *r);
/* Hand the response to libsoup (unpause) unless the client is gone. */
void eb_request_finish(EbRequest *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(EbRequest, eb_request_unref)

/* A method call to the daemon, or -ENOTCONN while there is no bus. */
int eb_server_new_call(EbServer *s, sd_bus_message **ret, const char *path, const char *interface,
                       const char *member);
/* Send a prepared call (consumes the caller's reference to m); as eb_request_call. */
gboolean eb_request_send(EbRequest *req, sd_bus_message *m, int prepare_error, sd_bus_message_handler_t callback);
/* Call a daemon method; the reply callback receives a reference to req as userdata and must
 * drop it. On failure to send, replies 503 and returns FALSE. */
gboolean eb_request_call(EbRequest *req, const char *path, const char *interface, const char *member,
                         sd_bus_message_handler_t callback, const char *types, ...);

/* First thing in a reply callback: the call is over; returns the request, whose reference
 * the callback now owns (g_autoptr(EbRequest) req = eb_request_take_reply(userdata)). */
EbRequest *eb_request_take_reply(void *userdata);

/* Parse a JSON object body; on failure replies 400 INVALID_REQUEST_BODY and returns NULL. */
JsonObject *eb_parse_object_body(SoupServerMessage *msg, JsonParser **ret_parser);
/* Member lookup ignoring ASCII case, as the reference's decoder does. */
JsonNode *eb_json_object_get_ci(JsonObject *o, const char *name);
gboolean eb_is_object_id(const char *s);

