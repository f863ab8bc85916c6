/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "env.h"
#include "errors.h"
#include "execd.h"
#include "log.h"
#include "macro.h"
#include "context.h"
#include "environment.h"
#include "files.h"
#include "groups.h"
#include "metrics.h"
#include "polkit.h"

/* Outgoing bus queue watermarks, in messages (each at most one 64 KiB chunk). */
#define BUS_QUEUE_HIGH 32
#define BUS_QUEUE_LOW 8
#define CALLER_CACHE_MAX 256

const sd_bus_error_map execd_error_map[] = {
        SD_BUS_ERROR_MAP(EXECD_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(EXECD_ERROR_NOT_FOUND, ENOENT),
        SD_BUS_ERROR_MAP(EXECD_ERROR_NOT_OWNER, EACCES),
        SD_BUS_ERROR_MAP(EXECD_ERROR_NOT_RUNNING, ESRCH),
        SD_BUS_ERROR_MAP(EXECD_ERROR_LIMITS_EXCEEDED, EUSERS),
        SD_BUS_ERROR_MAP(EXECD_ERROR_START_FAILED, ENOEXEC),
        SD_BUS_ERROR_MAP(EXECD_ERROR_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(EXECD_ERROR_ALREADY_EXISTS, EEXIST),
        SD_BUS_ERROR_MAP(EXECD_ERROR_IS_DIRECTORY, EISDIR),
        SD_BUS_ERROR_MAP(EXECD_ERROR_NOT_DIRECTORY, ENOTDIR),
        SD_BUS_ERROR_MAP(EXECD_ERROR_INVALID_PATH, ENAMETOOLONG),
        SD_BUS_ERROR_MAP_END
};

static void caller_forget(Manager *m, const char *name) {
        for (size_t i = 0; i < m->n_callers; i++)
                if (strcmp(m->callers[i].name, name) == 0) {
                        free(m->callers[i].name);
                        m->callers[i] = m->callers[--m->n_callers];
                        return;
                }
}

/* Membership as dbus-daemon's policy sees it: the user database's groups of the uid, not the
 * groups the calling process happens to hold. */
static CallerClass classify_uid(Manager *m, uid_t uid) {
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;
        char buf[16384], gbuf[16384];
        gid_t groups[256];
        int n = (int) ELEMENTSOF(groups);

        if (uid == 0 || uid == m->euid)
                return CALLER_PRIVILEGED;
        if (getgrnam_r(EXECD_GROUP, &gr, gbuf, sizeof gbuf, &grp) != 0 || !grp)
                return CALLER_OTHER;
        if (getpwuid_r(uid, &pw, buf, sizeof buf, &pwp) != 0 || !pwp)
                return CALLER_OTHER;
        if (pwp->pw_gid == grp->gr_gid)
                return CALLER_MEMBER;
        if (getgrouplist(pwp->pw_name, pwp->pw_gid, groups, &n) < 0)
                n = 0;
        for (int i = 0; i < n; i++)
                if (groups[i] == grp->gr_gid)
                        return CALLER_MEMBER;
        return CALLER_OTHER;
}

int manager_caller_identify(Manager *m, sd_bus_message *msg, uid_t *ret_uid, CallerClass *ret_class) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *sender = sd_bus_message_get_sender(msg);
        CallerClass class;
        uid_t uid;
        int k;

        if (!sender)
                return -EPERM;
        for (size_t i = 0; i < m->n_callers; i++)
                if (strcmp(m->callers[i].name, sender) == 0) {
                        *ret_uid = m->callers[i].uid;
                        if (ret_class)
                                *ret_class = m->callers[i].class;
                        return 0;
                }

        k = sd_bus_get_name_creds(m->bus, sender, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID, &creds);
        if (k < 0)
                return k;
        k = sd_bus_creds_get_euid(creds, &uid);
        if (k < 0)
                k = sd_bus_creds_get_uid(creds, &uid);
        if (k < 0)
                return k;
        class = classify_uid(m, uid);

        /* Entries leave when their name leaves the bus; a full cache simply starts over. */
        if (m->n_callers == CALLER_CACHE_MAX) {
                for (size_t i = 0; i < m->n_callers; i++)
                        free(m->callers[i].name);
                m->n_callers = 0;
        }
        if (!m->callers)
                m->callers = calloc(CALLER_CACHE_MAX, sizeof *m->callers);
        if (m->callers) {
                char *name = strdup(sender);
                if (name)
                        m->callers[m->n_callers++] = (CallerEntry) { .name = name, .uid = uid, .class = class };
        }
        *ret_uid = uid;
        if (ret_class)
                *ret_class = class;
        return 0;
}

int manager_caller_uid(Manager *m, sd_bus_message *msg, uid_t *ret) {
        return manager_caller_identify(m, msg, ret, NULL);
}

/* Starting something that runs code: members and the privileged may; anyone else asks polkit,
 * and running as another uid asks polkit for everyone but the privileged. Returns as
 * polkit_authorize() does. */
int manager_authorize_run(Manager *m, sd_bus_message *msg, const uint32_t *target_uid, sd_bus_error *error) {
        PolkitAction actions[2];
        char uid_text[16];
        CallerClass class;
        size_t n = 0;
        uid_t caller;
        int k;

        k = manager_caller_identify(m, msg, &caller, &class);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot determine the caller's uid: %m");
        if (class == CALLER_PRIVILEGED)
                return 1;
        /* Without polkit, whoever the bus lets through may run as themselves. */
        if (class == CALLER_OTHER && m->config.polkit)
                actions[n++] = (PolkitAction) { POLKIT_ACTION_RUN };
        if (target_uid && *target_uid != caller) {
                (void) snprintf(uid_text, sizeof uid_text, "%u", (unsigned) *target_uid);
                actions[n++] = (PolkitAction) { POLKIT_ACTION_RUN_AS_USER, "uid", uid_text };
        }
        return polkit_authorize(m, msg, actions, n, error);
}

/* Root and the daemon's own user see everything; others only what they own. Calls made by
 * the daemon itself (emitting, no current method call) are always allowed. */
bool manager_caller_may_access(Manager *m, uid_t owner_uid, sd_bus_error *error) {
        sd_bus_message *msg = sd_bus_get_current_message(m->bus);
        uint8_t type;
        uid_t uid;

        if (!msg || sd_bus_message_get_type(msg, &type) < 0 || type != SD_BUS_MESSAGE_METHOD_CALL)
                return true;
        if (manager_caller_uid(m, msg, &uid) < 0) {
                sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's uid");
                return false;
        }
        if (uid == 0 || uid == m->euid || uid == owner_uid)
                return true;
        sd_bus_error_setf(error, EXECD_ERROR_NOT_OWNER, "Object belongs to uid %u", (unsigned) owner_uid);
        return false;
}

bool manager_caller_sees(Manager *m, uid_t owner_uid) {
        sd_bus_error ignored = SD_BUS_ERROR_NULL;
        bool visible = manager_caller_may_access(m, owner_uid, &ignored);

        sd_bus_error_free(&ignored);
        return visible;
}

typedef struct RunOptions {
        char *cwd;
        char **envs; /* name, value, name, value, ..., NULL */
        uint64_t timeout_ms;
        bool has_uid, has_gid, background;
        uint32_t uid, gid;
        uint64_t ack_window;
} RunOptions;

static void run_options_done(RunOptions *o) {
        free(o->cwd);
        strv_freep(&o->envs);
}

static int read_variant(sd_bus_message *msg, const char *key, const char *want, sd_bus_error *error) {
        const char *contents;
        char type;
        int k;

        k = sd_bus_message_peek_type(msg, &type, &contents);
        if (k < 0)
                return k;
        if (type != 'v' || strcmp(contents, want) != 0)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "Option '%s' must be of type '%s', got '%s'", key, want, contents);
        return sd_bus_message_enter_container(msg, 'v', want);
}

