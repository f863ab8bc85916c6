/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib/gi18n.h>
#include <locale.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "eb-server.h"

/* Token from a file: first line, surrounding white space removed. */
static char *read_token_file(const char *path, GError **error) {
        g_autofree char *contents = NULL;

        if (!g_file_get_contents(path, &contents, NULL, error))
                return NULL;
        g_strstrip(contents);
        if (!*contents) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, _("The token file %s is empty"), path);
                return NULL;
        }
        return g_strdup(contents);
}

static char *default_token_path(void) {
        const char *dir = g_getenv("RUNTIME_DIRECTORY");

        if (dir && *dir)
                return g_build_filename(dir, "access-token", NULL);
        if (geteuid() == 0)
                return g_strdup("/run/execd-bridge/access-token");
        dir = g_getenv("XDG_RUNTIME_DIR");
        if (dir && *dir)
                return g_build_filename(dir, "execd-bridge", "access-token", NULL);
        return NULL;
}

/* Generate a token and store it where only our user can read it; the path is logged, the
 * token never. */
static char *generate_token(GError **error) {
        g_autofree char *path = default_token_path(), *dir = NULL, *tmp = NULL;
        guint8 raw[32];
        GString *hex = g_string_sized_new(65);
        int fd;

        if (!path) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                            _("No access token configured and no runtime directory to store a generated one: "
                              "use --token-file or EXECD_ACCESS_TOKEN"));
                g_string_free(hex, TRUE);
                return NULL;
        }
        for (gsize i = 0; i < sizeof raw; i += 4) {
                guint32 r = g_random_int();
                memcpy(raw + i, &r, 4);
        }
        {
                /* GLib's PRNG is not for secrets: take the kernel's randomness when we can. */
                int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
                if (rfd >= 0) {
                        if (read(rfd, raw, sizeof raw) != (ssize_t) sizeof raw)
                                g_warning("short read from /dev/urandom");
                        close(rfd);
                }
        }
        for (gsize i = 0; i < sizeof raw; i++)
                g_string_append_printf(hex, "%02x", raw[i]);

        dir = g_path_get_dirname(path);
        if (g_mkdir_with_parents(dir, 0700) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), _("Cannot create %s: %s"), dir,
                            g_strerror(errno));
                g_string_free(hex, TRUE);
                return NULL;
        }
        tmp = g_strconcat(path, ".tmp", NULL);
        (void) unlink(tmp);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, hex->str, hex->len) != (ssize_t) hex->len || write(fd, "\n", 1) != 1 ||
            fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), _("Cannot write %s: %s"), path,
                            g_strerror(errno));
                g_string_free(hex, TRUE);
                return NULL;
        }
        g_message("generated an access token in %s", path);
        return g_string_free(hex, FALSE);
}

static gboolean on_quit_signal(gpointer user_data) {
        g_main_loop_quit(user_data);
        return G_SOURCE_REMOVE;
}

/* Every connection, stream and upload holds descriptors; the soft limit (often 1024) would be
 * hit long before memory is. The bridge runs nothing, so nothing inherits the higher limit. */
static void raise_fd_limit(void) {
        struct rlimit r;

        if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
                r.rlim_cur = r.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &r) < 0)
                        g_warning("cannot raise the descriptor limit: %s", g_strerror(errno));
        }
}

