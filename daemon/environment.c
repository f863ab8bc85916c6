/* SPDX-License-Identifier: Apache-2.0 */
/* Task environments (seed 004): a directory and, when the daemon is root, a uid of their own,
 * a secret token (only its SHA-256 is kept), and a synchronous Execute. Environments persist in
 * the state directory: <state>/environments.json, written atomically. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>
#include <time.h>

#include "env.h"
#include "environment.h"
#include "errors.h"
#include "execd.h"
#include "files.h"
#include "log.h"
#include "macro.h"
#include "polkit.h"

#define ENV_NAME_MAX 64
#define ENV_VARS_MAX 128
#define ENV_CONCURRENT_MAX 4
/* Each environment is a directory, a store entry and (as root) a uid: bounded like sessions. */
#define ENVIRONMENTS_MAX 1024
/* Token bucket per environment: bursts of 20 executes, 10 a second sustained. */
#define ENV_BURST 20.0
#define ENV_RATE 10.0
#define STORE_NAME "environments.json"

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void sha256(const char *text, uint8_t out[32]) {
        g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
        gsize len = 32;

        g_checksum_update(c, (const guchar *) text, (gssize) strlen(text));
        g_checksum_get_digest(c, out, &len);
}

static bool digest_equal(const uint8_t a[32], const uint8_t b[32]) {
        uint8_t diff = 0;

        for (size_t i = 0; i < 32; i++)
                diff |= a[i] ^ b[i];
        return diff == 0;
}

static void hex(const uint8_t *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = 0;
}

static bool unhex(const char *in, uint8_t *out, size_t n) {
        if (!in || strlen(in) != 2 * n)
                return false;
        for (size_t i = 0; i < n; i++) {
                int hi = g_ascii_xdigit_value(in[2 * i]), lo = g_ascii_xdigit_value(in[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return false;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return true;
}

static bool slug_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > ENV_NAME_MAX)
                return false;
        for (; *s; s++)
                if (!g_ascii_isalnum(*s) && *s != '.' && *s != '_' && *s != '-')
                        return false;
        return true;
}

Environment *manager_find_environment(Manager *m, const char *id) {
        for (Environment *e = m->environments; e; e = e->next)
                if (strcmp(e->id, id) == 0)
                        return e;
        return NULL;
}

/* ---- the store ---- */

static int store_save(Manager *m) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        _cleanup_(freep) char *path = NULL, *tmp = NULL;
        g_autofree char *text = NULL;
        _cleanup_(closep) int fd = -1, dir_fd = -1;
        gsize len;
        int k;

        json_builder_begin_array(b);
        for (Environment *e = m->environments; e; e = e->next) {
                char digest[65];

                hex(e->token_hash, 32, digest);
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "id");
                json_builder_add_string_value(b, e->id);
                json_builder_set_member_name(b, "org");
                json_builder_add_string_value(b, e->org);
                json_builder_set_member_name(b, "workspace");
                json_builder_add_string_value(b, e->ws);
                json_builder_set_member_name(b, "name");
                json_builder_add_string_value(b, e->name);
                json_builder_set_member_name(b, "token_sha256");
                json_builder_add_string_value(b, digest);
                json_builder_set_member_name(b, "uid");
                json_builder_add_int_value(b, e->uid);
                json_builder_set_member_name(b, "created_at_ms");
                json_builder_add_int_value(b, e->created_ms);
                json_builder_set_member_name(b, "env");
                json_builder_begin_array(b);
                for (size_t i = 0; e->env && e->env[i]; i++)
                        json_builder_add_string_value(b, e->env[i]);
                json_builder_end_array(b);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, &len);

        /* Temp file, fsync, rename, fsync the directory: a crash leaves the old or the new store. */
        if (asprintf(&path, "%s/" STORE_NAME, m->state_dir) < 0 || asprintf(&tmp, "%s/." STORE_NAME ".tmp", m->state_dir) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return log_error_errno(errno, "Cannot write %s: %m", tmp);
        k = write_all(fd, text, len);
        if (k >= 0 && fsync(fd) < 0)
                k = -errno;
        if (k < 0) {
                (void) unlink(tmp);
                return log_error_errno(k, "Cannot write %s: %m", tmp);
        }
        if (rename(tmp, path) < 0) {
                k = -errno;
                (void) unlink(tmp);
                return log_error_errno(k, "Cannot replace %s: %m", path);
        }
        dir_fd = open(m->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd >= 0)
                (void) fsync(dir_fd);
        return 0;
}