static int read_envs(sd_bus_message *msg, RunOptions *o, sd_bus_error *error) {
        size_t n = 0;
        int k;

        k = sd_bus_message_enter_container(msg, 'a', "{ss}");
        if (k < 0)
                return k;
        for (;;) {
                const char *name, *value;
                char **l;

                k = sd_bus_message_read(msg, "{ss}", &name, &value);
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                if (!env_name_is_valid(name))
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                                 "Invalid environment variable name '%s'", name);
                l = realloc(o->envs, (n + 3) * sizeof *l);
                if (!l)
                        return -ENOMEM;
                o->envs = l;
                l[n] = strdup(name);
                l[n + 1] = strdup(value);
                l[n + 2] = NULL;
                if (!l[n] || !l[n + 1])
                        return -ENOMEM;
                n += 2;
        }
        return sd_bus_message_exit_container(msg);
}

static int read_run_options(sd_bus_message *msg, RunOptions *o, sd_bus_error *error) {
        int k;

        k = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (k < 0)
                return k;
        for (;;) {
                const char *key;

                k = sd_bus_message_enter_container(msg, 'e', "sv");
                if (k < 0)
                        return k;
                if (k == 0)
                        break;
                k = sd_bus_message_read(msg, "s", &key);
                if (k < 0)
                        return k;

                if (strcmp(key, "cwd") == 0) {
                        const char *s;
                        k = read_variant(msg, key, "s", error);
                        if (k >= 0)
                                k = sd_bus_message_read(msg, "s", &s);
                        if (k >= 0) {
                                free(o->cwd);
                                o->cwd = strdup(s);
                                if (!o->cwd)
                                        k = -ENOMEM;
                        }
                } else if (strcmp(key, "envs") == 0) {
                        k = read_variant(msg, key, "a{ss}", error);
                        if (k >= 0)
                                k = read_envs(msg, o, error);
                } else if (strcmp(key, "timeout_ms") == 0) {
                        k = read_variant(msg, key, "t", error);
                        if (k >= 0)
                                k = sd_bus_message_read(msg, "t", &o->timeout_ms);
                } else if (strcmp(key, "uid") == 0) {
                        k = read_variant(msg, key, "u", error);
                        if (k >= 0)
                                k = sd_bus_message_read(msg, "u", &o->uid);
                        o->has_uid = true;
                } else if (strcmp(key, "gid") == 0) {
                        k = read_variant(msg, key, "u", error);
                        if (k >= 0)
                                k = sd_bus_message_read(msg, "u", &o->gid);
                        o->has_gid = true;
                } else if (strcmp(key, "background") == 0) {
                        int b = 0;
                        k = read_variant(msg, key, "b", error);
                        if (k >= 0)
                                k = sd_bus_message_read(msg, "b", &b);
                        o->background = b;
                } else if (strcmp(key, "ack_window") == 0) {
                        k = read_variant(msg, key, "t", error);
                        if (k >= 0)
                                k = sd_bus_message_read(msg, "t", &o->ack_window);
                } else
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "Unknown option '%s'", key);
                if (k < 0)
                        return k;
                k = sd_bus_message_exit_container(msg); /* variant */
                if (k >= 0)
                        k = sd_bus_message_exit_container(msg); /* dict entry */
                if (k < 0)
                        return k;
        }
        return sd_bus_message_exit_container(msg);
}

