/* SPDX-License-Identifier: Apache-2.0 */
/* A shell command: spawn in its own session, read its pipes into the ring and onto the bus,
 * reap it through its pidfd, and end it by timeout, signal or owner loss. */
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-id128.h>
#include <time.h>

#include "errors.h"
#include "execd.h"
#include "environment.h"
#include "groups.h"
#include "jupyter.h"
#include "log.h"
#include "macro.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* After the leader exits, leftovers may hold the pipes open; stop draining after this much
 * silence, and after DRAIN_MAX_USEC in all, so a forked daemon cannot keep a command running. */
#define DRAIN_IDLE_USEC (100 * USEC_PER_MSEC)
#define DRAIN_MAX_USEC (5 * USEC_PER_SEC)
/* Reads per wake-up before yielding to other sources. */
#define READS_PER_DISPATCH 4
#define PIPE_SIZE (1024 * 1024)

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

Command *manager_find_command(Manager *m, const char *id) {
        for (Command *c = m->commands_head; c; c = c->next)
                if (strcmp(c->id, id) == 0)
                        return c;
        return NULL;
}

static void command_close_pipe(Command *c, int i) {
        c->out_source[i] = sd_event_source_disable_unref(c->out_source[i]);
        c->out_fd[i] = safe_close(c->out_fd[i]);
}

