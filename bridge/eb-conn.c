/* SPDX-License-Identifier: Apache-2.0 */
/* Accepting connections: limits, timeouts, and a work-around for libsoup 3.2's idle
 * connection leak (see eb-conn.h).
 *
 * Each accepted socket is wrapped in an EbConnStream whose input stream sits between libsoup
 * and the socket. The connection's phase follows libsoup's signals:
 *   HEAD    waiting for (or reading) a request head: --header-timeout applies;
 *   ACTIVE  a request is being read, handled or answered: no timeout (streams are long);
 *   IDLE    a response is complete, no byte of the next request yet: --idle-timeout applies.
 * When a deadline passes the input stream reports end-of-file to libsoup, which then closes
 * the connection. libsoup 3.2 leaks a keep-alive connection that reaches end-of-file before
 * the first byte of its next request (it has started no request it could finish): in IDLE the
 * stream therefore hands libsoup one byte before the end, a request head cut short, which
 * libsoup does clean up (it disconnects and frees the connection). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "eb-conn.h"

#define CONN_KEY "eb-conn"
#define ACCEPT_BATCH 64
/* After a deadline, libsoup gets this long to close the connection before the socket is shut. */
#define FORCE_GRACE_SECONDS 5

typedef enum { PHASE_HEAD, PHASE_ACTIVE, PHASE_IDLE } Phase;

typedef struct _EbConnStream EbConnStream;

struct EbConnManager {
        SoupServer *soup;
        EbConnLimits limits;
        GSList *listeners; /* GSocket* */
        GSList *sources;   /* GSource*, one per listener */
        guint total;
        GHashTable *per_client; /* client key -> count (GUINT_TO_POINTER) */
        gulong started_id;
        GSocket *soup_listener; /* see eb_conn_manager_new */
        char *soup_listener_dir;
};

/* ---- the input stream libsoup reads ---- */

#define EB_TYPE_CONN_INPUT (eb_conn_input_get_type())
G_DECLARE_FINAL_TYPE(EbConnInput, eb_conn_input, EB, CONN_INPUT, GInputStream)

struct _EbConnInput {
        GInputStream parent;
        EbConnStream *conn; /* not a reference: the connection owns us */
        GInputStream *base;
};

#define EB_TYPE_CONN_STREAM (eb_conn_stream_get_type())
G_DECLARE_FINAL_TYPE(EbConnStream, eb_conn_stream, EB, CONN_STREAM, GIOStream)

struct _EbConnStream {
        GIOStream parent;
        EbConnManager *manager;
        GSocketConnection *base;
        GSocket *socket;
        EbConnInput *input;
        GSocketAddress *remote;
        char *client;
        Phase phase;
        gboolean counted, force_eof, injected;
        GCancellable *wake;   /* cancelled to make libsoup read (and see the end) now */
        GSource *deadline;
        GSource *grace;
};

static void eb_conn_input_pollable_init(GPollableInputStreamInterface *iface);

G_DEFINE_TYPE_WITH_CODE(EbConnInput, eb_conn_input, G_TYPE_INPUT_STREAM,
                        G_IMPLEMENT_INTERFACE(G_TYPE_POLLABLE_INPUT_STREAM, eb_conn_input_pollable_init))

static gssize conn_read(EbConnInput *in, void *buffer, gsize count, gboolean blocking, GCancellable *cancellable,
                        GError **error) {
        EbConnStream *c = in->conn;
        gssize n;

        if (count == 0)
                return 0;
        if (c && c->force_eof)
                n = 0;
        else if (blocking)
                n = g_input_stream_read(in->base, buffer, count, cancellable, error);
        else
                n = g_pollable_input_stream_read_nonblocking(G_POLLABLE_INPUT_STREAM(in->base), buffer, count,
                                                             cancellable, error);
        if (n == 0 && c && c->phase == PHASE_IDLE && !c->injected) {
                /* The end, between requests: give libsoup the start of a request first, so that
                 * it has one to fail and cleans the connection up. The answer it may write to
                 * that must not reach the client: our side of the connection ends first. */
                c->injected = TRUE;
                (void) g_socket_shutdown(c->socket, FALSE, TRUE, NULL);
                ((char *) buffer)[0] = 'X';
                return 1;
        }
        return n;
}

