/* SPDX-License-Identifier: Apache-2.0 */
/* Asking polkit without blocking: the call that needs an answer is parked (we keep a reference
 * to its message), polkit's answers arrive as replies, and then the message is put back into
 * the bus's read queue so its handler runs again from the start and finds the answer waiting.
 * Nothing else waits meanwhile. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errors.h"
#include "log.h"
#include "macro.h"
#include "polkit.h"

/* A user typing a password may take a while; a silent polkitd must not park a call forever. */
#define ASK_TIMEOUT_USEC (25ULL * 1000 * 1000)
#define ASK_INTERACTIVE_TIMEOUT_USEC (5ULL * 60 * 1000 * 1000)
/* An answer whose call never came back for it (its object vanished meanwhile) is dropped. */
#define ANSWER_STALE_USEC (60ULL * 1000 * 1000)

enum {
        ANSWER_PENDING = 0,
        ANSWER_YES = 1,
        ANSWER_NO = -1,
        ANSWER_CHALLENGE = -2, /* would be allowed after interactive authentication */
        ANSWER_FAILED = -3,    /* polkit could not be asked */
};

typedef struct PolkitQuery PolkitQuery;

typedef struct PolkitAsk {
        PolkitQuery *query;
        char *action;
        sd_bus_slot *slot;
        int answer;
        char *failure; /* why polkit could not be asked */
} PolkitAsk;

struct PolkitQuery {
        Manager *manager;
        PolkitQuery *prev, *next;
        sd_bus_message *request;
        char *sender;
        PolkitAsk *asks;
        size_t n_asks, n_pending;
        uint64_t answered_at;
};

static uint64_t now_mono(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void query_free(PolkitQuery *q) {
        Manager *m = q->manager;

        if (q->prev)
                q->prev->next = q->next;
        else
                m->polkit_queries = q->next;
        if (q->next)
                q->next->prev = q->prev;
        m->n_polkit_queries--;
        for (size_t i = 0; i < q->n_asks; i++) {
                sd_bus_slot_unref(q->asks[i].slot);
                free(q->asks[i].action);
                free(q->asks[i].failure);
        }
        free(q->asks);
        sd_bus_message_unref(q->request);
        free(q->sender);
        free(q);
}

static PolkitQuery *query_find(Manager *m, sd_bus_message *msg) {
        for (PolkitQuery *q = m->polkit_queries; q; q = q->next)
                if (q->request == msg)
                        return q;
        return NULL;
}

/* The first refusal decides the error; all must say yes. */
static int query_result(PolkitQuery *q, sd_bus_error *error) {
        for (size_t i = 0; i < q->n_asks; i++) {
                const PolkitAsk *a = &q->asks[i];

                switch (a->answer) {
                case ANSWER_YES:
                        continue;
                case ANSWER_CHALLENGE:
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                                 "Interactive authentication is required for %s", a->action);
                case ANSWER_FAILED:
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                 "Not authorized for %s: polkit could not be asked (%s)", a->action,
                                                 a->failure ? a->failure : "no answer");
                default:
                        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized by polkit for %s",
                                                 a->action);
                }
        }
        return 1;
}

static int on_answer(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitAsk *a = userdata;
        PolkitQuery *q = a->query;
        Manager *m = q->manager;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized = 0, challenge = 0, k;

        a->slot = sd_bus_slot_unref(a->slot);
        if (e) {
                a->answer = ANSWER_FAILED;
                a->failure = strdup(e->name ? e->name : "error");
        } else {
                k = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (k >= 0)
                        k = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (k < 0) {
                        a->answer = ANSWER_FAILED;
                        a->failure = strdup("malformed reply");
                } else
                        a->answer = authorized ? ANSWER_YES : challenge ? ANSWER_CHALLENGE : ANSWER_NO;
        }
        log_debug("polkit: %s for %s: %s", a->action, q->sender,
                  a->answer == ANSWER_YES ? "yes" : a->answer == ANSWER_CHALLENGE ? "challenge" : "no");

        if (--q->n_pending > 0)
                return 0;
        q->answered_at = now_mono();
        k = sd_bus_enqueue_for_read(m->bus, q->request);
        if (k < 0) {
                /* The call cannot be dispatched again: answer it here rather than leave it hanging. */
                log_warning_errno(k, "Cannot dispatch a call again after polkit answered: %m");
                (void) sd_bus_reply_method_errnof(q->request, k, "Cannot complete the call: %m");
                query_free(q);
        }
        return 0;
}