/* ---- objects ---- */

static Environment *environment_alloc(Manager *m) {
        Environment *e = calloc(1, sizeof *e);

        if (!e)
                return NULL;
        e->manager = m;
        e->bucket = ENV_BURST;
        e->bucket_usec = now_usec(CLOCK_MONOTONIC);
        return e;
}

static Environment *environment_free_memory(Environment *e) {
        if (!e)
                return NULL;
        strv_freep(&e->env);
        free(e->org);
        free(e->ws);
        free(e->name);
        free(e->dir);
        free(e->path);
        free(e);
        return NULL;
}

static void environment_link(Manager *m, Environment *e) {
        e->next = m->environments;
        if (m->environments)
                m->environments->prev = e;
        m->environments = e;
}

static void environment_unlink(Manager *m, Environment *e) {
        if (e->prev)
                e->prev->next = e->next;
        else if (m->environments == e)
                m->environments = e->next;
        if (e->next)
                e->next->prev = e->prev;
        e->prev = e->next = NULL;
}

static int environment_set_paths(Environment *e) {
        if (asprintf(&e->path, EXECD_ENVIRONMENT_PREFIX "/%s", e->id) < 0)
                return -ENOMEM;
        if (asprintf(&e->dir, "%s/environments/%s", e->manager->state_dir, e->id) < 0)
                return -ENOMEM;
        return 0;
}

/* An environment's uid must be able to walk down to its directory. */
static int check_reachable(const char *dir, sd_bus_error *error) {
        _cleanup_(freep) char *p = strdup(dir);
        char *slash;

        if (!p)
                return -ENOMEM;
        while ((slash = strrchr(p, '/')) && slash != p) {
                struct stat st;
                *slash = 0;
                if (stat(p, &st) == 0 && !(st.st_mode & S_IXOTH))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_FAILED,
                                                 "the state directory is not reachable by environment uids: %s "
                                                 "lacks the execute bit for others", p);
        }
        return 0;
}