static gssize eb_conn_input_read(GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable,
                                 GError **error) {
        return conn_read(EB_CONN_INPUT(stream), buffer, count, TRUE, cancellable, error);
}

static gboolean eb_conn_input_close(GInputStream *stream, GCancellable *cancellable, GError **error) {
        return TRUE; /* the socket is closed with the connection */
}

static void eb_conn_input_finalize(GObject *object) {
        EbConnInput *in = EB_CONN_INPUT(object);

        g_clear_object(&in->base);
        G_OBJECT_CLASS(eb_conn_input_parent_class)->finalize(object);
}

static void eb_conn_input_class_init(EbConnInputClass *klass) {
        G_OBJECT_CLASS(klass)->finalize = eb_conn_input_finalize;
        G_INPUT_STREAM_CLASS(klass)->read_fn = eb_conn_input_read;
        G_INPUT_STREAM_CLASS(klass)->close_fn = eb_conn_input_close;
}

static void eb_conn_input_init(EbConnInput *in) {
}

static gboolean eb_conn_input_can_poll(GPollableInputStream *stream) {
        return TRUE;
}

static gboolean eb_conn_input_is_readable(GPollableInputStream *stream) {
        EbConnInput *in = EB_CONN_INPUT(stream);

        return (in->conn && in->conn->force_eof) || g_pollable_input_stream_is_readable(G_POLLABLE_INPUT_STREAM(in->base));
}

static GSource *eb_conn_input_create_source(GPollableInputStream *stream, GCancellable *cancellable) {
        EbConnInput *in = EB_CONN_INPUT(stream);
        g_autoptr(GSource) base = g_pollable_input_stream_create_source(G_POLLABLE_INPUT_STREAM(in->base), cancellable);

        /* Also ready when the connection's wake is cancelled (a deadline passed). */
        return g_pollable_source_new_full(stream, base, in->conn ? in->conn->wake : NULL);
}

static gssize eb_conn_input_read_nonblocking(GPollableInputStream *stream, void *buffer, gsize count, GError **error) {
        return conn_read(EB_CONN_INPUT(stream), buffer, count, FALSE, NULL, error);
}

static void eb_conn_input_pollable_init(GPollableInputStreamInterface *iface) {
        iface->can_poll = eb_conn_input_can_poll;
        iface->is_readable = eb_conn_input_is_readable;
        iface->create_source = eb_conn_input_create_source;
        iface->read_nonblocking = eb_conn_input_read_nonblocking;
}

/* ---- the connection ---- */

G_DEFINE_TYPE(EbConnStream, eb_conn_stream, G_TYPE_IO_STREAM)

static void clear_source(GSource **s) {
        if (*s) {
                g_source_destroy(*s);
                g_source_unref(*s);
                *s = NULL;
        }
}

static void conn_release(EbConnStream *c) {
        EbConnManager *m = c->manager;

        clear_source(&c->deadline);
        clear_source(&c->grace);
        /* Closed: the manager may go before the stream (messages keep it). */
        c->manager = NULL;
        if (!c->counted || !m)
                return;
        c->counted = FALSE;
        m->total--;
        {
                guint n = GPOINTER_TO_UINT(g_hash_table_lookup(m->per_client, c->client));
                if (n <= 1)
                        g_hash_table_remove(m->per_client, c->client);
                else
                        g_hash_table_insert(m->per_client, g_strdup(c->client), GUINT_TO_POINTER(n - 1));
        }
}

static GInputStream *eb_conn_stream_get_input(GIOStream *stream) {
        return G_INPUT_STREAM(EB_CONN_STREAM(stream)->input);
}

static GOutputStream *eb_conn_stream_get_output(GIOStream *stream) {
        return g_io_stream_get_output_stream(G_IO_STREAM(EB_CONN_STREAM(stream)->base));
}