/* Who the command runs as. Root and the daemon's own user may pick any uid, and so may whoever
 * polkit allowed to (uid_authorized); anyone else runs as themselves. */
static int resolve_user(Manager *m, uid_t caller, bool uid_authorized, RunOptions *o, CommandSpec *spec,
                        sd_bus_error *error) {
        bool privileged = caller == 0 || caller == m->euid;
        struct passwd pw, *pwp = NULL;
        char buf[16384];
        uid_t uid;
        gid_t gid;

        if (o->has_gid && !o->has_uid)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "uid is required when gid is provided");
        if (!privileged && !uid_authorized && o->has_uid && o->uid != caller)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "uid %u may not run commands as uid %u", (unsigned) caller, (unsigned) o->uid);
        if (!o->has_uid && privileged)
                return 0; /* run as the daemon */

        uid = o->has_uid ? o->uid : caller;
        if (uid == m->euid && !o->has_gid)
                return 0;
        if (m->euid != 0)
                return sd_bus_error_setf(error, EXECD_ERROR_START_FAILED,
                                         "Failed to start command: the daemon is not root and cannot switch to uid %u",
                                         (unsigned) uid);

        (void) getpwuid_r(uid, &pw, buf, sizeof buf, &pwp);
        gid = o->has_gid ? o->gid : pwp ? pwp->pw_gid : (gid_t) uid;
        if (!privileged && !uid_authorized && o->has_gid && (!pwp || gid != pwp->pw_gid))
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "gid %u is not allowed", (unsigned) gid);

        spec->set_user = true;
        spec->uid = uid;
        spec->gid = gid;
        spec->n_groups = 0;
        if (pwp) {
                int n = 64;
                for (int tries = 0; tries < 4; tries++) {
                        gid_t *g = realloc(spec->groups, (size_t) n * sizeof *g);
                        if (!g)
                                return -ENOMEM;
                        spec->groups = g;
                        if (getgrouplist(pwp->pw_name, gid, g, &n) >= 0) {
                                spec->n_groups = n;
                                break;
                        }
                }
        }
        return 0;
}

static int build_environment(RunOptions *o, char ***ret) {
        _cleanup_(strv_freep) char **envp = NULL;
        const char *file;
        int k;

        envp = env_copy(environ);
        if (!envp)
                return -ENOMEM;
        file = getenv("EXECD_ENVS");
        if (file && *file) {
                _cleanup_(freep) char *path = NULL;
                if (expand_path(file, environ, &path, NULL) >= 0) {
                        k = env_merge_file(&envp, path, environ);
                        if (k < 0)
                                log_warning_errno(k, "Failed to read EXECD_ENVS file %s: %m", path);
                }
        }
        for (size_t i = 0; o->envs && o->envs[i]; i += 2) {
                k = env_set(&envp, o->envs[i], o->envs[i + 1]);
                if (k < 0)
                        return k;
        }
        *ret = TAKE_PTR(envp);
        return 0;
}