static int environment_make_dir(Environment *e) {
        if (mkdir(e->dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create %s: %m", e->dir);
        if (e->uid != 0 && chown(e->dir, e->uid, e->uid) < 0)
                return log_error_errno(errno, "Cannot give %s to uid %u: %m", e->dir, (unsigned) e->uid);
        return chmod(e->dir, 0700) < 0 ? -errno : 0;
}

/* Whatever runs as an environment's own uid belongs to it, wherever it went. */
static void kill_uid(uid_t uid) {
        DIR *d;
        struct dirent *de;

        if (uid == 0)
                return;
        d = opendir("/proc");
        if (!d)
                return;
        while ((de = readdir(d))) {
                char path[sizeof "/proc/" + sizeof de->d_name];
                struct stat st;

                if (!isdigit((unsigned char) de->d_name[0]))
                        continue;
                snprintf(path, sizeof path, "/proc/%s", de->d_name);
                if (stat(path, &st) == 0 && st.st_uid == uid)
                        (void) kill((pid_t) atoi(de->d_name), SIGKILL);
        }
        closedir(d);
}

static void environment_destroy(Environment *e, bool remove_files) {
        Manager *m = e->manager;
        sd_bus_error ignored = SD_BUS_ERROR_NULL;

        for (Command *c = m->commands_head; c; c = c->next)
                if (c->environment == e) {
                        c->environment = NULL;
                        if (c->running)
                                (void) command_signal(c, SIGKILL);
                }
        if (remove_files) {
                kill_uid(e->uid);
                (void) files_remove_tree(e->dir, &ignored);
                sd_bus_error_free(&ignored);
        }
        environment_unlink(m, e);
        environment_free_memory(e);
}

int environments_load(Manager *m) {
        const char *base = getenv("STATE_DIRECTORY");
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        _cleanup_(freep) char *store = NULL, *envs_dir = NULL;
        JsonNode *root;
        JsonArray *items;
        int k;

        if (m->config.state_dir)
                m->state_dir = strdup(m->config.state_dir);
        else if (base && *base)
                m->state_dir = strdup(base);
        else if (m->euid == 0)
                m->state_dir = strdup("/var/lib/execd");
        else if (asprintf(&m->state_dir, "%s/.local/state/execd", getenv("HOME") ? getenv("HOME") : "/tmp") < 0)
                m->state_dir = NULL;
        if (!m->state_dir)
                return -ENOMEM;
        {
                sd_bus_error e = SD_BUS_ERROR_NULL;
                k = files_mkdir_p(m->state_dir, 0755, &e);
                sd_bus_error_free(&e);
                if (k < 0)
                        return log_error_errno(k, "Cannot create the state directory %s: %m", m->state_dir);
                /* Environment uids pass through it to their own directories. */
                (void) chmod(m->state_dir, 0711);
        }
        if (asprintf(&envs_dir, "%s/environments", m->state_dir) < 0)
                return -ENOMEM;
        /* 0711: each environment's own 0700 directory must be reachable by its uid. */
        if (mkdir(envs_dir, 0711) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create %s: %m", envs_dir);
        (void) chmod(envs_dir, 0711);

        if (asprintf(&store, "%s/" STORE_NAME, m->state_dir) < 0)
                return -ENOMEM;
        if (access(store, F_OK) < 0)
                return 0;
        if (!json_parser_load_from_file(parser, store, &error)) {
                log_error("Cannot read %s: %s; starting without its environments", store, error->message);
                return 0;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_ARRAY(root))
                return 0;
        items = json_node_get_array(root);
        for (guint i = 0; i < json_array_get_length(items); i++) {
                JsonObject *o = json_array_get_object_element(items, i);
                Environment *e;
                JsonArray *vars;

                if (!o)
                        continue;
                e = environment_alloc(m);
                if (!e)
                        return -ENOMEM;
                g_strlcpy(e->id, json_object_get_string_member_with_default(o, "id", ""), sizeof e->id);
                e->org = strdup(json_object_get_string_member_with_default(o, "org", ""));
                e->ws = strdup(json_object_get_string_member_with_default(o, "workspace", ""));
                e->name = strdup(json_object_get_string_member_with_default(o, "name", ""));
                e->uid = (uid_t) json_object_get_int_member_with_default(o, "uid", 0);
                e->created_ms = json_object_get_int_member_with_default(o, "created_at_ms", 0);
                vars = json_object_has_member(o, "env") ? json_object_get_array_member(o, "env") : NULL;
                e->env = calloc((vars ? json_array_get_length(vars) : 0) + 1, sizeof *e->env);
                for (guint j = 0; e->env && vars && j < json_array_get_length(vars); j++)
                        e->env[j] = strdup(json_array_get_string_element(vars, j));
                if (strlen(e->id) != 32 || !e->org || !e->ws || !e->name || !e->env ||
                    !unhex(json_object_get_string_member_with_default(o, "token_sha256", ""), e->token_hash, 32) ||
                    environment_set_paths(e) < 0) {
                        log_warning("Skipping a damaged entry in %s", store);
                        environment_free_memory(e);
                        continue;
                }
                (void) environment_make_dir(e);
                /* Nothing may run as its uid that an earlier daemon left behind. */
                kill_uid(e->uid);
                environment_link(m, e);
        }
        return 0;
}

void environments_free(Manager *m) {
        while (m->environments)
                environment_destroy(m->environments, false);
        m->state_dir = mfree(m->state_dir);
}

/* ---- execute ---- */

static char **environment_envp(Environment *e) {
        char **envp = calloc(1, sizeof *envp);

        if (!envp)
                return NULL;
        if (env_set(&envp, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") < 0 ||
            env_set(&envp, "LANG", "C.UTF-8") < 0)
                goto fail;
        for (size_t i = 0; e->env && e->env[i]; i++) {
                const char *eq = strchr(e->env[i], '=');
                _cleanup_(freep) char *name = eq ? strndup(e->env[i], (size_t) (eq - e->env[i])) : NULL;
                if (name && env_set(&envp, name, eq + 1) < 0)
                        goto fail;
        }
        /* Last: HOME is the environment's directory whatever its variables say. */
        if (env_set(&envp, "HOME", e->dir) < 0)
                goto fail;
        return envp;
fail:
        strv_freep(&envp);
        return NULL;
}

static bool take_token(Environment *e) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);

        e->bucket = MIN(ENV_BURST, e->bucket + (double) (now - e->bucket_usec) / USEC_PER_SEC * ENV_RATE);
        e->bucket_usec = now;
        if (e->bucket < 1.0)
                return false;
        e->bucket -= 1.0;
        return true;
}

/* Environments are the host's: root and the daemon's own user manage them; anyone else (the
 * bridge running as its own user, say) only with polkit's leave. Returns as polkit_authorize(). */
static int authorize(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        static const PolkitAction manage = { POLKIT_ACTION_ENVIRONMENTS };
        CallerClass class;
        uid_t uid;
        int k;

        k = manager_caller_identify(m, msg, &uid, &class);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot determine the caller's uid: %m");
        if (class == CALLER_PRIVILEGED)
                return 1;
        return polkit_authorize(m, msg, &manage, 1, error);
}

static int method_execute(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Environment *e = userdata;
        Manager *m = e->manager;
        _cleanup_(strv_freep) char **envp = NULL;
        const char *token, *command;
        uint8_t digest[32];
        uint32_t timeout_sec;
        CommandSpec spec = {};
        Command *c;
        uid_t caller;
        int k;

        k = authorize(m, msg, error);
        if (k <= 0)
                return k < 0 ? k : 1;
        k = manager_caller_uid(m, msg, &caller);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot determine the caller's uid: %m");
        k = sd_bus_message_read(msg, "ssu", &token, &command, &timeout_sec);
        if (k < 0)
                return k;
        sha256(token, digest);
        if (!digest_equal(digest, e->token_hash))
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "invalid environment token");
        if (!*command)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "command must not be empty");
        if (timeout_sec < 1 || timeout_sec > 600)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "timeout_sec must be from 1 to 600");
        if (e->running >= ENV_CONCURRENT_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "%d executes are already running in this environment; retry after 1 s",
                                         ENV_CONCURRENT_MAX);
        /* Counted with every other command, against the caller that asked (the bridge). */
        k = manager_check_running_limits(m, caller, error);
        if (k < 0)
                return k;
        if (!take_token(e))
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "rate limit of %g executes a second exceeded; retry after 1 s", ENV_RATE);
        if (m->stopping)
                return sd_bus_error_setf(error, EXECD_ERROR_BUSY, "The daemon is shutting down");

        envp = environment_envp(e);
        if (!envp)
                return -ENOMEM;
        spec.charge_uid = caller;
        spec.command_line = command;
        spec.envp = envp;
        spec.cwd = e->dir;
        if (e->uid != 0) {
                spec.set_user = true;
                spec.uid = e->uid;
                spec.gid = e->uid;
        }
        spec.background = true; /* the answer may outlive a restarting bridge; the command should too */
        spec.timeout_usec = (uint64_t) timeout_sec * USEC_PER_SEC;
        spec.merge_stderr = true;
        spec.env_limits = true;
        spec.nofile = &m->nofile;
        k = command_new(m, sd_bus_message_get_sender(msg), 0, &spec, &c, error);
        if (k < 0)
                return k;
        c->environment = e;
        c->execute_reply = sd_bus_message_ref(msg);
        e->running++;
        return 1;
}