static gboolean eb_conn_stream_close(GIOStream *stream, GCancellable *cancellable, GError **error) {
        EbConnStream *c = EB_CONN_STREAM(stream);

        conn_release(c);
        g_object_set_data(G_OBJECT(c->remote), EB_CONN_SOCKET_KEY, NULL);
        return g_io_stream_close(G_IO_STREAM(c->base), cancellable, error);
}

static void eb_conn_stream_finalize(GObject *object) {
        EbConnStream *c = EB_CONN_STREAM(object);

        conn_release(c);
        if (c->remote) {
                g_object_set_data(G_OBJECT(c->remote), CONN_KEY, NULL);
                g_object_set_data(G_OBJECT(c->remote), EB_CONN_SOCKET_KEY, NULL);
        }
        if (c->input)
                c->input->conn = NULL;
        g_clear_object(&c->input);
        if (c->base && !g_io_stream_is_closed(G_IO_STREAM(c->base)))
                g_io_stream_close(G_IO_STREAM(c->base), NULL, NULL);
        g_clear_object(&c->base);
        g_clear_object(&c->remote);
        g_clear_object(&c->wake);
        g_free(c->client);
        G_OBJECT_CLASS(eb_conn_stream_parent_class)->finalize(object);
}

static void eb_conn_stream_class_init(EbConnStreamClass *klass) {
        G_OBJECT_CLASS(klass)->finalize = eb_conn_stream_finalize;
        G_IO_STREAM_CLASS(klass)->get_input_stream = eb_conn_stream_get_input;
        G_IO_STREAM_CLASS(klass)->get_output_stream = eb_conn_stream_get_output;
        G_IO_STREAM_CLASS(klass)->close_fn = eb_conn_stream_close;
}

static void eb_conn_stream_init(EbConnStream *c) {
}

static gboolean on_grace(gpointer user_data) {
        EbConnStream *c = user_data;

        /* libsoup did not close it (it was not reading): cut the socket; every read and write
         * then fails and libsoup cleans up. */
        g_clear_pointer(&c->grace, g_source_unref);
        g_socket_shutdown(c->socket, TRUE, TRUE, NULL);
        return G_SOURCE_REMOVE;
}

static gboolean on_deadline(gpointer user_data) {
        EbConnStream *c = user_data;

        g_clear_pointer(&c->deadline, g_source_unref);
        if (c->phase == PHASE_ACTIVE)
                return G_SOURCE_REMOVE;
        c->force_eof = TRUE;
        /* The client sees the end of the connection, and nothing libsoup may say about the
         * request head it never finished. */
        (void) g_socket_shutdown(c->socket, FALSE, TRUE, NULL);
        g_cancellable_cancel(c->wake);
        c->grace = g_timeout_source_new_seconds(FORCE_GRACE_SECONDS);
        g_source_set_callback(c->grace, on_grace, c, NULL);
        g_source_attach(c->grace, NULL);
        return G_SOURCE_REMOVE;
}

static void conn_set_deadline(EbConnStream *c, guint seconds) {
        clear_source(&c->deadline);
        if (seconds == 0 || c->force_eof)
                return;
        c->deadline = g_timeout_source_new_seconds(seconds);
        g_source_set_callback(c->deadline, on_deadline, c, NULL);
        g_source_attach(c->deadline, NULL);
}

static EbConnStream *conn_of_message(SoupServerMessage *msg) {
        GSocketAddress *a = soup_server_message_get_remote_address(msg);

        return a ? g_object_get_data(G_OBJECT(a), CONN_KEY) : NULL;
}

const char *eb_conn_message_client(SoupServerMessage *msg) {
        EbConnStream *c = conn_of_message(msg);

        return c ? c->client : "unknown";
}

static void on_got_headers(SoupServerMessage *msg, gpointer user_data) {
        EbConnStream *c = conn_of_message(msg);

        if (c) {
                c->phase = PHASE_ACTIVE;
                clear_source(&c->deadline);
        }
}