/* The shell script that runs a session's command in the same shell, then hands the shell's
 * final state (working directory and exported environment, NUL-separated, so any value
 * survives) to the daemon on fd 4. It runs from the EXIT trap, so `cd`, `export` and even
 * `exit 3` inside the command are all seen. The end marker follows only a complete dump: an
 * environment too large to pass to env(1) leaves the session's state as it was. */
#define SESSION_PRELUDE \
        "trap '__execd_status=$?; { builtin printf \"%s\\0\" \"$PWD\"; /usr/bin/env -0 && " \
        "builtin printf \"" SESSION_STATE_END "\\0\"; } >&4 2>/dev/null; exit $__execd_status' EXIT\n"

int manager_run(Manager *m, sd_bus_message *msg, Session *session, sd_bus_error *error) {
        _cleanup_(run_options_done) RunOptions o = {};
        _cleanup_(strv_freep) char **envp = NULL;
        _cleanup_(freep) char *cwd = NULL, *missing = NULL, *script = NULL;
        _cleanup_(freep) gid_t *groups = NULL;
        CommandSpec spec = {};
        const char *command_line;
        Command *c;
        uid_t caller;
        int k;

        k = sd_bus_message_read(msg, "s", &command_line);
        if (k < 0)
                return k;
        k = read_run_options(msg, &o, error);
        if (k < 0 || sd_bus_error_is_set(error))
                return k;
        if (!*command_line)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "The command must not be empty");
        if (session && (o.envs || o.has_uid || o.has_gid))
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "A session run takes only the options cwd, timeout_ms, background and ack_window");
        if (m->stopping)
                return sd_bus_error_setf(error, EXECD_ERROR_BUSY, "The daemon is shutting down");

        k = manager_caller_uid(m, msg, &caller);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot determine the caller's uid: %m");
        /* A session's runs were authorized when it was created. */
        if (!session) {
                k = manager_authorize_run(m, msg, o.has_uid ? &o.uid : NULL, error);
                if (k <= 0)
                        return k < 0 ? k : 1;
        }

        if (session)
                envp = env_copy(session->env);
        else
                k = build_environment(&o, &envp);
        if (k < 0 || !envp)
                return k < 0 ? k : -ENOMEM;
        if (o.cwd && *o.cwd) {
                struct stat st;

                /* Expanded with the environment the command will see. */
                k = expand_path(o.cwd, envp, &cwd, &missing);
                if (k == -ENXIO)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                                 "cannot resolve working directory \"%s\": path references undefined environment variables: %s",
                                                 o.cwd, missing);
                if (k < 0)
                        return k;
                if (stat(cwd, &st) < 0)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                                 "working directory does not exist: %s: %s", o.cwd, strerror(errno));
                if (!S_ISDIR(st.st_mode))
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                                 "working directory path is not a directory: %s", o.cwd);
        }

        /* A session's runs are its owner's, whoever asks for them (root may use any session). */
        k = resolve_user(m, session ? session->owner_uid : caller, !session && o.has_uid && o.uid != caller, &o,
                         &spec, error);
        groups = spec.groups;
        if (k < 0 || sd_bus_error_is_set(error))
                return k;

        k = manager_check_running_limits(m, caller, error);
        if (k < 0)
                return k;
        if (o.timeout_ms > UINT64_MAX / USEC_PER_MSEC)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "timeout_ms is too large");

        if (session) {
                if (asprintf(&script, "%s%s", SESSION_PRELUDE, command_line) < 0)
                        return -ENOMEM;
                command_line = script;
                struct stat st;

                /* A session directory removed meanwhile: start in the daemon's, as `cd` failing would. */
                if (!cwd && session->cwd && stat(session->cwd, &st) == 0 && S_ISDIR(st.st_mode)) {
                        cwd = strdup(session->cwd);
                        if (!cwd)
                                return -ENOMEM;
                }
                spec.session_state = true;
                spec.merge_stderr = true;
        }
        spec.charge_uid = caller;
        spec.command_line = command_line;
        spec.envp = envp;
        spec.cwd = cwd;
        spec.background = o.background;
        spec.timeout_usec = o.timeout_ms * USEC_PER_MSEC;
        spec.ack_window = o.ack_window;
        spec.nofile = &m->nofile;

        k = command_new(m, sd_bus_message_get_sender(msg), caller, &spec, &c, error);
        if (k < 0)
                return k;
        if (session)
                session_add_run(session, c);
        return sd_bus_reply_method_return(msg, "o", c->path);
}

