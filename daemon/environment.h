/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#define EXECD_ENVIRONMENT_PREFIX "/org/execd/Execd1/environment"
#define EXECD_ENVIRONMENT_INTERFACE "org.execd.Execd1.Environment"

typedef struct Manager Manager;
typedef struct Command Command;
typedef struct Environment Environment;

struct Environment {
        Manager *manager;
        Environment *prev, *next;
        char id[33];
        char *path;
        char *org, *ws, *name;
        char **env; /* NAME=value, the environment's own variables */
        uint8_t token_hash[32]; /* SHA-256 of the token; the token itself is never kept */
        uid_t uid;  /* its own uid when the daemon is root, else 0 (runs as the daemon) */
        char *dir;
        int64_t created_ms;
        uint32_t running;
        double bucket; /* rate limit tokens */
        uint64_t bucket_usec;
};

/* Read the store (creating the state directory); environments_free() on exit. */
int environments_load(Manager *m);
void environments_free(Manager *m);
Environment *manager_find_environment(Manager *m, const char *id);
/* A command started by Execute ended: answer the call. */
void environment_execute_finished(Command *c);

int method_provision_environment(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_list_environments(sd_bus_message *msg, void *userdata, sd_bus_error *error);

extern const sd_bus_vtable environment_vtable[];
int environment_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                            void **found, sd_bus_error *error);
int environment_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                sd_bus_error *error);