int main(int argc, char *argv[]) {
        g_autofree char *listen = NULL, *token_file = NULL, *bus_address = NULL, *token = NULL, *api_keys = NULL;
        gboolean use_session = FALSE, use_system = FALSE, version = FALSE;
        g_autoptr(GOptionContext) context = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GMainLoop) loop = NULL;
        EbServerOptions options = {};
        EbServer *server;
        gint64 max_json_body = EB_JSON_BODY_MAX, max_upload = 0;
        gint max_streams = EB_STREAMS_MAX, max_streams_per_client = EB_STREAMS_PER_CLIENT_MAX;
        gint max_connections = EB_CONNECTIONS_MAX, max_connections_per_client = EB_CONNECTIONS_PER_CLIENT_MAX;
        gint header_timeout = EB_HEADER_TIMEOUT_SECONDS, idle_timeout = EB_IDLE_TIMEOUT_SECONDS;
        const GOptionEntry entries[] = {
                /* TRANSLATORS: --help text of execd-bridge */
                { "listen", 0, 0, G_OPTION_ARG_STRING, &listen, N_("Listen on HOST:PORT (default 127.0.0.1:44772)"), N_("HOST:PORT") },
                { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &token_file, N_("Read the access token from FILE"), N_("FILE") },
                /* TRANSLATORS: --help text of execd-bridge */
                { "api-keys", 0, 0, G_OPTION_ARG_FILENAME, &api_keys, N_("Read the task environment API keys from FILE"), N_("FILE") },
                { "system", 0, 0, G_OPTION_ARG_NONE, &use_system, N_("Talk to the daemon on the system bus (default)"), NULL },
                { "session", 0, 0, G_OPTION_ARG_NONE, &use_session, N_("Talk to the daemon on the session bus"), NULL },
                { "bus-address", 0, 0, G_OPTION_ARG_STRING, &bus_address, N_("Talk to the daemon on the bus at ADDRESS"), N_("ADDRESS") },
                /* TRANSLATORS: --help text of execd-bridge; the limits */
                { "max-json-body", 0, 0, G_OPTION_ARG_INT64, &max_json_body, N_("Refuse JSON request bodies larger than BYTES with 413 (default 1048576)"), N_("BYTES") },
                { "max-upload", 0, 0, G_OPTION_ARG_INT64, &max_upload, N_("Refuse uploads larger than BYTES in total with 413 (default 0: no limit)"), N_("BYTES") },
                { "max-streams", 0, 0, G_OPTION_ARG_INT, &max_streams, N_("Answer 429 beyond N concurrent event streams (default 1024; 0: no limit)"), N_("N") },
                { "max-streams-per-client", 0, 0, G_OPTION_ARG_INT, &max_streams_per_client, N_("Answer 429 beyond N concurrent event streams from one address (default 256; 0: no limit)"), N_("N") },
                { "max-connections", 0, 0, G_OPTION_ARG_INT, &max_connections, N_("Refuse connections beyond N open ones (default 4096; 0: no limit)"), N_("N") },
                { "max-connections-per-client", 0, 0, G_OPTION_ARG_INT, &max_connections_per_client, N_("Refuse connections beyond N open ones from one address (default 512; 0: no limit)"), N_("N") },
                { "header-timeout", 0, 0, G_OPTION_ARG_INT, &header_timeout, N_("Close connections whose request head takes longer than SECONDS (default 30; 0: never)"), N_("SECONDS") },
                { "idle-timeout", 0, 0, G_OPTION_ARG_INT, &idle_timeout, N_("Close keep-alive connections idle for SECONDS (default 60; 0: never)"), N_("SECONDS") },
                { "version", 0, 0, G_OPTION_ARG_NONE, &version, N_("Show the version"), NULL },
                {}
        };

        setlocale(LC_ALL, "");
        /* TEXTDOMAINDIR (gettext convention) lets tests use uninstalled catalogs from the build tree. */
        bindtextdomain(GETTEXT_PACKAGE, g_getenv("TEXTDOMAINDIR") && *g_getenv("TEXTDOMAINDIR") ? g_getenv("TEXTDOMAINDIR") : LOCALEDIR);
        bind_textdomain_codeset(GETTEXT_PACKAGE, "UTF-8");
        textdomain(GETTEXT_PACKAGE);
        signal(SIGPIPE, SIG_IGN);
        raise_fd_limit();

        context = g_option_context_new(NULL);
        g_option_context_set_translation_domain(context, GETTEXT_PACKAGE);
        g_option_context_set_summary(context, _("HTTP bridge to the execd daemon: the execd REST and SSE API."));
        g_option_context_add_main_entries(context, entries, GETTEXT_PACKAGE);
        if (!g_option_context_parse(context, &argc, &argv, &error)) {
                g_printerr("execd-bridge: %s\n", error->message);
                return 2;
        }
        if (max_json_body <= 0 || max_upload < 0 || max_streams < 0 || max_streams_per_client < 0 ||
            max_connections < 0 || max_connections_per_client < 0 || header_timeout < 0 || idle_timeout < 0) {
                g_printerr("execd-bridge: %s\n", _("The limits must not be negative (and --max-json-body must be positive)"));
                return 2;
        }
        if (version) {
                g_print("execd-bridge %s\n", EXECD_VERSION);
                return 0;
        }

        if (token_file)
                token = read_token_file(token_file, &error);
        else if (g_getenv("EXECD_ACCESS_TOKEN") && *g_getenv("EXECD_ACCESS_TOKEN"))
                token = g_strdup(g_getenv("EXECD_ACCESS_TOKEN"));
        else
                token = generate_token(&error);
        if (!token) {
                g_printerr("execd-bridge: %s\n", error->message);
                return 1;
        }
        /* Children of ours (none today) must not inherit it. */
        g_unsetenv("EXECD_ACCESS_TOKEN");

        /* Socket activation: systemd's sockets replace --listen. The variables are unset so
         * that they cannot leak to anything we might start. */
        options.listen_fds = sd_listen_fds(1);
        if (options.listen_fds < 0) {
                g_printerr("execd-bridge: cannot take the sockets passed by systemd (LISTEN_FDS): %s\n",
                           g_strerror(-options.listen_fds));
                return 1;
        }
        if (options.listen_fds > 0 && listen)
                g_message("--listen=%s is ignored: systemd passed %d socket(s) (LISTEN_FDS)", listen,
                          options.listen_fds);
        options.listen = listen ? listen : (char *) "127.0.0.1:44772";
        options.bus_address = use_session ? (char *) "session" : bus_address;
        options.token = token;
        options.max_json_body = (guint64) max_json_body;
        options.max_upload = (guint64) max_upload;
        options.max_streams = (guint) max_streams;
        options.max_streams_per_client = (guint) max_streams_per_client;
        options.max_connections = (guint) max_connections;
        options.max_connections_per_client = (guint) max_connections_per_client;
        options.header_timeout = (guint) header_timeout;
        options.idle_timeout = (guint) idle_timeout;
        if (api_keys) {
                options.api_keys = eb_api_keys_load(api_keys, &error);
                if (!options.api_keys) {
                        g_printerr("execd-bridge: %s\n", error->message);
                        return 1;
                }
        }
        server = eb_server_new(&options, &error);
        if (!server) {
                g_printerr("execd-bridge: %s\n", error->message);
                return 1;
        }

        loop = g_main_loop_new(NULL, FALSE);
        g_unix_signal_add(SIGTERM, on_quit_signal, loop);
        g_unix_signal_add(SIGINT, on_quit_signal, loop);
        g_main_loop_run(loop);

        eb_server_free(server);
        return 0;
}
