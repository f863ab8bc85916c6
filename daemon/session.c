/* SPDX-License-Identifier: Apache-2.0 */
/* Bash sessions: each run is a command of its own (output, timeout, interrupt and ownership
 * all work as for commands), started with the session's exported environment and working
 * directory; at its end the shell hands back its final state, which the next run starts from. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>

#include "env.h"
#include "errors.h"
#include "execd.h"
#include "log.h"
#include "macro.h"

Session *manager_find_default_session(Manager *m, uid_t owner_uid, const char *language) {
        for (Session *s = m->sessions; s; s = s->next)
                if (s->is_default && s->owner_uid == owner_uid && s->language && strcmp(s->language, language) == 0)
                        return s;
        return NULL;
}

Session *manager_find_session(Manager *m, const char *id) {
        for (Session *s = m->sessions; s; s = s->next)
                if (strcmp(s->id, id) == 0)
                        return s;
        return NULL;
}

/* bash and shell code contexts are sessions and count as sessions. */
int session_check_limits(Manager *m, uid_t owner_uid, sd_bus_error *error) {
        unsigned n_uid = 0;

        if (m->n_sessions < m->config.max_sessions)
                for (Session *s = m->sessions; s; s = s->next)
                        if (s->owner_uid == owner_uid)
                                n_uid++;
        return manager_check_limit("sessions", m->n_sessions, m->config.max_sessions, "max-sessions", owner_uid,
                                   n_uid, m->config.max_sessions_per_uid, "max-sessions-per-uid", error);
}

int session_new(Manager *m, uid_t owner_uid, const char *cwd, Session **ret, sd_bus_error *error) {
        Session *s;
        sd_id128_t id;
        int k;

        k = session_check_limits(m, owner_uid, error);
        if (k < 0)
                return k;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->manager = m;
        s->owner_uid = owner_uid;
        k = sd_id128_randomize(&id);
        if (k < 0) {
                free(s);
                return k;
        }
        sd_id128_to_string(id, s->id);
        /* Sessions start from the daemon's own environment, as the reference's do. */
        s->env = env_copy(environ);
        s->cwd = cwd ? strdup(cwd) : NULL;
        if (asprintf(&s->path, EXECD_SESSION_PREFIX "/%s", s->id) < 0)
                s->path = NULL;
        if (!s->env || (cwd && !s->cwd) || !s->path) {
                strv_freep(&s->env);
                free(s->cwd);
                free(s->path);
                free(s);
                return -ENOMEM;
        }
        s->next = m->sessions;
        if (m->sessions)
                m->sessions->prev = s;
        m->sessions = s;
        m->n_sessions++;
        *ret = s;
        return 0;
}

Session *session_free(Session *s) {
        Manager *m;

        if (!s)
                return NULL;
        m = s->manager;
        if (s->prev)
                s->prev->next = s->next;
        else if (m->sessions == s)
                m->sessions = s->next;
        if (s->next)
                s->next->prev = s->prev;
        m->n_sessions--;
        /* Its runs die with it; their records stay, as any command's do. */
        for (Command *c = m->commands_head; c; c = c->next)
                if (c->session == s) {
                        c->session = NULL;
                        if (c->running)
                                (void) command_signal(c, SIGKILL);
                }
        strv_freep(&s->env);
        free(s->cwd);
        free(s->language);
        free(s->path);
        free(s);
        return NULL;
}

void session_add_run(Session *s, Command *c) {
        c->session = s;
}

