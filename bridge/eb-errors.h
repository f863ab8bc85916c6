/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <libsoup/soup.h>
#include <systemd/sd-bus.h>

/* Which API a request belongs to decides the error envelope. */
typedef enum {
        EB_API_EXECD,       /* {"code":"UPPER_SNAKE","message":"..."} */
        EB_API_ENVIRONMENT, /* {"code":<status>,"detail":"...","type":"..."} */
} EbApi;

typedef struct {
        const char *dbus_name; /* NULL: the fallback row */
        guint status;
        const char *code;      /* execd envelope */
        const char *type;      /* environment envelope */
} EbErrorMapping;

/* The one D-Bus error -> HTTP table. */
const EbErrorMapping *eb_error_lookup(const char *dbus_name);
/* HTTP status for a mapping in the given API (the daemon being away is 503 for execd routes
 * and 502 for environment routes). */
guint eb_error_status(const EbErrorMapping *m, EbApi api);

void eb_reply_error(SoupServerMessage *msg, EbApi api, guint status, const char *code, const char *message);
/* Map a D-Bus error; not_found_code overrides the execd code for 404s (the reference uses
 * route-specific codes such as FILE_NOT_FOUND or CONTEXT_NOT_FOUND). */
void eb_reply_bus_error(SoupServerMessage *msg, EbApi api, const sd_bus_error *error, const char *not_found_code);
void eb_reply_empty(SoupServerMessage *msg, guint status);
void eb_reply_json(SoupServerMessage *msg, guint status, GString *json);