static int method_run_command(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return manager_run(userdata, msg, NULL, error);
}

static int method_list_sessions(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int k;

        k = sd_bus_message_new_method_return(msg, &reply);
        if (k >= 0)
                k = sd_bus_message_open_container(reply, 'a', "o");
        for (Session *s = m->sessions; k >= 0 && s; s = s->next) {
                bool visible = manager_caller_sees(m, s->owner_uid);
                if (visible)
                        k = sd_bus_message_append(reply, "o", s->path);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(reply);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_create_session(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(run_options_done) RunOptions o = {};
        _cleanup_(freep) char *cwd = NULL;
        Session *s;
        uid_t caller;
        int k;

        k = read_run_options(msg, &o, error);
        if (k < 0 || sd_bus_error_is_set(error))
                return k;
        if (o.envs || o.background || o.has_uid || o.has_gid || o.timeout_ms || o.ack_window)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "CreateSession takes only the option cwd");
        k = manager_caller_uid(m, msg, &caller);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Cannot determine the caller's uid: %m");
        k = manager_authorize_run(m, msg, NULL, error);
        if (k <= 0)
                return k < 0 ? k : 1;
        /* Before the directory is made: a refused call creates nothing. */
        k = session_check_limits(m, caller, error);
        if (k < 0)
                return k;
        if (o.cwd && *o.cwd) {
                FileCaller fc = {};

                /* Created if missing, with the caller's rights, as the reference does. */
                k = files_expand(o.cwd, &cwd, error);
                if (k >= 0)
                        k = files_caller_enter(m->files, msg, &fc, error);
                if (k >= 0)
                        k = files_mkdir_p(cwd, 0777, error);
                files_caller_leave(&fc);
                if (k < 0)
                        return k;
        }
        k = session_new(m, caller, cwd, &s, error);
        if (k < 0)
                return k;
        return sd_bus_reply_method_return(msg, "o", s->path);
}


static const char *const log_level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit", [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

static int property_get_log_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        int level = log_get_max_level();

        return sd_bus_message_append(reply, "s", level >= 0 && level <= LOG_DEBUG ? log_level_names[level] : "info");
}

/* Changed at run time (busctl set-property), by root and the daemon's user only. */
static int property_set_log_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *value, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        int k;

        if (!manager_caller_may_access(m, 0, error))
                return -EACCES;
        k = sd_bus_message_read(value, "s", &name);
        if (k < 0)
                return k;
        for (int level = 0; level <= LOG_DEBUG; level++)
                if (strcmp(name, log_level_names[level]) == 0) {
                        log_set_max_level(level);
                        log_info("log level set to %s", name);
                        return 1;
                }
        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                 "unknown log level '%s' (emerg, alert, crit, err, warning, notice, info, debug)", name);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", EXECD_VERSION);
}

const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", property_get_log_level, property_set_log_level, 0,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RunCommand", SD_BUS_ARGS("s", command, "a{sv}", options),
                                SD_BUS_RESULT("o", command_path), method_run_command, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CreateSession", SD_BUS_ARGS("a{sv}", options), SD_BUS_RESULT("o", session_path),
                                method_create_session, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListSessions", SD_BUS_NO_ARGS, SD_BUS_RESULT("ao", session_paths),
                                method_list_sessions, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ProvisionEnvironment",
                                SD_BUS_ARGS("s", org, "s", workspace, "s", name, "a{ss}", env),
                                SD_BUS_RESULT("o", environment_path, "s", id, "s", token),
                                method_provision_environment, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListEnvironments", SD_BUS_ARGS("s", org, "s", workspace),
                                SD_BUS_RESULT("a(ssssxasu)", environments), method_list_environments,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CreateContext", SD_BUS_ARGS("s", language, "a{sv}", options),
                                SD_BUS_RESULT("o", context_path), method_create_context, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("DefaultContext", SD_BUS_ARGS("s", language), SD_BUS_RESULT("o", context_path),
                                method_default_context, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListContexts", SD_BUS_ARGS("s", language), SD_BUS_RESULT("a(ss)", contexts),
                                method_list_contexts, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

static void manager_remove_command(Manager *m, Command *c) {
        if (c->prev)
                c->prev->next = c->next;
        else
                m->commands_head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        else
                m->commands_tail = c->prev;
        if (!c->running)
                m->n_finished--;
        command_free(c);
}

static int on_retention_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* Drop finished commands beyond the count cap or older than the age cap, and arm the timer
 * for the next expiry only while there is one (no wake-ups on an idle daemon). */
static void manager_apply_retention(Manager *m) {
        uint64_t now, next = UINT64_MAX;
        struct timespec ts;
        bool removed = false;

        clock_gettime(CLOCK_REALTIME, &ts);
        now = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;

        for (Command *c = m->commands_head, *n; c; c = n) {
                n = c->next;
                if (c->running)
                        continue;
                if (m->n_finished > m->config.retain_count || c->finished_at + m->config.retain_usec <= now) {
                        manager_remove_command(m, c);
                        removed = true;
                } else
                        next = MIN(next, c->finished_at + m->config.retain_usec);
        }
        if (removed)
                (void) malloc_trim(0); /* give freed rings back, keeping idle RSS low */

        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(m->retention_timer, SD_EVENT_OFF);
                return;
        }
        if (!m->retention_timer)
                (void) sd_event_add_time(m->event, &m->retention_timer, CLOCK_REALTIME, next,
                                         USEC_PER_SEC, on_retention_timer, m);
        else {
                (void) sd_event_source_set_time(m->retention_timer, next);
                (void) sd_event_source_set_enabled(m->retention_timer, SD_EVENT_ONESHOT);
        }
}

