/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <libsoup/soup.h>

/* The bridge accepts connections itself and hands each to libsoup
 * (soup_server_accept_iostream) wrapped in a stream of its own, so that it can
 *  - cap connections, in total and per client address;
 *  - close connections whose request head does not arrive in time, and keep-alive
 *    connections idle for too long;
 *  - have libsoup drop a keep-alive connection the client closed between requests
 *    (libsoup 3.2 keeps those, with their descriptor, forever). */
typedef struct EbConnManager EbConnManager;

typedef struct {
        guint max_connections;            /* 0: no limit */
        guint max_connections_per_client; /* 0: no limit */
        guint header_timeout;             /* seconds; 0: none */
        guint idle_timeout;               /* seconds; 0: none */
} EbConnLimits;

EbConnManager *eb_conn_manager_new(SoupServer *soup, const EbConnLimits *limits, GError **error);
void eb_conn_manager_free(EbConnManager *m);
/* Serve a listening socket (taken). */
gboolean eb_conn_manager_add_listener(EbConnManager *m, GSocket *listener, GError **error);
GSList *eb_conn_manager_get_listeners(EbConnManager *m);

#define EB_CONN_SOCKET_KEY "eb-socket"

/* The socket of a request's connection, NULL once the connection is closed (libsoup does not
 * know it: it was given a stream). Inline, so that eb-sse.c needs nothing else. */
static inline GSocket *eb_conn_message_socket(SoupServerMessage *msg) {
        GSocketAddress *a = soup_server_message_get_remote_address(msg);

        return a ? (GSocket *) g_object_get_data(G_OBJECT(a), EB_CONN_SOCKET_KEY) : NULL;
}
/* Who sent a request: the peer's IP address ("unix" for AF_UNIX peers). */
const char *eb_conn_message_client(SoupServerMessage *msg);
