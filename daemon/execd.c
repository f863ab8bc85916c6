/* SPDX-License-Identifier: Apache-2.0 */
#include <getopt.h>
#include <libintl.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <systemd/sd-daemon.h>

#include "errors.h"
#include "execd.h"
#include "log.h"
#include "macro.h"

#define _(s) gettext(s)

typedef enum { BUS_SYSTEM, BUS_SESSION, BUS_ADDRESS } BusKind;

static void help(void) {
        printf(_("Usage: %s [OPTIONS]\n\n"
                 "Execution service: runs commands for its callers on the D-Bus system bus.\n\n"
                 "  -h --help                Show this help\n"
                 "     --version            Show the version\n"
                 "     --system             Connect to the system bus (default)\n"
                 "     --session            Connect to the session bus\n"
                 "     --bus-address=ADDR   Connect to the bus at ADDR\n"
                 "     --ring-size=BYTES    Output kept per command (default 8388608)\n"
                 "     --retain-seconds=N   Keep finished commands this long (default 3600)\n"
                 "     --retain-count=N     Keep at most this many finished commands (default 1024)\n"
                 "     --max-running=N      Refuse new commands beyond this many running (default 512)\n"
                 "     --max-running-per-uid=N\n"
                 "                          The same for the commands one caller uid started (default:\n"
                 "                          the --max-running value)\n"
                 "     --max-sessions=N     Refuse new bash sessions beyond this many (default 1024)\n"
                 "     --max-sessions-per-uid=N\n"
                 "                          The same for one caller uid's sessions (default: the\n"
                 "                          --max-sessions value)\n"
                 "     --max-contexts=N     Refuse new code contexts (kernels) beyond this many (default 64)\n"
                 "     --max-contexts-per-uid=N\n"
                 "                          The same for one caller uid's contexts (default: the\n"
                 "                          --max-contexts value)\n"
                 "     --max-context-waiters=N\n"
                 "                          Callers that may wait for one context's kernel to start\n"
                 "                          (default 256)\n"
                 "     --kill-grace-ms=N    SIGKILL this long after SIGTERM (default 3000)\n"
                 "     --cgroup-dir=DIR     Read cgroup v2 limits and usage from DIR (default: our own\n"
                 "                          cgroup; \"none\": report the host)\n"
                 "     --state-dir=DIR      Keep task environments here (default /var/lib/execd as root)\n"
                 "     --env-uid-min=N      First uid for task environments (default 600000)\n"
                 "     --env-uid-max=N      Last uid for task environments (default 665535)\n"
                 "     --env-output-max=N   Bytes of output an execute returns (default 1048576)\n"
                 "     --polkit=yes|no      Ask polkit about callers outside group execd (default: yes\n"
                 "                          on the system bus, no on any other)\n"
                 "  -v --verbose            Log debug messages\n"),
               program_invocation_short_name);
}