static int on_retention_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        manager_apply_retention(userdata);
        return 0;
}

int manager_check_limit(const char *what, unsigned n_total, unsigned max_total, const char *total_option,
                        uid_t uid, unsigned n_uid, unsigned max_uid, const char *uid_option, sd_bus_error *error) {
        if (n_total >= max_total)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "Too many %s: %u of %u in all (limit --%s=%u)", what, n_total, max_total,
                                         total_option, max_total);
        if (n_uid >= max_uid)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "Too many %s for uid %u: %u of %u (limit --%s=%u)", what, (unsigned) uid,
                                         n_uid, max_uid, uid_option, max_uid);
        return 0;
}

/* Running commands are counted against the caller that asked for them, root included. */
int manager_check_running_limits(Manager *m, uid_t uid, sd_bus_error *error) {
        unsigned n_uid = 0;

        if (m->n_running < m->config.max_running)
                for (Command *c = m->commands_head; c; c = c->next)
                        if (c->running && c->charge_uid == uid)
                                n_uid++;
        return manager_check_limit("running commands", m->n_running, m->config.max_running, "max-running", uid,
                                   n_uid, m->config.max_running_per_uid, "max-running-per-uid", error);
}

void manager_command_finished(Manager *m, Command *c) {
        m->n_running--;
        m->n_finished++;
        if (m->stopping && m->n_running == 0)
                (void) sd_event_exit(m->event, 0);
        manager_apply_retention(m);
}

void manager_check_backpressure(Manager *m) {
        uint64_t queued = 0;
        bool throttled;

        (void) sd_bus_get_n_queued_write(m->bus, &queued);
        throttled = m->throttled ? queued > BUS_QUEUE_LOW : queued >= BUS_QUEUE_HIGH;
        if (throttled == m->throttled)
                return;
        m->throttled = throttled;
        log_debug("bus queue at %" PRIu64 " messages: %s reading output", queued, throttled ? "pausing" : "resuming");
        for (Command *c = m->commands_head; c; c = c->next)
                command_update_reading(c);
}

/* Runs after every dispatched event: the bus becoming writable is what ends throttling. */
static int on_post(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        if (m->throttled)
                manager_check_backpressure(m);
        return 0;
}

static void owner_update_commands(Owner *o) {
        for (Command *c = o->manager->commands_head; c; c = c->next)
                if (c->owner == o)
                        command_update_reading(c);
}

static int on_ping_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);

static void owner_ping(Owner *o) {
        int k;

        o->ping_mark = o->sent;
        k = sd_bus_call_method_async(o->manager->bus, &o->ping_slot, o->name, "/", "org.freedesktop.DBus.Peer",
                                     "Ping", on_ping_reply, o, NULL);
        if (k < 0)
                log_debug_errno(k, "Failed to ping %s: %m", o->name);
}

static int on_ping_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Owner *o = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        o->ping_slot = sd_bus_slot_unref(o->ping_slot);
        /* Any answer but a time-out was written after our output and read after it. */
        if (!e || !sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                o->confirmed = o->ping_mark;
        if (!o->gone && o->sent - o->confirmed >= OWNER_PING_EVERY)
                owner_ping(o);
        owner_update_commands(o);
        return 0;
}

Owner *manager_owner_ref(Manager *m, const char *name) {
        Owner *o;

        for (o = m->owners; o; o = o->next)
                if (!o->gone && strcmp(o->name, name) == 0) {
                        o->n_refs++;
                        return o;
                }
        o = calloc(1, sizeof *o);
        if (!o)
                return NULL;
        o->name = strdup(name);
        if (!o->name) {
                free(o);
                return NULL;
        }
        o->manager = m;
        o->n_refs = 1;
        o->next = m->owners;
        if (m->owners)
                m->owners->prev = o;
        m->owners = o;
        return o;
}

