/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

#include "execd.h"

/* The actions of data/org.execd.Execd1.policy.in. */
#define POLKIT_ACTION_RUN "org.execd.Execd1.run"
#define POLKIT_ACTION_RUN_AS_USER "org.execd.Execd1.run-as-user"
#define POLKIT_ACTION_FILES "org.execd.Execd1.files"
#define POLKIT_ACTION_ENVIRONMENTS "org.execd.Execd1.manage-environments"

/* Questions in flight for one bus client, and for everybody. */
#define POLKIT_PENDING_PER_CALLER 16
#define POLKIT_PENDING_MAX 1024

typedef struct PolkitAction {
        const char *id;
        const char *detail_key; /* NULL: no details */
        const char *detail_value;
} PolkitAction;

/* May the caller of msg do every one of actions[]?
 *  1: yes, go on.
 *  0: polkit was asked; the handler returns 1 without replying. When the answer comes the call
 *     is dispatched again and this returns the answer.
 * <0: no, with error set (denied, needs interactive authorization, polkit unavailable, or too
 *     many questions in flight).
 * The handler must ask for the same actions each time it is dispatched for the same call. */
int polkit_authorize(Manager *m, sd_bus_message *msg, const PolkitAction *actions, size_t n_actions,
                     sd_bus_error *error);

/* Whether an answer for msg is waiting: 1 allowed, 0 none, <0 denied with error set. The answer
 * is taken, so the next call asks again. */
int polkit_take_answer(Manager *m, sd_bus_message *msg, sd_bus_error *error);

void polkit_name_gone(Manager *m, const char *name);
void polkit_free_all(Manager *m);