static void on_finished(SoupServerMessage *msg, gpointer user_data) {
        EbConnStream *c = conn_of_message(msg);

        if (!c || c->force_eof || !c->manager)
                return;
        c->phase = PHASE_IDLE;
        c->injected = FALSE;
        conn_set_deadline(c, c->manager ? c->manager->limits.idle_timeout : 0);
}

static void on_request_started(SoupServer *soup, SoupServerMessage *msg, gpointer user_data) {
        EbConnStream *c = conn_of_message(msg);

        if (!c || !c->manager)
                return;
        g_signal_connect(msg, "got-headers", G_CALLBACK(on_got_headers), NULL);
        g_signal_connect(msg, "finished", G_CALLBACK(on_finished), NULL);
        /* The first request starts at accept (its deadline is set); later ones once their
         * first byte is in. */
        if (c->phase == PHASE_IDLE) {
                c->phase = PHASE_HEAD;
                conn_set_deadline(c, c->manager->limits.header_timeout);
        }
}

static char *client_key(GSocketAddress *a) {
        if (G_IS_INET_SOCKET_ADDRESS(a)) {
                GInetAddress *ip = g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(a));
                /* An IPv4 peer on an IPv6 socket is the same client as on an IPv4 one. */
                if (g_inet_address_get_family(ip) == G_SOCKET_FAMILY_IPV6) {
                        const guint8 *b = g_inet_address_to_bytes(ip);
                        static const guint8 mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
                        if (memcmp(b, mapped, 12) == 0)
                                return g_strdup_printf("%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
                }
                return g_inet_address_to_string(ip);
        }
        return g_strdup("unix");
}

