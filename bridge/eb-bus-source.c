/* SPDX-License-Identifier: Apache-2.0 */
#include <poll.h>

#include "eb-bus-source.h"

typedef struct {
        GSource source;
        sd_bus *bus;
        gpointer fd_tag;
        GIOCondition events; /* what fd_tag polls for now */
        gboolean dead;
} EbBusSource;

static gboolean bus_source_prepare(GSource *source, gint *timeout) {
        EbBusSource *s = (EbBusSource *) source;
        uint64_t usec = UINT64_MAX, queued = 0;
        int events;

        if (s->dead) {
                *timeout = -1;
                return FALSE;
        }
        /* Messages already read into memory would not wake poll(). */
        if (sd_bus_get_n_queued_read(s->bus, &queued) >= 0 && queued > 0) {
                *timeout = 0;
                return TRUE;
        }
        events = sd_bus_get_events(s->bus);
        if (events < 0) {
                *timeout = 0;
                return TRUE; /* let dispatch notice the broken connection */
        }
        {
                /* Only on change: modifying a polled fd wakes the main context, so doing it on
                 * every prepare would spin the loop for ever. */
                GIOCondition want = ((events & POLLIN) ? G_IO_IN : 0) | ((events & POLLOUT) ? G_IO_OUT : 0) |
                                    G_IO_HUP | G_IO_ERR;
                if (want != s->events) {
                        g_source_modify_unix_fd(source, s->fd_tag, want);
                        s->events = want;
                }
        }

        *timeout = -1;
        if (sd_bus_get_timeout(s->bus, &usec) >= 0 && usec != UINT64_MAX) {
                gint64 now = g_get_monotonic_time();
                *timeout = (gint64) usec <= now ? 0 : (gint) MIN(((gint64) usec - now + 999) / 1000, G_MAXINT);
        }
        return *timeout == 0;
}

static gboolean bus_source_check(GSource *source) {
        EbBusSource *s = (EbBusSource *) source;
        uint64_t usec = UINT64_MAX;

        if (s->dead)
                return FALSE;
        if (g_source_query_unix_fd(source, s->fd_tag) != 0)
                return TRUE;
        return sd_bus_get_timeout(s->bus, &usec) >= 0 && usec != UINT64_MAX &&
               (gint64) usec <= g_get_monotonic_time();
}

static gboolean bus_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data) {
        EbBusSource *s = (EbBusSource *) source;
        int k;

        /* Bounded so one busy connection cannot starve HTTP clients. */
        for (int i = 0; i < 256; i++) {
                k = sd_bus_process(s->bus, NULL);
                if (k <= 0)
                        break;
        }
        if (k < 0 || !sd_bus_is_open(s->bus)) {
                s->dead = TRUE;
                g_source_remove_unix_fd(source, s->fd_tag);
                if (callback)
                        callback(user_data);
                return G_SOURCE_REMOVE;
        }
        return G_SOURCE_CONTINUE;
}

static void bus_source_finalize(GSource *source) {
        EbBusSource *s = (EbBusSource *) source;
        sd_bus_unref(s->bus);
}

static GSourceFuncs bus_source_funcs = {
        .prepare = bus_source_prepare,
        .check = bus_source_check,
        .dispatch = bus_source_dispatch,
        .finalize = bus_source_finalize,
};

GSource *eb_bus_source_new(sd_bus *bus, GSourceFunc on_disconnect, gpointer user_data) {
        GSource *source = g_source_new(&bus_source_funcs, sizeof(EbBusSource));
        EbBusSource *s = (EbBusSource *) source;

        s->bus = sd_bus_ref(bus);
        s->events = G_IO_IN | G_IO_HUP | G_IO_ERR;
        s->fd_tag = g_source_add_unix_fd(source, sd_bus_get_fd(bus), s->events);
        g_source_set_callback(source, on_disconnect, user_data, NULL);
        g_source_set_name(source, "sd-bus");
        return source;
}
