/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "jupyter.h"
#include "ring.h"

#define EXECD_CONTEXT_PREFIX "/org/execd/Execd1/context"
#define EXECD_CONTEXT_INTERFACE "org.execd.Execd1.Context"

typedef struct Manager Manager;
typedef struct Context Context;

/* Event types kept in the ring (RingChunk.stream). */
typedef enum {
        CONTEXT_EVENT_STDOUT,
        CONTEXT_EVENT_STDERR,
        CONTEXT_EVENT_EXECUTION_COUNT,
        CONTEXT_EVENT_RESULT,
        CONTEXT_EVENT_ERROR,
        CONTEXT_EVENT_COMPLETE,
        _CONTEXT_EVENT_MAX,
} ContextEvent;

/* A code context: one Jupyter kernel, its state kept between runs. */
struct Context {
        Manager *manager;
        Context *prev, *next;
        char id[33];
        char *path;
        char *language;
        char *cwd;
        uid_t owner_uid;
        bool is_default;
        KernelSpec *spec;
        Kernel *kernel;
        bool dead;          /* the kernel died or failed; the next run restarts it */
        char *dead_reason;
        bool restarted;     /* tell the next run's caller that state was lost */
        int64_t execution_count;

        /* Calls waiting for the kernel to be ready: CreateContext/DefaultContext replies. */
        sd_bus_message **waiting;
        size_t n_waiting;

        /* The current run: its events go to the caller that started it. */
        bool running;
        char *run_code;     /* set while the run waits for a (re)starting kernel */
        char *run_owner;
        uint64_t run_first_seq;
        Ring ring;
};

int context_new(Manager *m, uid_t owner_uid, const char *language, const char *cwd, bool is_default,
                Context **ret, sd_bus_error *error);
Context *context_free(Context *c);
/* 0 when owner_uid may start another kernel (--max-contexts, --max-contexts-per-uid). */
int context_check_limits(Manager *m, uid_t owner_uid, sd_bus_error *error);
/* Reply to msg with the context's path once the kernel is ready (or with the start error). */
int context_reply_when_ready(Context *c, sd_bus_message *msg);
Context *manager_find_context(Manager *m, const char *id);
Context *manager_find_default_context(Manager *m, uid_t owner_uid, const char *language);

/* Manager methods: CreateContext, DefaultContext, ListContexts. */
int method_create_context(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_default_context(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_list_contexts(sd_bus_message *msg, void *userdata, sd_bus_error *error);

extern const sd_bus_vtable context_vtable[];
int context_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                        void **found, sd_bus_error *error);
int context_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                            sd_bus_error *error);