/* Beyond a limit: a complete answer, then the end of the connection. */
static void refuse(GSocket *socket, const char *message) {
        g_autofree char *body = g_strdup_printf("{\"code\":\"LIMITS_EXCEEDED\",\"message\":\"%s\"}", message);
        g_autofree char *out = g_strdup_printf("HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
                                               "Retry-After: 1\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                                               strlen(body), body);

        (void) send(g_socket_get_fd(socket), out, strlen(out), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void) shutdown(g_socket_get_fd(socket), SHUT_WR);
        g_socket_close(socket, NULL);
}

static void take_connection(EbConnManager *m, GSocket *socket) {
        g_autoptr(GSocketAddress) remote = g_socket_get_remote_address(socket, NULL);
        g_autoptr(GSocketAddress) local = g_socket_get_local_address(socket, NULL);
        g_autofree char *client = NULL;
        EbConnStream *c;
        guint n;

        if (!remote || !local) {
                g_socket_close(socket, NULL);
                return;
        }
        client = client_key(remote);
        n = GPOINTER_TO_UINT(g_hash_table_lookup(m->per_client, client));
        if (m->limits.max_connections && m->total >= m->limits.max_connections) {
                refuse(socket, "too many connections");
                return;
        }
        if (m->limits.max_connections_per_client && n >= m->limits.max_connections_per_client) {
                refuse(socket, "too many connections from this client");
                return;
        }
        if (G_IS_INET_SOCKET_ADDRESS(remote))
                (void) g_socket_set_option(socket, IPPROTO_TCP, TCP_NODELAY, TRUE, NULL);

        c = g_object_new(EB_TYPE_CONN_STREAM, NULL);
        c->manager = m;
        c->socket = socket; /* the connection's reference */
        c->base = g_socket_connection_factory_create_connection(socket);
        c->input = g_object_new(EB_TYPE_CONN_INPUT, NULL);
        c->input->conn = c;
        c->input->base = g_object_ref(g_io_stream_get_input_stream(G_IO_STREAM(c->base)));
        c->wake = g_cancellable_new();
        c->remote = g_object_ref(remote);
        c->client = g_steal_pointer(&client);
        c->phase = PHASE_HEAD;
        c->counted = TRUE;
        m->total++;
        g_hash_table_insert(m->per_client, g_strdup(c->client), GUINT_TO_POINTER(n + 1));
        g_object_set_data(G_OBJECT(remote), CONN_KEY, c);
        g_object_set_data(G_OBJECT(remote), EB_CONN_SOCKET_KEY, socket);
        conn_set_deadline(c, m->limits.header_timeout);
        (void) soup_server_accept_iostream(m->soup, G_IO_STREAM(c), local, remote, NULL);
        g_object_unref(c); /* libsoup's now */
}

static gboolean on_accept_ready(GSocket *listener, GIOCondition condition, gpointer user_data) {
        EbConnManager *m = user_data;

        for (int i = 0; i < ACCEPT_BATCH; i++) {
                g_autoptr(GError) error = NULL;
                GSocket *s = g_socket_accept(listener, NULL, &error);

                if (!s) {
                        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
                                g_warning("accept: %s", error->message);
                        break;
                }
                /* The GSocket stays with the connection (its wrapper keeps a reference). */
                take_connection(m, s);
                g_object_unref(s);
        }
        return G_SOURCE_CONTINUE;
}

gboolean eb_conn_manager_add_listener(EbConnManager *m, GSocket *listener, GError **error) {
        GSource *source;

        g_socket_set_blocking(listener, FALSE);
        source = g_socket_create_source(listener, G_IO_IN, NULL);
        g_source_set_callback(source, (GSourceFunc) (void (*)(void)) on_accept_ready, m, NULL);
        g_source_attach(source, NULL);
        m->sources = g_slist_prepend(m->sources, source);
        m->listeners = g_slist_append(m->listeners, listener);
        return TRUE;
}

GSList *eb_conn_manager_get_listeners(EbConnManager *m) {
        return m->listeners;
}

EbConnManager *eb_conn_manager_new(SoupServer *soup, const EbConnLimits *limits, GError **error) {
        EbConnManager *m = g_new0(EbConnManager, 1);
        g_autofree char *path = NULL;

        m->soup = g_object_ref(soup);
        m->limits = *limits;
        m->per_client = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m->started_id = g_signal_connect(soup, "request-started", G_CALLBACK(on_request_started), m);

        /* libsoup keeps a connection alive after a response only while it has a listener of
         * its own. It gets one that nobody can reach: a Unix socket whose name is removed at
         * once. */
        m->soup_listener_dir = g_dir_make_tmp("execd-bridge-XXXXXX", error);
        if (!m->soup_listener_dir)
                goto fail;
        path = g_build_filename(m->soup_listener_dir, "s", NULL);
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                int k = fd < 0 ? -1 : 0;

                g_strlcpy(sa.sun_path, path, sizeof sa.sun_path);
                if (k == 0)
                        k = bind(fd, (struct sockaddr *) &sa, sizeof sa);
                if (k == 0)
                        k = listen(fd, 1);
                (void) unlink(path);
                (void) rmdir(m->soup_listener_dir);
                if (k < 0) {
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot set up the internal listener: %s",
                                    g_strerror(errno));
                        if (fd >= 0)
                                close(fd);
                        goto fail;
                }
                m->soup_listener = g_socket_new_from_fd(fd, error);
                if (!m->soup_listener) {
                        close(fd);
                        goto fail;
                }
        }
        if (!soup_server_listen_socket(soup, m->soup_listener, 0, error))
                goto fail;
        return m;
fail:
        if (m->soup_listener_dir)
                (void) rmdir(m->soup_listener_dir);
        eb_conn_manager_free(m);
        return NULL;
}

void eb_conn_manager_free(EbConnManager *m) {
        if (!m)
                return;
        for (GSList *l = m->sources; l; l = l->next) {
                g_source_destroy(l->data);
                g_source_unref(l->data);
        }
        g_slist_free(m->sources);
        g_slist_free_full(m->listeners, g_object_unref);
        if (m->started_id)
                g_signal_handler_disconnect(m->soup, m->started_id);
        /* Close every connection while the counts they update are still here. */
        soup_server_disconnect(m->soup);
        g_object_unref(m->soup);
        g_clear_object(&m->soup_listener);
        g_free(m->soup_listener_dir);
        g_hash_table_unref(m->per_client);
        g_free(m);
}