/* The largest value a count limit takes; far beyond what memory and pids allow anyway. */
#define LIMIT_MAX 1000000

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_args(int argc, char *argv[], BusKind *bus_kind, const char **address, Config *config,
                      int *log_level) {
        enum { ARG_VERSION = 0x100, ARG_SYSTEM, ARG_SESSION, ARG_ADDRESS, ARG_RING, ARG_RETAIN_SEC,
               ARG_RETAIN_COUNT, ARG_MAX_RUNNING, ARG_GRACE, ARG_CGROUP_DIR, ARG_STATE_DIR, ARG_UID_MIN,
               ARG_UID_MAX, ARG_OUTPUT_MAX, ARG_POLKIT, ARG_MAX_RUNNING_UID, ARG_MAX_SESSIONS,
               ARG_MAX_SESSIONS_UID, ARG_MAX_CONTEXTS, ARG_MAX_CONTEXTS_UID, ARG_MAX_WAITERS };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "system", no_argument, NULL, ARG_SYSTEM },
                { "session", no_argument, NULL, ARG_SESSION },
                { "bus-address", required_argument, NULL, ARG_ADDRESS },
                { "ring-size", required_argument, NULL, ARG_RING },
                { "retain-seconds", required_argument, NULL, ARG_RETAIN_SEC },
                { "retain-count", required_argument, NULL, ARG_RETAIN_COUNT },
                { "max-running", required_argument, NULL, ARG_MAX_RUNNING },
                { "max-running-per-uid", required_argument, NULL, ARG_MAX_RUNNING_UID },
                { "max-sessions", required_argument, NULL, ARG_MAX_SESSIONS },
                { "max-sessions-per-uid", required_argument, NULL, ARG_MAX_SESSIONS_UID },
                { "max-contexts", required_argument, NULL, ARG_MAX_CONTEXTS },
                { "max-contexts-per-uid", required_argument, NULL, ARG_MAX_CONTEXTS_UID },
                { "max-context-waiters", required_argument, NULL, ARG_MAX_WAITERS },
                { "kill-grace-ms", required_argument, NULL, ARG_GRACE },
                { "cgroup-dir", required_argument, NULL, ARG_CGROUP_DIR },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "env-uid-min", required_argument, NULL, ARG_UID_MIN },
                { "env-uid-max", required_argument, NULL, ARG_UID_MAX },
                { "env-output-max", required_argument, NULL, ARG_OUTPUT_MAX },
                { "polkit", required_argument, NULL, ARG_POLKIT },
                { "verbose", no_argument, NULL, 'v' },
                {}
        };
        uint64_t v;
        int c, idx = 0;

        while ((c = getopt_long(argc, argv, "hv", options, &idx)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        puts("execd " EXECD_VERSION);
                        return 0;
                case ARG_SYSTEM:
                        *bus_kind = BUS_SYSTEM;
                        break;
                case ARG_SESSION:
                        *bus_kind = BUS_SESSION;
                        break;
                case ARG_ADDRESS:
                        *bus_kind = BUS_ADDRESS;
                        *address = optarg;
                        break;
                case ARG_RING:
                        if (parse_u64(optarg, OUTPUT_CHUNK_MAX, (uint64_t) 1 << 40, &v) < 0)
                                goto invalid;
                        config->ring_size = (size_t) v;
                        break;
                case ARG_RETAIN_SEC:
                        if (parse_u64(optarg, 0, UINT64_MAX / USEC_PER_SEC, &v) < 0)
                                goto invalid;
                        config->retain_usec = v * USEC_PER_SEC;
                        break;
                case ARG_RETAIN_COUNT:
                        if (parse_u64(optarg, 0, UINT_MAX, &v) < 0)
                                goto invalid;
                        config->retain_count = (unsigned) v;
                        break;
                case ARG_MAX_RUNNING:
                case ARG_MAX_RUNNING_UID:
                case ARG_MAX_SESSIONS:
                case ARG_MAX_SESSIONS_UID:
                case ARG_MAX_CONTEXTS:
                case ARG_MAX_CONTEXTS_UID:
                case ARG_MAX_WAITERS: {
                        unsigned *limit = c == ARG_MAX_RUNNING        ? &config->max_running
                                          : c == ARG_MAX_RUNNING_UID  ? &config->max_running_per_uid
                                          : c == ARG_MAX_SESSIONS     ? &config->max_sessions
                                          : c == ARG_MAX_SESSIONS_UID ? &config->max_sessions_per_uid
                                          : c == ARG_MAX_CONTEXTS     ? &config->max_contexts
                                          : c == ARG_MAX_CONTEXTS_UID ? &config->max_contexts_per_uid
                                                                      : &config->max_context_waiters;
                        /* At least 1: a limit of 0 would refuse everything. */
                        if (parse_u64(optarg, 1, LIMIT_MAX, &v) < 0)
                                goto invalid;
                        *limit = (unsigned) v;
                        break;
                }
                case ARG_GRACE:
                        if (parse_u64(optarg, 0, UINT64_MAX / USEC_PER_MSEC, &v) < 0)
                                goto invalid;
                        config->kill_grace_usec = v * USEC_PER_MSEC;
                        break;
                case ARG_CGROUP_DIR:
                        config->cgroup_dir = optarg;
                        break;
                case ARG_STATE_DIR:
                        if (optarg[0] != '/')
                                goto invalid;
                        config->state_dir = optarg;
                        break;
                case ARG_UID_MIN:
                        if (parse_u64(optarg, 1, UINT32_MAX - 1, &v) < 0)
                                goto invalid;
                        config->env_uid_min = (uid_t) v;
                        break;
                case ARG_UID_MAX:
                        if (parse_u64(optarg, 1, UINT32_MAX - 1, &v) < 0)
                                goto invalid;
                        config->env_uid_max = (uid_t) v;
                        break;
                case ARG_OUTPUT_MAX:
                        if (parse_u64(optarg, 1, 64 * 1024 * 1024, &v) < 0)
                                goto invalid;
                        config->env_output_max = (size_t) v;
                        break;
                case ARG_POLKIT:
                        if (strcmp(optarg, "yes") == 0)
                                config->polkit = 1;
                        else if (strcmp(optarg, "no") == 0)
                                config->polkit = 0;
                        else
                                goto invalid;
                        break;
                case 'v':
                        *log_level = LOG_DEBUG;
                        break;
                default:
                        return -EINVAL;
                }
                continue;
        invalid:
                fprintf(stderr, _("%s: invalid value '%s' for --%s\n"), program_invocation_short_name, optarg,
                        options[idx].name);
                return -EINVAL;
        }
        if (optind < argc) {
                fprintf(stderr, _("%s: unexpected argument '%s'\n"), program_invocation_short_name, argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "STOPPING=1");
        manager_stop(m);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Config config = {
                .ring_size = 8 * 1024 * 1024,
                .retain_usec = 3600 * USEC_PER_SEC,
                .retain_count = 1024,
                .max_running = 512,
                .max_sessions = 1024,
                .max_contexts = 64,
                .max_context_waiters = 256,
                .kill_grace_usec = 3 * USEC_PER_SEC,
                .env_uid_min = 600000,
                .env_uid_max = 665535,
                .env_output_max = 1024 * 1024,
                .polkit = -1,
        };
        BusKind bus_kind = BUS_SYSTEM;
        const char *address = NULL;
        int log_level = LOG_INFO;
        Manager *m = NULL;
        sigset_t mask;
        int k;

        setlocale(LC_ALL, "");
        /* TEXTDOMAINDIR (gettext convention) lets tests use uninstalled catalogs from the build tree. */
        bindtextdomain(GETTEXT_PACKAGE, getenv("TEXTDOMAINDIR") && *getenv("TEXTDOMAINDIR") ? getenv("TEXTDOMAINDIR") : LOCALEDIR);
        textdomain(GETTEXT_PACKAGE);

        k = parse_args(argc, argv, &bus_kind, &address, &config, &log_level);
        if (k <= 0)
                return k < 0 ? 2 : EXIT_SUCCESS; /* 2: bad options (man page, EXIT STATUS) */
        /* Per caller uid: by default as high as the total, since the bridge is one caller
         * for all its HTTP clients. */
        if (config.max_running_per_uid == 0)
                config.max_running_per_uid = config.max_running;
        if (config.max_sessions_per_uid == 0)
                config.max_sessions_per_uid = config.max_sessions;
        if (config.max_contexts_per_uid == 0)
                config.max_contexts_per_uid = config.max_contexts;
        log_setup(log_level);

        /* Every signal we handle arrives through sd-event; SIGPIPE is reported as EPIPE. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        /* Orphans of our commands are re-parented to us and reaped, never left as zombies. */
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
                log_warning_errno(errno, "Failed to become a child subreaper: %m");

        k = sd_event_default(&event);
        if (k < 0)
                return log_error_errno(k, "Failed to allocate event loop: %m"), EXIT_FAILURE;

        switch (bus_kind) {
        case BUS_SYSTEM:
                k = sd_bus_open_system(&bus);
                break;
        case BUS_SESSION:
                k = sd_bus_open_user(&bus);
                break;
        case BUS_ADDRESS:
                k = sd_bus_new(&bus);
                if (k >= 0)
                        k = sd_bus_set_address(bus, address);
                if (k >= 0)
                        k = sd_bus_set_bus_client(bus, true);
                if (k >= 0)
                        k = sd_bus_start(bus);
                break;
        }
        if (k < 0)
                return log_error_errno(k, "Failed to connect to the bus: %m"), EXIT_FAILURE;

        k = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (k < 0)
                return log_error_errno(k, "Failed to attach the bus to the event loop: %m"), EXIT_FAILURE;

        if (config.polkit < 0)
                config.polkit = bus_kind == BUS_SYSTEM;
        k = manager_new(event, bus, &config, &m);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the manager: %m"), EXIT_FAILURE;

        (void) sd_event_add_signal(event, NULL, SIGTERM, on_terminate, m);
        (void) sd_event_add_signal(event, NULL, SIGINT, on_terminate, m);

        k = sd_bus_request_name(bus, EXECD_BUS_NAME, 0);
        if (k < 0) {
                log_error_errno(k, "Failed to acquire the bus name " EXECD_BUS_NAME ": %m");
                manager_free(m);
                return EXIT_FAILURE;
        }

        log_info("execd %s ready on the bus as " EXECD_BUS_NAME, EXECD_VERSION);
        (void) sd_notify(false, "READY=1\nSTATUS=Processing requests...");

        k = sd_event_loop(event);
        if (k < 0)
                log_error_errno(k, "Event loop failed: %m");

        (void) sd_bus_release_name(bus, EXECD_BUS_NAME);
        manager_free(m);
        return k < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
