/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "ring.h"

#define EXECD_BUS_NAME "org.execd.Execd1"
#define EXECD_OBJECT_PATH "/org/execd/Execd1"
#define EXECD_COMMAND_PREFIX "/org/execd/Execd1/command"
#define EXECD_SESSION_PREFIX "/org/execd/Execd1/session"
#define EXECD_SESSION_INTERFACE "org.execd.Execd1.Session"
/* Ends a session run's state dump; without it the dump is incomplete and ignored. */
#define SESSION_STATE_END "EXECD-STATE-END"
#define EXECD_MANAGER_INTERFACE "org.execd.Execd1.Manager"
#define EXECD_COMMAND_INTERFACE "org.execd.Execd1.Command"

/* Timers whose lateness a client would see; 0 would mean sd-event's default slack of 250 ms. */
#define TIMER_ACCURACY_USEC 1000

/* One bus signal carries at most this much output. */
#define OUTPUT_CHUNK_MAX (64 * 1024)
/* Replies of ReadOutput/ReadLog stay far below dbus-daemon's 32 MiB message cap. */
#define READ_REPLY_MAX (4 * 1024 * 1024)

typedef struct Manager Manager;
typedef struct Command Command;
typedef struct Owner Owner;
typedef struct Session Session;

/* Output bytes in flight to one owner, i.e. sent but not yet proven read: at OWNER_PING_EVERY the
 * daemon pings the owner (org.freedesktop.DBus.Peer.Ping, answered by every D-Bus library);
 * the reply proves everything sent before it was read. At OWNER_PAUSE_AT the owner's commands
 * stop being read, so one client that stops reading can never fill the daemon's connection
 * and stall everybody else. */
#define OWNER_PING_EVERY (4 * 1024 * 1024)
#define OWNER_PAUSE_AT (8 * 1024 * 1024)

/* A bus client that owns commands. */
struct Owner {
        Manager *manager;
        Owner *prev, *next;
        char *name;
        unsigned n_refs;
        uint64_t sent, confirmed, ping_mark;
        sd_bus_slot *ping_slot;
        bool gone;
};

typedef struct Config {
        size_t ring_size;
        uint64_t retain_usec;
        unsigned retain_count;
        /* Limits per caller uid and in total (0 for a per-uid limit: the total's value until
         * main() resolves it). Beyond one, creating fails with LimitsExceeded. */
        unsigned max_running, max_running_per_uid;
        unsigned max_sessions, max_sessions_per_uid;
        unsigned max_contexts, max_contexts_per_uid;
        unsigned max_context_waiters; /* callers waiting for one context's kernel to start */
        uint64_t kill_grace_usec;
        const char *cgroup_dir; /* NULL: the daemon's own cgroup; "none": host view */
        const char *state_dir;  /* NULL: $STATE_DIRECTORY, /var/lib/execd (root) or ~/.local/state/execd */
        uid_t env_uid_min, env_uid_max;
        size_t env_output_max;
        int polkit; /* ask polkit (polkit.c): 1, 0, or -1 for "on the system bus only" */
} Config;

/* Who may do what without asking polkit: root and the daemon's own user everything, members
 * of group execd whatever concerns only themselves. */
#define EXECD_GROUP "execd"
typedef enum CallerClass {
        CALLER_PRIVILEGED,
        CALLER_MEMBER,
        CALLER_OTHER,
} CallerClass;

typedef struct CallerEntry {
        char *name;
        uid_t uid;
        CallerClass class;
} CallerEntry;

struct Manager {
        sd_event *event;
        sd_bus *bus;
        Config config;

        Command *commands_head, *commands_tail; /* creation order */
        Session *sessions;
        unsigned n_sessions;
        struct Context *contexts;
        unsigned n_contexts;
        struct Environment *environments;
        char *state_dir;
        char *runtime_dir; /* kernels' connection files and sockets, one subdirectory each */
        Owner *owners;
        struct Metrics *metrics;
        struct Files *files;
        unsigned n_running, n_finished;

        /* Unique bus name -> uid, so ownership checks cost no bus round trip after the first. */
        CallerEntry *callers;
        size_t n_callers;

        /* Calls parked until polkit answers (polkit.c). */
        struct PolkitQuery *polkit_queries;
        unsigned n_polkit_queries;

        sd_event_source *retention_timer;
        sd_event_source *backpressure_check;
        sd_event_source *stop_timer;
        bool throttled; /* outgoing bus queue above the watermark: no pipe is read */
        bool stopping;
        bool stop_killed;

        const char *shell;
        uid_t euid;
        struct rlimit nofile; /* as inherited, before the daemon raised it for itself */
};

struct Command {
        Manager *manager;
        Command *prev, *next;

        char id[33];
        char *path;
        char *command_line;
        bool background;
        uid_t owner_uid;
        uid_t charge_uid; /* whose --max-running-per-uid the command counts against: the caller's */
        char *owner_name;
        bool owner_gone;
        Owner *owner;

        pid_t pid;
        int pidfd;
        char *group_marker; /* groups.h: while the leader runs */
        int out_fd[2]; /* stdout, stderr; -1 once at EOF */
        sd_event_source *out_source[2];
        sd_event_source *pidfd_source;
        sd_event_source *timeout_source;
        sd_event_source *kill_source;  /* SIGKILL after the Interrupt grace */
        sd_event_source *drain_source; /* ends the drain of pipes held open by leftovers */

