/* SPDX-License-Identifier: Apache-2.0 */
/* A stand-in for the bridge's server side, for fuzzing the route handlers as they are: the
 * handlers run unchanged and build real sd-bus messages, but nothing is sent. The link
 * wraps (-Wl,--wrap=...) swap the request machinery of eb-server.c and the two libsoup
 * getters that need a live connection; everything else (eb_parse_object_body,
 * eb_json_object_get_ci, the error replies, the JSON writer) is the real code. */
#pragma once

#include <libsoup/soup.h>

#include "eb-routes.h"

/* Once per process: G_SLICE, the fake bus, the API key. */
void fuzz_bridge_init(void);
/* A request message with that method, URI (path and query) and body, as the router hands it
 * to a route. */
SoupServerMessage *fuzz_bridge_message(const char *method, const char *uri, const guint8 *body, gsize len);
/* Drop the message; aborts when the route left it without a response status. */
void fuzz_bridge_done(SoupServerMessage *msg);
/* The fake server pointer handed to routes (never dereferenced: every use is wrapped). */
EbServer *fuzz_bridge_server(void);
#define FUZZ_API_KEY "fuzz-api-key"