void owner_unref(Owner *o) {
        if (!o || --o->n_refs > 0)
                return;
        if (o->prev)
                o->prev->next = o->next;
        else
                o->manager->owners = o->next;
        if (o->next)
                o->next->prev = o->prev;
        sd_bus_slot_unref(o->ping_slot);
        free(o->name);
        free(o);
}

void owner_sent(Owner *o, uint64_t bytes) {
        o->sent += bytes;
        if (!o->gone && !o->ping_slot && o->sent - o->confirmed >= OWNER_PING_EVERY)
                owner_ping(o);
}

bool owner_congested(const Owner *o) {
        return !o->gone && o->sent - o->confirmed >= OWNER_PAUSE_AT;
}

static int on_name_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (name[0] != ':' || *new_owner)
                return 0;
        caller_forget(m, name);
        polkit_name_gone(m, name);
        metrics_name_gone(m->metrics, name);
        files_name_gone(m->files, name);
        for (Owner *o = m->owners; o; o = o->next)
                if (!o->gone && strcmp(o->name, name) == 0) {
                        o->gone = true;
                        o->ping_slot = sd_bus_slot_unref(o->ping_slot);
                }
        for (Command *c = m->commands_head; c; c = c->next)
                if (!c->owner_gone && strcmp(c->owner_name, name) == 0)
                        command_owner_gone(c);
        return 0;
}

static int on_sigchld(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return manager_reap_children(userdata);
}

static int on_stop_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        /* Second expiry: SIGKILL was sent a second ago; do not wait for ever on the kernel. */
        if (m->n_running == 0 || m->stop_killed) {
                (void) sd_event_exit(m->event, 0);
                return 0;
        }
        for (Command *c = m->commands_head; c; c = c->next)
                if (c->running)
                        (void) command_signal(c, SIGKILL);
        m->stop_killed = true;
        (void) sd_event_source_set_time_relative(s, USEC_PER_SEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

void manager_stop(Manager *m) {
        if (m->stopping)
                return;
        m->stopping = true;
        log_info("stopping: terminating %u running command(s)", m->n_running);
        if (m->n_running == 0) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        for (Command *c = m->commands_head; c; c = c->next)
                if (c->running) {
                        (void) command_signal(c, SIGTERM);
                        (void) command_signal(c, SIGCONT);
                }
        (void) sd_event_add_time_relative(m->event, &m->stop_timer, CLOCK_MONOTONIC,
                                          m->config.kill_grace_usec, TIMER_ACCURACY_USEC, on_stop_timer, m);
}

/* Directories of daemons that died without cleaning up (kernels-PID with no such process), and
 * the commands and kernels those daemons left running (groups.h). */
static void remove_stale_runtime_dirs(const char *parent) {
        DIR *d = opendir(parent);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                sd_bus_error ignored = SD_BUS_ERROR_NULL;
                _cleanup_(freep) char *path = NULL;
                char *end;
                long pid;

                if (strncmp(de->d_name, "kernels-", 8) != 0)
                        continue;
                pid = strtol(de->d_name + 8, &end, 10);
                if (*end || pid <= 0 || (kill((pid_t) pid, 0) == 0 || errno != ESRCH))
                        continue;
                if (asprintf(&path, "%s/%s", parent, de->d_name) < 0)
                        break;
                groups_kill_marked(path);
                if (files_remove_tree(path, &ignored) >= 0)
                        log_debug("removed %s, left by a daemon that is gone", path);
                sd_bus_error_free(&ignored);
        }
        closedir(d);
}

/* Kernels need a directory for their connection files and ipc sockets: the service's runtime
 * directory, else /run/execd (root) or $XDG_RUNTIME_DIR/execd; one per daemon inside it. It
 * is 0711 so a kernel running as another user can reach its own 0700 subdirectory. */
static int manager_make_runtime_dir(Manager *m) {
        const char *base = getenv("RUNTIME_DIRECTORY");
        _cleanup_(freep) char *parent = NULL;
        char *dir;

        if (base && *base)
                parent = strdup(base);
        else if (m->euid == 0)
                parent = strdup("/run/execd");
        else if (getenv("XDG_RUNTIME_DIR"))
                (void) asprintf(&parent, "%s/execd", getenv("XDG_RUNTIME_DIR"));
        else
                (void) asprintf(&parent, "/tmp/execd-%u", (unsigned) m->euid);
        if (!parent)
                return -ENOMEM;
        if (mkdir(parent, 0711) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create %s: %m", parent);
        remove_stale_runtime_dirs(parent);
        if (asprintf(&dir, "%s/kernels-%d", parent, (int) getpid()) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0711) < 0 && errno != EEXIST) {
                int e = errno;
                free(dir);
                return log_error_errno(e, "Cannot create the kernels' runtime directory: %m");
        }
        (void) chmod(dir, 0711);
        m->runtime_dir = dir;
        return 0;
}

