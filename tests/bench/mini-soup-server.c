/* mini-soup-server: the smallest useful libsoup 3 server, the yardstick of the
 * GET /ping benchmark.  It listens on 127.0.0.1 on a free port, prints the port
 * on stdout, and answers every request 200 with an empty body, so what the
 * bridge adds on top of libsoup (routing, token check) is what the comparison
 * shows.  It runs until it is killed.
 */
#include <glib.h>
#include <libsoup/soup.h>
#include <stdio.h>

static void handler_cb(SoupServer *server, SoupServerMessage *msg, const char *path,
                       GHashTable *query, gpointer user_data)
{
        soup_server_message_set_status(msg, SOUP_STATUS_OK, NULL);
        soup_server_message_set_response(msg, "text/plain", SOUP_MEMORY_STATIC, "", 0);
}

int main(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(SoupServer) server = soup_server_new("server-header", NULL, NULL);
        g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);

        soup_server_add_handler(server, NULL, handler_cb, NULL, NULL);
        if (!soup_server_listen_local(server, 0, SOUP_SERVER_LISTEN_IPV4_ONLY, &error)) {
                fprintf(stderr, "mini-soup-server: %s\n", error->message);
                return 1;
        }
        GSList *uris = soup_server_get_uris(server);
        if (!uris) {
                fprintf(stderr, "mini-soup-server: no listening address\n");
                return 1;
        }
        printf("%d\n", g_uri_get_port(uris->data));
        fflush(stdout);
        g_slist_free_full(uris, (GDestroyNotify) g_uri_unref);

        g_main_loop_run(loop);
        return 0;
}