static char *signal_text(int sig) {
        const char *s = strsignal(sig);
        char *t = NULL;

        /* "signal: killed", the wording the HTTP API's clients know. */
        if (asprintf(&t, "signal: %s", s ? s : "unknown") < 0)
                return NULL;
        for (char *p = t + 8; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p += 'a' - 'A';
        return t;
}

/* The session state dump; bounded, since a command could write anything to fd 4. */
#define STATE_MAX (1024 * 1024)

static void command_read_state(Command *c) {
        for (;;) {
                char buf[65536];
                ssize_t k = read(c->state_fd, buf, sizeof buf);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return;
                if (c->state_overflow || c->state_size + (size_t) k > STATE_MAX) {
                        c->state_overflow = true;
                        continue;
                }
                char *grown = realloc(c->state, c->state_size + (size_t) k + 1);
                if (!grown) {
                        c->state_overflow = true;
                        continue;
                }
                c->state = grown;
                memcpy(c->state + c->state_size, buf, (size_t) k);
                c->state_size += (size_t) k;
                c->state[c->state_size] = 0;
        }
}

static int on_state(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Command *c = userdata;

        command_read_state(c);
        if (revents & (EPOLLHUP | EPOLLERR))
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return 0;
}

static void command_finish(Command *c) {
        if (!c->running)
                return;

        for (int i = 0; i < 2; i++)
                command_close_pipe(c, i);
        c->drain_source = sd_event_source_disable_unref(c->drain_source);
        c->timeout_source = sd_event_source_disable_unref(c->timeout_source);
        c->kill_source = sd_event_source_disable_unref(c->kill_source);

        c->running = false;
        c->finished_at = now_usec(CLOCK_REALTIME);
        free(c->error);
        c->error = NULL;
        if (c->timed_out)
                (void) asprintf(&c->error, "timed out after %" PRIu64 " ms", c->timeout_usec / USEC_PER_MSEC);
        else if (c->signal > 0)
                c->error = signal_text(c->signal);
        else if (c->exit_code != 0)
                (void) asprintf(&c->error, "exit status %d", c->exit_code);

        log_debug("command %s finished: exit %d, signal %d%s", c->id, c->exit_code, c->signal,
                  c->timed_out ? ", timed out" : "");
        if (c->state_fd >= 0) {
                command_read_state(c);
                c->state_source = sd_event_source_disable_unref(c->state_source);
                c->state_fd = safe_close(c->state_fd);
        }
        /* Before Exited: a client's next run must see this run's directory and variables. */
        if (c->session)
                session_run_finished(c->session, c);
        /* Taken or not, the dump has served: the finished record does not keep it (up to
         * STATE_MAX for each of --retain-count records). */
        c->state = mfree(c->state);
        c->state_size = 0;
        if (c->environment || c->execute_reply)
                environment_execute_finished(c);
        command_send_exited(c);
        manager_command_finished(c->manager, c);
}

static bool command_window_full(Command *c) {
        return c->ack_window > 0 && c->ring.total_bytes - c->acked_offset >= c->ack_window;
}

static bool command_paused(Command *c) {
        return c->manager->throttled || command_window_full(c) || (c->owner && owner_congested(c->owner));
}

void command_update_reading(Command *c) {
        bool on = !command_paused(c);

        for (int i = 0; i < 2; i++)
                if (c->out_source[i])
                        (void) sd_event_source_set_enabled(c->out_source[i], on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static bool command_pipes_hold_data(Command *c) {
        for (int i = 0; i < 2; i++) {
                int n = 0;
                if (c->out_fd[i] >= 0 && ioctl(c->out_fd[i], FIONREAD, &n) == 0 && n > 0)
                        return true;
        }
        return false;
}

static int on_drain_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Command *c = userdata;

        /* Output held back by a slow consumer is never dropped: wait for it however long it
         * takes. Data still flowing freely after DRAIN_MAX_USEC comes from leftovers of the
         * command (a forked daemon), and ends the command. */
        bool paused = command_paused(c);

        if (paused)
                c->exited_mono = now_usec(CLOCK_MONOTONIC); /* the budget counts free flow only */
        if (command_pipes_hold_data(c) && (paused || now_usec(CLOCK_MONOTONIC) - c->exited_mono < DRAIN_MAX_USEC)) {
                (void) sd_event_source_set_time_relative(s, DRAIN_IDLE_USEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        command_finish(c);
        return 0;
}

static void command_maybe_finish(Command *c) {
        if (!c->exited)
                return;
        if (c->out_fd[0] < 0 && c->out_fd[1] < 0) {
                command_finish(c);
                return;
        }
        if (!c->drain_source) {
                if (sd_event_add_time_relative(c->manager->event, &c->drain_source, CLOCK_MONOTONIC,
                                               DRAIN_IDLE_USEC, TIMER_ACCURACY_USEC, on_drain_timer, c) < 0)
                        command_finish(c);
        }
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Command *c = userdata;
        int i = c->out_fd[0] == fd ? 0 : 1;
        uint8_t buf[OUTPUT_CHUNK_MAX];

        for (int n = 0; n < READS_PER_DISPATCH; n++) {
                ssize_t k = read(fd, buf, sizeof buf);
                uint64_t seq;

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        log_warning_errno(errno, "command %s: reading output failed: %m", c->id);
                        k = 0;
                }
                if (k == 0) {
                        command_close_pipe(c, i);
                        command_maybe_finish(c);
                        return 0;
                }

                bool was_truncated = c->ring.truncated;
                if (ring_append(&c->ring, (uint8_t) i, buf, (size_t) k, &seq) < 0) {
                        log_error("command %s: out of memory for output", c->id);
                        return 0;
                }
                command_send_output(c, seq, (uint8_t) i, buf, (size_t) k);
                if (!was_truncated && c->ring.truncated)
                        command_send_truncated(c);
                if (c->drain_source)
                        (void) sd_event_source_set_time_relative(c->drain_source, DRAIN_IDLE_USEC);

                manager_check_backpressure(c->manager);
                if (command_paused(c)) {
                        command_update_reading(c);
                        break;
                }
                if ((size_t) k < sizeof buf)
                        break;
        }
        return 0;
}

static void command_record_exit(Command *c, const siginfo_t *si) {
        if (c->exited)
                return;
        c->exited = true;
        c->exited_mono = now_usec(CLOCK_MONOTONIC);
        if (si->si_code == CLD_EXITED) {
                c->exit_code = si->si_status;
                c->signal = 0;
        } else {
                c->exit_code = -1;
                c->signal = si->si_status;
        }
        group_unmark(&c->group_marker);
        c->pidfd_source = sd_event_source_disable_unref(c->pidfd_source);
        c->pidfd = safe_close(c->pidfd);
        c->kill_source = sd_event_source_disable_unref(c->kill_source);
        c->timeout_source = sd_event_source_disable_unref(c->timeout_source);
        command_maybe_finish(c);
}

/* Reap the leader through its pidfd; true when it had exited. */
static bool command_reap(Command *c) {
        siginfo_t si = {};

        if (c->exited || c->pidfd < 0)
                return false;
        if (waitid((idtype_t) P_PIDFD, (id_t) c->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
                return false;
        command_record_exit(c, &si);
        return true;
}

static int on_pidfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Command *c = userdata;

        if (!command_reap(c))
                /* Readable but nothing to reap: SIGCHLD got there first. Stop watching. */
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return 0;
}

int manager_reap_children(Manager *m) {
        /* As a subreaper we inherit orphans; reap them, and route our own leaders through their
         * pidfds. Peeking with WNOWAIT keeps a leader's status for command_reap(). */
        for (;;) {
                siginfo_t si = {};
                Command *c;

                if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
                        return 0;
                for (c = m->commands_head; c; c = c->next)
                        if (!c->exited && c->pid == si.si_pid)
                                break;
                if (c && command_reap(c))
                        continue;
                /* Kernels are our children too; their module reaps and reports them. */
                if (!c && kernel_reap_pid(si.si_pid))
                        continue;
                if (waitpid(si.si_pid, NULL, WNOHANG) <= 0)
                        return 0;
                log_debug("reaped orphan %d", (int) si.si_pid);
        }
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Command *c = userdata;

        c->timeout_source = sd_event_source_disable_unref(c->timeout_source);
        if (c->exited)
                return 0;
        c->timed_out = true;
        (void) kill(-c->pid, SIGKILL);
        return 0;
}

static int on_kill_grace(sd_event_source *s, uint64_t usec, void *userdata) {
        Command *c = userdata;

        c->kill_source = sd_event_source_disable_unref(c->kill_source);
        if (!c->exited)
                (void) kill(-c->pid, SIGKILL);
        return 0;
}

int command_signal(Command *c, int sig) {
        /* Only while the leader is unreaped: its zombie pins the process group id. A command
         * whose shell is gone but whose output is still draining is ended instead: whoever
         * signals it no longer wants what is left. */
        if (c->exited && c->running) {
                command_finish(c);
                return 0;
        }
        if (c->exited)
                return -ESRCH;
        if (kill(-c->pid, sig) < 0)
                return -errno;
        return 0;
}

int command_interrupt(Command *c) {
        int k = command_signal(c, SIGTERM);

        if (k < 0 || c->exited)
                return k; /* a draining command was ended by command_signal() */
        (void) kill(-c->pid, SIGCONT); /* a stopped group could not act on SIGTERM */
        if (!c->kill_source)
                (void) sd_event_add_time_relative(c->manager->event, &c->kill_source, CLOCK_MONOTONIC,
                                                  c->manager->config.kill_grace_usec, TIMER_ACCURACY_USEC,
                                                  on_kill_grace, c);
        return 0;
}

void command_owner_gone(Command *c) {
        c->owner_gone = true;
        /* A foreground command belongs to its owner's connection. */
        if (!c->background && !c->exited) {
                log_debug("owner of command %s left the bus, killing it", c->id);
                (void) kill(-c->pid, SIGKILL);
        }
        /* Nobody acknowledges any more: flow control would stall it for ever. */
        c->ack_window = 0;
        command_update_reading(c);
}

void command_ack(Command *c, uint64_t seq) {
        uint64_t end = ring_end_offset_of_seq(&c->ring, seq);

        if (end > c->acked_offset)
                c->acked_offset = end;
        command_update_reading(c);
}

/* In the vfork()ed child, which shares our memory until it execs: only plain system calls,
 * and no glibc wrappers that touch shared state (the setxid wrappers do: raw syscalls). */
_Noreturn static void child_exec(const CommandSpec *spec, const char *shell, int null_fd,
                                 int out_fd, int err_fd, int report_fd, int state_fd) {
        char *argv[] = { (char *) shell, (char *) "-c", (char *) spec->command_line, NULL };
        sigset_t mask;
        int e;

        sigemptyset(&mask);
        (void) sigprocmask(SIG_SETMASK, &mask, NULL);
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) signal(sig, SIG_DFL);

        if (setsid() < 0)
                goto fail;
        /* Every descriptor passed in is numbered 10 or more, so none is overwritten here. */
        if (dup2(null_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
            dup2(spec->merge_stderr ? out_fd : err_fd, STDERR_FILENO) < 0 || dup2(report_fd, 3) < 0)
                goto fail;
        if (fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
                goto fail;
        if (state_fd >= 0 && dup2(state_fd, 4) < 0)
                goto fail;
        if (close_range(state_fd >= 0 ? 5 : 4, ~0U, 0) < 0)
                goto fail;
        report_fd = 3;
        /* The daemon raised its own descriptor limit; commands get the limit it started with. */
        if (spec->nofile)
                (void) setrlimit(RLIMIT_NOFILE, spec->nofile);
        if (spec->env_limits) {
                /* A task environment's share of the host (per uid for processes). */
                static const struct rlimit nproc = { 512, 512 }, fsize = { 4ULL << 30, 4ULL << 30 },
                                           cpu = { 900, 900 };
                if (setrlimit(RLIMIT_NPROC, &nproc) < 0 || setrlimit(RLIMIT_FSIZE, &fsize) < 0 ||
                    setrlimit(RLIMIT_CPU, &cpu) < 0)
                        goto fail;
        }

        if (spec->set_user) {
                if (syscall(SYS_setgroups, (size_t) spec->n_groups, spec->groups) < 0 ||
                    syscall(SYS_setresgid, spec->gid, spec->gid, spec->gid) < 0 ||
                    syscall(SYS_setresuid, spec->uid, spec->uid, spec->uid) < 0)
                        goto fail;
        }
        /* After dropping privileges: the working directory is entered with the command's own
         * rights, never the daemon's. */
        if (spec->cwd && chdir(spec->cwd) < 0)
                goto fail;
        execve(shell, argv, spec->envp);
fail:
        e = errno;
        (void) !write(report_fd, &e, sizeof e);
        _exit(127);
}

/* vfork() in a frame of its own, so nothing of the caller's lives across it. */
static __attribute__((noinline)) pid_t vfork_exec(const CommandSpec *spec, const char *shell, const int fds[5]) {
        pid_t pid = vfork();

        if (pid == 0)
                child_exec(spec, shell, fds[0], fds[1], fds[2], fds[3], fds[4]);
        return pid;
}

static int command_spawn(Command *c, const CommandSpec *spec) {
        _cleanup_(closep) int null_fd = -1, report_r = -1, report_w = -1;
        _cleanup_(closep) int out_r = -1, out_w = -1, err_r = -1, err_w = -1, state_r = -1, state_w = -1;
        int pipefd[2], r;
        pid_t pid;

        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd < 0)
                return -errno;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        report_r = pipefd[0], report_w = pipefd[1];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        out_r = pipefd[0], out_w = pipefd[1];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        err_r = pipefd[0], err_w = pipefd[1];
        /* Larger pipes mean fewer wake-ups for chatty commands; the default also works. */
        (void) fcntl(out_r, F_SETPIPE_SZ, PIPE_SIZE);
        (void) fcntl(err_r, F_SETPIPE_SZ, PIPE_SIZE);
        if (spec->session_state) {
                if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK) < 0)
                        return -errno;
                state_r = pipefd[0], state_w = pipefd[1];
                (void) fcntl(state_r, F_SETPIPE_SZ, PIPE_SIZE);
        }
        /* The child renumbers descriptors to 0-4; from 10 up none of ours is in the way. */
        {
                int *all[] = { &null_fd, &out_w, &err_w, &report_w, &state_w };
                for (size_t i = 0; i < ELEMENTSOF(all); i++)
                        if (*all[i] >= 0 && *all[i] < 10) {
                                int moved = fcntl(*all[i], F_DUPFD_CLOEXEC, 10);
                                if (moved < 0)
                                        return -errno;
                                safe_close(*all[i]);
                                *all[i] = moved;
                        }
        }
        if (state_w >= 0 && fcntl(state_w, F_SETFL, 0) < 0) /* the shell writes it blocking */
                return -errno;

        /* vfork: no page tables to copy, and we wait for the exec anyway (the report pipe). */
        {
                const int fds[5] = { null_fd, out_w, err_w, report_w, state_w };
                pid = vfork_exec(spec, c->manager->shell, fds);
        }
        if (pid < 0)
                return -errno;

        report_w = safe_close(report_w);
        out_w = safe_close(out_w);
        err_w = safe_close(err_w);
        state_w = safe_close(state_w);

        r = group_spawned(pid, report_r, c->manager->runtime_dir, &c->pidfd, &c->group_marker);
        if (r < 0)
                return r;
        c->pid = pid;
        if (fcntl(out_r, F_SETFL, O_NONBLOCK) < 0 || fcntl(err_r, F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        c->out_fd[0] = TAKE_FD(out_r);
        c->out_fd[1] = TAKE_FD(err_r);
        c->state_fd = TAKE_FD(state_r);
        return 0;
}

int command_new(Manager *m, const char *owner_name, uid_t owner_uid, const CommandSpec *spec,
                Command **ret, sd_bus_error *error) {
        Command *c;
        sd_id128_t id;
        int k;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->pidfd = -1;
        c->out_fd[0] = c->out_fd[1] = -1;
        c->state_fd = -1;
        c->exit_code = -1;
        c->background = spec->background;
        c->owner_uid = owner_uid;
        c->charge_uid = spec->charge_uid;
        c->timeout_usec = spec->timeout_usec;
        c->ack_window = spec->ack_window;
        ring_init(&c->ring, m->config.ring_size);

        k = sd_id128_randomize(&id);
        if (k < 0)
                goto fail;
        sd_id128_to_string(id, c->id);
        c->command_line = strdup(spec->command_line);
        c->owner_name = strdup(owner_name);
        c->owner = manager_owner_ref(m, owner_name);
        if (asprintf(&c->path, EXECD_COMMAND_PREFIX "/%s", c->id) < 0)
                c->path = NULL;
        if (!c->command_line || !c->owner_name || !c->owner || !c->path) {
                k = -ENOMEM;
                goto fail;
        }

        c->started_at = now_usec(CLOCK_REALTIME);
        k = command_spawn(c, spec);
        if (k < 0) {
                sd_bus_error_setf(error, EXECD_ERROR_START_FAILED, "Failed to start command: %s", strerror(-k));
                goto fail;
        }
        c->running = true;

        for (int i = 0; i < 2; i++) {
                k = sd_event_add_io(m->event, &c->out_source[i], c->out_fd[i], EPOLLIN, on_output, c);
                if (k < 0)
                        goto fail_started;
        }
        k = sd_event_add_io(m->event, &c->pidfd_source, c->pidfd, EPOLLIN, on_pidfd, c);
        if (k < 0)
                goto fail_started;
        if (c->state_fd >= 0) {
                k = sd_event_add_io(m->event, &c->state_source, c->state_fd, EPOLLIN, on_state, c);
                if (k < 0)
                        goto fail_started;
        }
        if (spec->timeout_usec > 0) {
                k = sd_event_add_time_relative(m->event, &c->timeout_source, CLOCK_MONOTONIC,
                                               spec->timeout_usec, TIMER_ACCURACY_USEC, on_timeout, c);
                if (k < 0)
                        goto fail_started;
        }

        /* Link in creation order; the manager counts it as running. */
        c->prev = m->commands_tail;
        if (m->commands_tail)
                m->commands_tail->next = c;
        else
                m->commands_head = c;
        m->commands_tail = c;
        m->n_running++;
        command_update_reading(c);

        log_debug("command %s started as pid %d for uid %u", c->id, (int) c->pid, (unsigned) owner_uid);
        *ret = c;
        return 0;

fail_started:
        (void) kill(-c->pid, SIGKILL);
        (void) waitpid(c->pid, NULL, 0);
        c->exited = true;
        sd_bus_error_set_errnof(error, k, "Failed to watch command: %m");
fail:
        c->running = false;
        command_free(c);
        return k;
}

Command *command_free(Command *c) {
        if (!c)
                return NULL;
        if (c->running && !c->exited) {
                /* Freed while running (daemon exit): the group must not outlive us silently. */
                (void) kill(-c->pid, SIGKILL);
                (void) waitpid(c->pid, NULL, 0);
        }
        group_unmark(&c->group_marker);
        for (int i = 0; i < 2; i++)
                command_close_pipe(c, i);
        sd_event_source_disable_unref(c->pidfd_source);
        sd_event_source_disable_unref(c->timeout_source);
        sd_event_source_disable_unref(c->kill_source);
        sd_event_source_disable_unref(c->drain_source);
        sd_event_source_disable_unref(c->state_source);
        safe_close(c->state_fd);
        free(c->state);
        if (c->execute_reply) {
                (void) sd_bus_reply_method_errorf(c->execute_reply, EXECD_ERROR_BUSY, "The daemon is shutting down");
                sd_bus_message_unref(c->execute_reply);
        }
        safe_close(c->pidfd);
        owner_unref(c->owner);
        ring_clear(&c->ring);
        free(c->error);
        free(c->path);
        free(c->command_line);
        free(c->owner_name);
        free(c);
        return NULL;
}
