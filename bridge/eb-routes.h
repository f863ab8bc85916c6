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

/* eb-routes-metrics.c */
void eb_route_metrics(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
void eb_route_metrics_watch(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query);