void environment_execute_finished(Command *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = c->manager;
        size_t max = m->config.env_output_max, have = 0, first;
        uint64_t total = c->ring.total_bytes;
        bool truncated;
        int32_t exit_code;
        uint8_t *out;
        int k;

        if (c->environment) {
                c->environment->running--;
                c->environment = NULL;
        }
        /* A synchronous execute ends with its command: what it left running in the background
         * (still in its process group) goes too. */
        if (c->pid > 0)
                (void) kill(-c->pid, SIGKILL);
        if (!c->execute_reply)
                return;
        exit_code = c->timed_out ? 124 : c->signal > 0 ? 128 + c->signal : c->exit_code;
        /* The last bytes: what a command printed just before it ended says the most. */
        truncated = c->ring.truncated || total > max;
        out = malloc(MIN(max, (size_t) total) + 1);
        if (out) {
                first = c->ring.count;
                while (first > 0 && have + ring_at(&c->ring, first - 1)->size <= max) {
                        have += ring_at(&c->ring, first - 1)->size;
                        first--;
                }
                if (first > 0 && have < max) {
                        const RingChunk *part = ring_at(&c->ring, first - 1);
                        size_t take = max - have;
                        memcpy(out, part->data + part->size - take, take);
                        have = take;
                } else
                        have = 0;
                for (size_t i = first; i < c->ring.count; i++) {
                        const RingChunk *chunk = ring_at(&c->ring, i);
                        memcpy(out + have, chunk->data, chunk->size);
                        have += chunk->size;
                }
        }
        k = sd_bus_message_new_method_return(c->execute_reply, &reply);
        if (k >= 0)
                k = sd_bus_message_append(reply, "i", exit_code);
        if (k >= 0)
                k = sd_bus_message_append_array(reply, 'y', out ? out : (uint8_t *) "", out ? have : 0);
        if (k >= 0)
                k = sd_bus_message_append(reply, "bb", (int) truncated, (int) c->timed_out);
        if (k >= 0)
                k = sd_bus_send(NULL, reply, NULL);
        if (k < 0)
                (void) sd_bus_reply_method_errnof(c->execute_reply, k, "Cannot send the result: %m");
        free(out);
        c->execute_reply = sd_bus_message_unref(c->execute_reply);
}

