/* SPDX-License-Identifier: Apache-2.0 */
/* The environments API's request validation: eb_route_environments with a provision (POST
 * .../environments) or execute (POST .../environments/{id}/execute) body, through the real
 * router, authentication and field validation (see fuzz-bridge-fake.c). The first byte picks
 * the request and its headers, the rest is the body. */
#include <stdint.h>
#include <string.h>

#include "fuzz-bridge-fake.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_bridge_init();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const paths[] = {
                "/api/v1/org/acme/ws/dev/environments",
                "/api/v1/org/acme/ws/dev/environments/0123456789abcdef0123456789abcdef/execute",
        };
        g_autofree char *uri = NULL;
        SoupServerMessage *msg;
        SoupMessageHeaders *h;
        const char *path;
        guint8 flags;

        if (size < 1 || size > 64 * 1024)
                return 0;
        flags = data[0];
        data++, size--;
        path = paths[flags & 1];
        uri = g_strconcat("http://h", path, NULL);
        msg = fuzz_bridge_message((flags & 8) ? "PUT" : "POST", uri, data, size);
        h = soup_server_message_get_request_headers(msg);
        /* Mostly well authenticated, so the body is what gets checked. */
        if (!(flags & 2))
                soup_message_headers_append(h, "Authorization", "Bearer " FUZZ_API_KEY);
        else if (!(flags & 4))
                soup_message_headers_append(h, "X-API-Key", "wrong");
        if (!(flags & 16))
                soup_message_headers_append(h, "X-Environment-Token", (flags & 32) ? "Bearer tok" : "tok");
        if (flags & 64)
                soup_message_headers_append(h, "X-API-Version", (flags & 128) ? "2" : "1");
        eb_route_environments(fuzz_bridge_server(), msg, path);
        fuzz_bridge_done(msg);
        return 0;
}
