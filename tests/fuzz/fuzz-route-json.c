/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON body of every execd route that takes one, decoded by the route handler itself (see
 * fuzz-bridge-fake.c). The first byte picks the route, the rest is the body. Upload metadata is
 * decoded inside the streaming upload; its steps (the same helpers, in the same order as
 * parse_metadata in eb-routes-transfer.c) are route 9. */
#include <stdint.h>
#include <string.h>

#include "eb-files.h"
#include "fuzz-bridge-fake.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fuzz_bridge_init();
        return 0;
}

static void upload_metadata(const uint8_t *data, size_t size) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autofree char *problem = NULL;
        const char *path, *owner, *group;
        guint32 mode;
        JsonNode *root;
        JsonObject *o;

        if (eb_json_text_has_nul_escape((const char *) data, size) ||
            eb_json_text_has_trailing_value((const char *) data, size) ||
            !json_parser_load_from_data(parser, (const char *) data, (gssize) size, NULL) ||
            !(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                return;
        o = json_node_get_object(root);
        if (!eb_parse_optional_string(eb_json_object_get_ci(o, "path"), &path) ||
            !eb_parse_optional_string(eb_json_object_get_ci(o, "owner"), &owner) ||
            !eb_parse_optional_string(eb_json_object_get_ci(o, "group"), &group))
                return;
        if (!eb_parse_mode(eb_json_object_get_ci(o, "mode"), &mode, &problem))
                return;
        if (mode > 07777)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const struct {
                const char *method, *uri;
                EbRouteHandler handler;
                const char *param;
        } routes[] = {
                { "POST", "http://h/command", eb_route_command_run, NULL },
                { "POST", "http://h/session/0123456789abcdef0123456789abcdef/run", eb_route_session_run,
                  "0123456789abcdef0123456789abcdef" },
                { "POST", "http://h/session", eb_route_session_create, NULL },
                { "POST", "http://h/code/context", eb_route_code_context_create, NULL },
                { "POST", "http://h/code", eb_route_code_run, NULL },
                { "POST", "http://h/files/permissions", eb_route_files_permissions, NULL },
                { "POST", "http://h/directories", eb_route_directories_create, NULL },
                { "POST", "http://h/files/mv", eb_route_files_move, NULL },
                { "POST", "http://h/files/replace?verbose=true", eb_route_files_replace, NULL },
        };
        const size_t n_routes = G_N_ELEMENTS(routes);
        SoupServerMessage *msg;
        size_t which;

        if (size < 1 || size > 64 * 1024)
                return 0;
        which = data[0] % (n_routes + 1);
        data++, size--;
        if (which == n_routes) {
                upload_metadata(data, size);
                return 0;
        }
        msg = fuzz_bridge_message(routes[which].method, routes[which].uri, data, size);
        routes[which].handler(fuzz_bridge_server(), msg, routes[which].param, NULL);
        fuzz_bridge_done(msg);
        return 0;
}