static int method_delete(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Environment *e = userdata;
        Manager *m = e->manager;
        int k;

        k = authorize(m, msg, error);
        if (k <= 0)
                return k < 0 ? k : 1;
        environment_destroy(e, true);
        k = store_save(m);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "The environment is gone but the store could not be written: %m");
        return sd_bus_reply_method_return(msg, NULL);
}

static int property_get_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Environment *e = userdata;

        return sd_bus_message_append(reply, "s", e->id);
}

static int property_get_env(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Environment *e = userdata;

        return sd_bus_message_append_strv(reply, e->env);
}

const sd_bus_vtable environment_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Org", "s", NULL, offsetof(Environment, org), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Workspace", "s", NULL, offsetof(Environment, ws), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(Environment, name), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("CreatedAt", "x", NULL, offsetof(Environment, created_ms), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Uid", "u", NULL, offsetof(Environment, uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Directory", "s", NULL, offsetof(Environment, dir), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Env", "as", property_get_env, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Running", "u", NULL, offsetof(Environment, running), 0),
        SD_BUS_METHOD_WITH_ARGS("Execute", SD_BUS_ARGS("s", token, "s", command, "u", timeout_sec),
                                SD_BUS_RESULT("i", exit_code, "ay", output, "b", truncated, "b", timed_out),
                                method_execute, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Delete", NULL, NULL, method_delete, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

/* Environments are the host's: only root and the daemon's own user may read them. Their
 * methods are let through to ask polkit for anyone else; properties are not. */
int environment_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                            void **found, sd_bus_error *error) {
        Manager *m = userdata;
        Environment *e;

        if (strncmp(path, EXECD_ENVIRONMENT_PREFIX "/", strlen(EXECD_ENVIRONMENT_PREFIX "/")) != 0)
                return 0;
        e = manager_find_environment(m, path + strlen(EXECD_ENVIRONMENT_PREFIX "/"));
        if (!e)
                return 0;
        if (!manager_caller_may_access(m, 0, error)) {
                sd_bus_message *msg = sd_bus_get_current_message(bus);

                if (!msg || !sd_bus_message_is_method_call(msg, EXECD_ENVIRONMENT_INTERFACE, NULL))
                        return -EACCES;
                sd_bus_error_free(error);
        }
        *found = e;
        return 1;
}

int environment_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **l = NULL;
        size_t n = 0, k = 0;

        if (!manager_caller_sees(m, 0)) {
                *nodes = calloc(1, sizeof(char *));
                return *nodes ? 1 : -ENOMEM;
        }
        for (Environment *e = m->environments; e; e = e->next)
                n++;
        l = calloc(n + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (Environment *e = m->environments; e; e = e->next) {
                l[k] = strdup(e->path);
                if (!l[k++])
                        return -ENOMEM;
        }
        *nodes = TAKE_PTR(l);
        return 1;
}

/* ---- Manager methods ---- */

static uid_t allocate_uid(Manager *m) {
        if (m->euid != 0)
                return 0;
        for (uid_t uid = m->config.env_uid_min; uid <= m->config.env_uid_max && uid >= m->config.env_uid_min; uid++) {
                bool taken = false;
                for (Environment *e = m->environments; e && !taken; e = e->next)
                        taken = e->uid == uid;
                if (!taken)
                        return uid;
        }
        return (uid_t) -1;
}