static const struct {
        const char *prefix, *interface;
        const sd_bus_vtable *vtable;
        sd_bus_object_find_t find;
        sd_bus_node_enumerator_t enumerate;
} object_kinds[] = {
        { EXECD_COMMAND_PREFIX, EXECD_COMMAND_INTERFACE, command_vtable, command_object_find, command_node_enumerator },
        { EXECD_CONTEXT_PREFIX, EXECD_CONTEXT_INTERFACE, context_vtable, context_object_find, context_node_enumerator },
        { EXECD_ENVIRONMENT_PREFIX, EXECD_ENVIRONMENT_INTERFACE, environment_vtable, environment_object_find,
          environment_node_enumerator },
        { EXECD_SESSION_PREFIX, EXECD_SESSION_INTERFACE, session_vtable, session_object_find, session_node_enumerator },
};

int manager_new(sd_event *event, sd_bus *bus, const Config *config, Manager **ret) {
        _cleanup_(freep) Manager *m = NULL;
        sd_event_source *s;
        int k;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);
        m->bus = sd_bus_ref(bus);
        m->config = *config;
        m->euid = geteuid();
        m->shell = access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
        /* Each uncommitted write holds two descriptors and each command a few: raise the soft
         * limit to the hard one (commands get the original back). */
        if (getrlimit(RLIMIT_NOFILE, &m->nofile) == 0 && m->nofile.rlim_cur < m->nofile.rlim_max) {
                struct rlimit raised = { .rlim_cur = m->nofile.rlim_max, .rlim_max = m->nofile.rlim_max };
                if (setrlimit(RLIMIT_NOFILE, &raised) < 0)
                        log_warning_errno(errno, "Failed to raise the descriptor limit: %m");
        }

        k = sd_bus_add_object_vtable(bus, NULL, EXECD_OBJECT_PATH, EXECD_MANAGER_INTERFACE, manager_vtable, m);
        if (k < 0)
                return k;
        k = manager_make_runtime_dir(m);
        if (k < 0)
                return k;
        k = environments_load(m);
        if (k < 0)
                return k;
        /* Every kind of object below the manager: who may see one is decided in its find. */
        for (size_t i = 0; i < ELEMENTSOF(object_kinds); i++) {
                k = sd_bus_add_fallback_vtable(bus, NULL, object_kinds[i].prefix, object_kinds[i].interface,
                                               object_kinds[i].vtable, object_kinds[i].find, m);
                if (k >= 0)
                        k = sd_bus_add_node_enumerator(bus, NULL, object_kinds[i].prefix, object_kinds[i].enumerate, m);
                if (k < 0)
                        return k;
        }
        k = sd_bus_add_object_manager(bus, NULL, EXECD_OBJECT_PATH);
        if (k < 0)
                return k;
        k = metrics_new(m, config->cgroup_dir, &m->metrics);
        if (k < 0)
                return k;
        k = files_new(m, bus, &m->files);
        if (k < 0)
                return k;
        k = sd_bus_match_signal(bus, NULL, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                "org.freedesktop.DBus", "NameOwnerChanged", on_name_owner_changed, m);
        if (k < 0)
                return k;
        k = sd_event_add_signal(event, &s, SIGCHLD, on_sigchld, m);
        if (k < 0)
                return k;
        (void) sd_event_source_set_floating(s, true);
        sd_event_source_unref(s);
        k = sd_event_add_post(event, &m->backpressure_check, on_post, m);
        if (k < 0)
                return k;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        while (m->sessions)
                session_free(m->sessions);
        while (m->contexts)
                context_free(m->contexts);
        environments_free(m);
        if (m->runtime_dir)
                (void) rmdir(m->runtime_dir);
        free(m->runtime_dir);
        while (m->commands_head)
                manager_remove_command(m, m->commands_head);
        metrics_free(m->metrics);
        files_free(m->files);
        polkit_free_all(m);
        for (size_t i = 0; i < m->n_callers; i++)
                free(m->callers[i].name);
        free(m->callers);
        sd_event_source_disable_unref(m->retention_timer);
        sd_event_source_disable_unref(m->backpressure_check);
        sd_event_source_disable_unref(m->stop_timer);
        sd_bus_unref(m->bus);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}
