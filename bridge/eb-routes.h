/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "eb-server.h"

/* param is the path segment matched by '*' in the route pattern, or NULL. */
typedef void (*EbRouteHandler)(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);

typedef struct {
        const char *method;
        const char *pattern; /* '*' stands for one non-empty path segment */
        EbRouteHandler handler;
} EbRoute;

/* eb-routes-command.c */
void eb_route_ping(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_command_run(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_command_interrupt(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_command_status(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_command_logs(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_session_create(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_session_run(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_session_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
/* A /code request without a language: a foreground shell command streamed like /command. */
void eb_command_run_code(EbServer *s, SoupServerMessage *msg, const char *code);
/* A /code request for a bash context: a run of that session. */
void eb_session_run_code(EbServer *s, SoupServerMessage *msg, const char *session, const char *code);

/* eb-routes-code.c */
void eb_route_code_run(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_code_context_create(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_code_contexts_list(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_code_contexts_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_code_context_get(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_code_context_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);

/* eb-routes-metrics.c */
void eb_route_metrics(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_metrics_watch(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);

/* eb-routes-files.c */
void eb_route_files_info(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_files_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_files_permissions(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_files_move(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_files_search(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_files_replace(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_directories_list(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_directories_create(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_directories_delete(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);

/* eb-routes-transfer.c */
void eb_route_files_upload(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_files_download(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);

/* eb-routes-env.c: everything under /api/ (seed 004's task environments). */
void eb_route_environments(EbServer *s, SoupServerMessage *msg, const char *path);