void session_run_finished(Session *s, Command *c) {
        _cleanup_(strv_freep) char **env = NULL;
        const char *p, *end;
        size_t n = 0;
        char *cwd;

        c->session = NULL;
        if (!c->state || c->state_overflow)
                return; /* the shell never reached its EXIT trap (killed, or exec'ed away) */
        p = c->state;
        end = c->state + c->state_size;
        /* "<cwd>\0NAME=value\0...\0" SESSION_STATE_END "\0" */
        if (c->state_size < sizeof SESSION_STATE_END + 1 ||
            memcmp(end - sizeof SESSION_STATE_END, SESSION_STATE_END "", sizeof SESSION_STATE_END) != 0)
                return;
        end -= sizeof SESSION_STATE_END;
        cwd = strndup(p, (size_t) (end - p));
        if (!cwd)
                return;
        /* The dump's fd is visible to the command, which could write anything to it: only an
         * absolute directory is believed. */
        {
                struct stat st;
                if (cwd[0] != '/' || stat(cwd, &st) < 0 || !S_ISDIR(st.st_mode)) {
                        free(cwd);
                        return;
                }
        }
        p += strlen(cwd) + 1;
        env = calloc(1, sizeof *env);
        while (env && p < end) {
                size_t len = strnlen(p, (size_t) (end - p));
                char **grown;

                /* Bash's own bookkeeping is not state to carry. */
                if (strncmp(p, "_=", 2) != 0 && strncmp(p, "SHLVL=", 6) != 0 && strncmp(p, "PWD=", 4) != 0 &&
                    memchr(p, '=', len)) {
                        grown = realloc(env, (n + 2) * sizeof *env);
                        if (!grown)
                                break;
                        env = grown;
                        env[n] = strndup(p, len);
                        env[n + 1] = NULL;
                        if (!env[n])
                                break;
                        n++;
                }
                p += len + 1;
        }
        if (!env || p < end) {
                free(cwd);
                return;
        }
        strv_freep(&s->env);
        s->env = TAKE_PTR(env);
        free(s->cwd);
        s->cwd = *cwd ? cwd : (free(cwd), NULL);
}

static int method_run(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Session *s = userdata;

        return manager_run(s->manager, msg, s, error);
}

static int method_interrupt(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        unsigned n = 0;

        /* The runs end; the session stays (the reference deleted it: quirk 11). */
        for (Command *c = s->manager->commands_head; c; c = c->next)
                if (c->session == s && c->running && command_interrupt(c) >= 0)
                        n++;
        if (n == 0)
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_RUNNING, "Session %s has no running command", s->id);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_delete(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        session_free(userdata);
        return sd_bus_reply_method_return(msg, NULL);
}

static int property_get_cwd(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *s = userdata;

        return sd_bus_message_append(reply, "s", s->cwd ? s->cwd : "");
}

static int property_get_language(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *s = userdata;

        return sd_bus_message_append(reply, "s", s->language ? s->language : "");
}

static int property_get_running(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *s = userdata;
        int running = 0;

        for (Command *c = s->manager->commands_head; c; c = c->next)
                if (c->session == s && c->running)
                        running = 1;
        return sd_bus_message_append(reply, "b", running);
}

/* The id is an array, not the char * sd-bus's own getter would read. */
static int property_get_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Session *x = userdata;

        return sd_bus_message_append(reply, "s", x->id);
}

const sd_bus_vtable session_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("OwnerUid", "u", NULL, offsetof(Session, owner_uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Cwd", "s", property_get_cwd, 0, 0),
        SD_BUS_PROPERTY("Language", "s", property_get_language, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Running", "b", property_get_running, 0, 0),
        SD_BUS_METHOD_WITH_ARGS("Run", SD_BUS_ARGS("s", command, "a{sv}", options),
                                SD_BUS_RESULT("o", command_path), method_run, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Interrupt", NULL, NULL, method_interrupt, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Delete", NULL, NULL, method_delete, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int session_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                        void **found, sd_bus_error *error) {
        Manager *m = userdata;
        Session *s;

        if (strncmp(path, EXECD_SESSION_PREFIX "/", strlen(EXECD_SESSION_PREFIX "/")) != 0)
                return 0;
        s = manager_find_session(m, path + strlen(EXECD_SESSION_PREFIX "/"));
        if (!s)
                return 0;
        if (!manager_caller_may_access(m, s->owner_uid, error))
                return -EACCES;
        *found = s;
        return 1;
}

int session_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                            sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **l = NULL;
        size_t k = 0;

        l = calloc(m->n_sessions + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (Session *s = m->sessions; s; s = s->next) {
                bool visible = manager_caller_sees(m, s->owner_uid);
                if (!visible || k >= m->n_sessions)
                        continue;
                l[k] = strdup(s->path);
                if (!l[k])
                        return -ENOMEM;
                k++;
        }
        *nodes = TAKE_PTR(l);
        return 1;
}
