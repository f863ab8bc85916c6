/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "kernelspec.h"

/* A Jupyter kernel process spoken to over ZeroMQ (messaging protocol 5.3, ipc transport). */
typedef struct Kernel Kernel;

/* Callbacks may free the kernel (kernel_free()) and may start the next run. */
typedef struct KernelCallbacks {
        /* kernel_info_reply arrived (error 0), or the start failed (error < 0, message set; the
         * process is killed, the Kernel stays allocated until kernel_free()). Never called from
         * within kernel_start(). */
        void (*ready)(Kernel *k, int error, const char *message, void *userdata);
        /* The kernel process exited or stopped answering heartbeats after it was ready. */
        void (*died)(Kernel *k, const char *why, void *userdata);
} KernelCallbacks;

typedef struct KernelRunCallbacks {
        void (*stream)(void *ud, const char *name /* stdout|stderr */, const char *text);
        /* execute_result (count > 0) and display_data/update_display_data (count 0); data is the
         * MIME bundle object (borrowed, valid during the call). */
        void (*result)(void *ud, int64_t execution_count, JsonObject *data);
        void (*error)(void *ud, const char *ename, const char *evalue, char **traceback);
        void (*execute_input)(void *ud, int64_t execution_count);
        /* The run is over: execute_reply received AND iopub status idle for it seen (either
         * order), or the kernel died mid-run (status "dead"). reply_status: "ok", "error",
         * "aborted" or "dead". elapsed_ms since kernel_execute was called. The next run may be
         * started from here. */
        void (*complete)(void *ud, const char *reply_status, uint64_t elapsed_ms);
} KernelRunCallbacks;

typedef struct KernelOptions {
        const char *cwd;          /* working directory of the kernel, NULL: the daemon's */
        char **envp;              /* base environment (NULL: the daemon's environ) */
        const char *runtime_dir;  /* a private 0700 directory for connection and ipc files; the
                                     module creates a per-kernel subdirectory inside and removes
                                     it when the kernel is freed. With set_user the subdirectory
                                     is chowned to that user, who must be able to reach it. */
        bool set_user;            /* optional: run the kernel as this user (groups: just gid) */
        uid_t uid;
        gid_t gid;
        const struct rlimit *nofile; /* optional: RLIMIT_NOFILE for the kernel (the daemon's
                                        own is usually raised) */
} KernelOptions;

/* Spawn the kernel; ready() reports the outcome later. Fails synchronously (no callback) on
 * bad arguments, an ipc path too long for a socket address (-ENAMETOOLONG), or when the
 * kernel's program cannot be executed (the exec errno). */
int kernel_start(sd_event *event, const KernelSpec *spec, const KernelOptions *opts,
                 const KernelCallbacks *callbacks, void *userdata, Kernel **ret);
/* One run at a time: -EBUSY while one is running, -ENOTCONN before ready or after death. */
int kernel_execute(Kernel *k, const char *code, const KernelRunCallbacks *cb, void *ud);
/* interrupt_request on the control channel when the spec says "message", else SIGINT to the
 * kernel's process group. -ENOTCONN when the kernel is not running. */
int kernel_interrupt(Kernel *k);
/* SIGKILL to the kernel's process group (a kernel keeps nothing worth a graceful shutdown);
 * reaps it, closes the sockets and removes the kernel's runtime subdirectory. Callbacks never
 * fire after this. Safe to call from within any callback. */
Kernel *kernel_free(Kernel *k);
pid_t kernel_pid(Kernel *k);
bool kernel_is_running(Kernel *k); /* a run is in progress */
bool kernel_is_ready(Kernel *k);   /* ready and not dead */
const char *kernel_runtime_dir(Kernel *k);

/* For the daemon's SIGCHLD handler (which reaps everything as a subreaper): true when pid is a
 * live kernel's process; it is then reaped here and its death reported as usual. */
bool kernel_reap_pid(pid_t pid);

static inline void kernel_freep(Kernel **k) {
        kernel_free(*k);
}