        uint64_t timeout_usec;
        uint64_t started_at, finished_at; /* CLOCK_REALTIME µs */
        uint64_t exited_mono; /* when the drain budget (DRAIN_MAX_USEC) started */

        bool running;
        bool exited; /* the leader was reaped; the group may no longer be signalled */
        bool timed_out;
        int exit_code;
        int signal;
        char *error;

        Ring ring;
        uint64_t ack_window;
        uint64_t acked_offset;

        /* A task environment's execute: answered when the command finishes. */
        struct Environment *environment;
        sd_bus_message *execute_reply;

        /* A session run: the shell's final state arrives on its own pipe. */
        Session *session;
        int state_fd;
        sd_event_source *state_source;
        char *state;
        size_t state_size;
        bool state_overflow;
};

/* A bash session: exported environment and working directory carried from run to run. */
struct Session {
        Manager *manager;
        Session *prev, *next;
        char id[33];
        char *path;
        uid_t owner_uid;
        char **env;
        char *cwd; /* NULL: the daemon's */
        char *language; /* a bash code context ("bash" or "shell"); NULL for a plain session */
        bool is_default;
};

typedef struct CommandSpec {
        uid_t charge_uid; /* the uid of the caller that asked for it (limits) */
        const char *command_line;
        char **envp;
        const char *cwd;
        bool set_user;
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        int n_groups;
        bool background;
        uint64_t timeout_usec;
        uint64_t ack_window;
        const struct rlimit *nofile; /* the descriptor limit the daemon started with */
        bool merge_stderr;  /* stderr into the stdout pipe */
        bool env_limits;    /* a task environment's resource limits (setrlimit) */
        bool session_state; /* a pipe on fd 4 for the session's state dump */
} CommandSpec;

/* command.c */
int command_new(Manager *m, const char *owner_name, uid_t owner_uid, const CommandSpec *spec,
                Command **ret, sd_bus_error *error);
Command *command_free(Command *c);
int command_signal(Command *c, int sig);
int command_interrupt(Command *c);
void command_owner_gone(Command *c);
void command_ack(Command *c, uint64_t seq);
void command_update_reading(Command *c);
/* SIGCHLD: reap our commands through their pidfds and any orphan we inherited. */
int manager_reap_children(Manager *m);
Command *manager_find_command(Manager *m, const char *id);

/* command-dbus.c */
extern const sd_bus_vtable command_vtable[];
int command_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                        void **found, sd_bus_error *error);
int command_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                            sd_bus_error *error);
void command_send_output(Command *c, uint64_t seq, uint8_t stream, const void *data, size_t size);
void command_send_exited(Command *c);
void command_send_truncated(Command *c);

/* session.c */
extern const sd_bus_vtable session_vtable[];
int session_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                        void **found, sd_bus_error *error);
int session_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                            sd_bus_error *error);
int session_new(Manager *m, uid_t owner_uid, const char *cwd, Session **ret, sd_bus_error *error);
/* 0 when owner_uid may have another session (--max-sessions, --max-sessions-per-uid). */
int session_check_limits(Manager *m, uid_t owner_uid, sd_bus_error *error);
Session *manager_find_default_session(Manager *m, uid_t owner_uid, const char *language);
Session *session_free(Session *s);
Session *manager_find_session(Manager *m, const char *id);
void session_add_run(Session *s, Command *c);
/* A run ended: take the state it dumped, if complete. */
void session_run_finished(Session *s, Command *c);

/* manager.c */
/* RunCommand and Session.Run: read "sa{sv}" from msg and start the command. */
int manager_run(Manager *m, sd_bus_message *msg, Session *session, sd_bus_error *error);
extern const sd_bus_vtable manager_vtable[];
int manager_new(sd_event *event, sd_bus *bus, const Config *config, Manager **ret);
Manager *manager_free(Manager *m);
int manager_caller_uid(Manager *m, sd_bus_message *msg, uid_t *ret);
int manager_caller_identify(Manager *m, sd_bus_message *msg, uid_t *ret_uid, CallerClass *ret_class);
/* 1: go on; 0: parked until polkit answers (return 1 without replying); <0: refused, error set. */
int manager_authorize_run(Manager *m, sd_bus_message *msg, const uint32_t *target_uid, sd_bus_error *error);
bool manager_caller_may_access(Manager *m, uid_t owner_uid, sd_bus_error *error);
/* The same, for listings: whether the current caller may see an object of owner_uid. */
bool manager_caller_sees(Manager *m, uid_t owner_uid);
void manager_command_finished(Manager *m, Command *c);
/* Limits: 0 when one more object of a kind may be created for uid (n_total in all, n_uid of
 * uid's), else LimitsExceeded set in error naming the limit and its option. */
int manager_check_limit(const char *what, unsigned n_total, unsigned max_total, const char *total_option,
                        uid_t uid, unsigned n_uid, unsigned max_uid, const char *uid_option, sd_bus_error *error);
int manager_check_running_limits(Manager *m, uid_t uid, sd_bus_error *error);
void manager_check_backpressure(Manager *m);
void manager_stop(Manager *m);
Owner *manager_owner_ref(Manager *m, const char *name);
void owner_unref(Owner *o);
void owner_sent(Owner *o, uint64_t bytes);
bool owner_congested(const Owner *o);