int method_provision_environment(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **vars = NULL;
        const char *org, *ws, *name, *key, *value;
        Environment *e;
        sd_id128_t id;
        uint8_t raw[32];
        char token[65];
        size_t n = 0;
        int k;

        k = authorize(m, msg, error);
        if (k <= 0)
                return k < 0 ? k : 1;
        k = sd_bus_message_read(msg, "sss", &org, &ws, &name);
        if (k < 0)
                return k;
        if (!slug_valid(org) || !slug_valid(ws))
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "org and workspace must be 1 to %d characters of A-Z a-z 0-9 . _ -", ENV_NAME_MAX);
        if (!slug_valid(name))
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "name must be 1 to %d characters of A-Z a-z 0-9 . _ -", ENV_NAME_MAX);
        vars = calloc(1, sizeof *vars);
        if (!vars)
                return -ENOMEM;
        k = sd_bus_message_enter_container(msg, 'a', "{ss}");
        while (k >= 0 && (k = sd_bus_message_read(msg, "{ss}", &key, &value)) > 0) {
                char **grown;
                if (!env_name_is_valid(key))
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "invalid variable name '%s'", key);
                if (++n > ENV_VARS_MAX)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "at most %d variables",
                                                 ENV_VARS_MAX);
                grown = realloc(vars, (n + 1) * sizeof *vars);
                if (!grown)
                        return -ENOMEM;
                vars = grown;
                vars[n] = NULL;
                if (asprintf(&vars[n - 1], "%s=%s", key, value) < 0)
                        return -ENOMEM;
        }
        if (k < 0)
                return k;
        n = 0;
        for (e = m->environments; e; e = e->next)
                n++;
        if (n >= ENVIRONMENTS_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED, "too many environments (limit %d)",
                                         ENVIRONMENTS_MAX);
        for (e = m->environments; e; e = e->next)
                if (strcmp(e->org, org) == 0 && strcmp(e->ws, ws) == 0 && strcmp(e->name, name) == 0)
                        return sd_bus_error_setf(error, EXECD_ERROR_ALREADY_EXISTS,
                                                 "an environment named '%s' already exists in %s/%s", name, org, ws);

        e = environment_alloc(m);
        if (!e)
                return -ENOMEM;
        e->uid = allocate_uid(m);
        if (e->uid == (uid_t) -1) {
                environment_free_memory(e);
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED, "no free uid left for a new environment");
        }
        if (e->uid != 0) {
                _cleanup_(freep) char *envs = NULL;
                if (asprintf(&envs, "%s/environments", m->state_dir) < 0) {
                        environment_free_memory(e);
                        return -ENOMEM;
                }
                k = check_reachable(envs, error);
                if (k < 0) {
                        environment_free_memory(e);
                        return k;
                }
        }
        k = sd_id128_randomize(&id);
        if (k >= 0) {
                sd_id128_to_string(id, e->id);
                k = sd_id128_randomize((sd_id128_t *) raw);
        }
        if (k >= 0)
                k = sd_id128_randomize((sd_id128_t *) (raw + 16));
        if (k < 0) {
                environment_free_memory(e);
                return k;
        }
        hex(raw, 32, token);
        sha256(token, e->token_hash);
        e->org = strdup(org);
        e->ws = strdup(ws);
        e->name = strdup(name);
        e->env = TAKE_PTR(vars);
        e->created_ms = (int64_t) (now_usec(CLOCK_REALTIME) / 1000);
        if (!e->org || !e->ws || !e->name || environment_set_paths(e) < 0) {
                environment_free_memory(e);
                return -ENOMEM;
        }
        k = environment_make_dir(e);
        if (k < 0) {
                environment_free_memory(e);
                return sd_bus_error_set_errnof(error, k, "Cannot create the environment's directory: %m");
        }
        environment_link(m, e);
        k = store_save(m);
        if (k < 0) {
                environment_destroy(e, true);
                return sd_bus_error_set_errnof(error, k, "Cannot record the environment: %m");
        }
        log_info("provisioned environment %s (%s/%s/%s) as uid %u", e->id, org, ws, name, (unsigned) e->uid);
        return sd_bus_reply_method_return(msg, "oss", e->path, e->id, token);
}

int method_list_environments(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        const char *org, *ws;
        int k;

        k = authorize(m, msg, error);
        if (k <= 0)
                return k < 0 ? k : 1;
        k = sd_bus_message_read(msg, "ss", &org, &ws);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_return(msg, &reply);
        if (k >= 0)
                k = sd_bus_message_open_container(reply, 'a', "(ssssxasu)");
        for (Environment *e = m->environments; k >= 0 && e; e = e->next) {
                if ((*org && strcmp(org, e->org) != 0) || (*ws && strcmp(ws, e->ws) != 0))
                        continue;
                k = sd_bus_message_open_container(reply, 'r', "ssssxasu");
                if (k >= 0)
                        k = sd_bus_message_append(reply, "ssssx", e->id, e->org, e->ws, e->name, e->created_ms);
                if (k >= 0)
                        k = sd_bus_message_append_strv(reply, e->env);
                if (k >= 0)
                        k = sd_bus_message_append(reply, "u", e->running);
                if (k >= 0)
                        k = sd_bus_message_close_container(reply);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(reply);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}