static int ask(PolkitQuery *q, PolkitAsk *a, const PolkitAction *action, bool interactive) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        sd_bus *bus = q->manager->bus;
        int k;

        k = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        /* The subject is the caller's bus connection: polkit resolves its uid, pid and session. */
        if (k >= 0)
                k = sd_bus_message_append(call, "(sa{sv})s", "system-bus-name", 1, "name", "s", q->sender, action->id);
        if (k >= 0)
                k = sd_bus_message_open_container(call, 'a', "{ss}");
        if (k >= 0 && action->detail_key)
                k = sd_bus_message_append(call, "{ss}", action->detail_key, action->detail_value);
        if (k >= 0)
                k = sd_bus_message_close_container(call);
        /* Flag 1 (AllowUserInteraction) only when the caller said it can wait for a password. */
        if (k >= 0)
                k = sd_bus_message_append(call, "us", interactive ? 1u : 0u, "");
        if (k >= 0)
                k = sd_bus_call_async(bus, &a->slot, call, on_answer, a,
                                      interactive ? ASK_INTERACTIVE_TIMEOUT_USEC : ASK_TIMEOUT_USEC);
        return k;
}

static void drop_stale_answers(Manager *m) {
        uint64_t now = now_mono();
        PolkitQuery *next;

        for (PolkitQuery *q = m->polkit_queries; q; q = next) {
                next = q->next;
                if (q->n_pending == 0 && now - q->answered_at > ANSWER_STALE_USEC)
                        query_free(q);
        }
}

int polkit_take_answer(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        PolkitQuery *q = query_find(m, msg);
        int k;

        if (!q || q->n_pending > 0)
                return 0;
        k = query_result(q, error);
        query_free(q);
        return k;
}

int polkit_authorize(Manager *m, sd_bus_message *msg, const PolkitAction *actions, size_t n_actions,
                     sd_bus_error *error) {
        const char *sender = sd_bus_message_get_sender(msg);
        unsigned mine = 0;
        PolkitQuery *q;
        int k;

        if (n_actions == 0)
                return 1;
        /* Without polkit what needs its leave is simply refused. */
        if (!m->config.polkit)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Not authorized for %s (the daemon does not use polkit on this bus)",
                                         actions[0].id);
        q = query_find(m, msg);
        if (q)
                return q->n_pending > 0 ? 0 : polkit_take_answer(m, msg, error);
        if (!sender)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Not authorized: the caller has no bus name");

        drop_stale_answers(m);
        for (q = m->polkit_queries; q; q = q->next)
                mine += strcmp(q->sender, sender) == 0;
        if (mine >= POLKIT_PENDING_PER_CALLER || m->n_polkit_queries >= POLKIT_PENDING_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "Too many authorization checks in progress (limit %u per caller, %u in all)",
                                         POLKIT_PENDING_PER_CALLER, POLKIT_PENDING_MAX);

        q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->manager = m;
        q->request = sd_bus_message_ref(msg);
        q->sender = strdup(sender);
        q->asks = calloc(n_actions, sizeof *q->asks);
        q->next = m->polkit_queries;
        if (q->next)
                q->next->prev = q;
        m->polkit_queries = q;
        m->n_polkit_queries++;
        if (!q->sender || !q->asks) {
                query_free(q);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_actions; i++) {
                PolkitAsk *a = &q->asks[q->n_asks];

                *a = (PolkitAsk) { .query = q, .action = strdup(actions[i].id) };
                q->n_asks++;
                if (!a->action) {
                        query_free(q);
                        return -ENOMEM;
                }
                k = ask(q, a, &actions[i], sd_bus_message_get_allow_interactive_authorization(msg) > 0);
                if (k < 0) {
                        query_free(q);
                        return sd_bus_error_set_errnof(error, k, "Cannot ask polkit for %s: %m", actions[i].id);
                }
                q->n_pending++;
        }
        return 0;
}

void polkit_name_gone(Manager *m, const char *name) {
        PolkitQuery *next;

        for (PolkitQuery *q = m->polkit_queries; q; q = next) {
                next = q->next;
                if (strcmp(q->sender, name) == 0)
                        query_free(q);
        }
}

void polkit_free_all(Manager *m) {
        while (m->polkit_queries)
                query_free(m->polkit_queries);
}
