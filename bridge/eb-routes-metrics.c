/* SPDX-License-Identifier: Apache-2.0 */
/* GET /metrics and GET /metrics/watch. All HTTP watchers share one daemon watch: the bridge
 * calls Watch() for the first and Unwatch() after the last. */
#include <string.h>

#include "eb-routes.h"
#include "eb-sse.h"

#define METRICS_PATH "/org/execd/Execd1/metrics"
#define METRICS_INTERFACE "org.execd.Execd1.Metrics"
#define METRICS_AREA "metrics"
/* Each watcher costs a socket and a little memory; beyond this the answer is 429. */
#define METRICS_WATCHERS_MAX 1024

typedef struct {
        double cpu_count, cpu_used_percent, mem_total_mib, mem_used_mib;
        guint64 timestamp;
} Sample;

/* The API's Metrics object. */
static GString *sample_json(const Sample *s) {
        GString *out = g_string_sized_new(128);
        EbJson j;

        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        eb_json_key(&j, "cpu_count");
        eb_json_double(&j, s->cpu_count);
        eb_json_key(&j, "cpu_used_pct");
        eb_json_double(&j, s->cpu_used_percent);
        eb_json_key(&j, "mem_total_mib");
        eb_json_double(&j, s->mem_total_mib);
        eb_json_key(&j, "mem_used_mib");
        eb_json_double(&j, s->mem_used_mib);
        eb_json_key(&j, "timestamp");
        eb_json_int(&j, (gint64) s->timestamp);
        eb_json_end_object(&j);
        return out;
}

static int on_sample_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        Sample s;

        if (e || sd_bus_message_read(reply, "ddddt", &s.cpu_count, &s.cpu_used_percent, &s.mem_total_mib,
                                     &s.mem_used_mib, &s.timestamp) < 0)
                eb_reply_bus_error(req->msg, EB_API_EXECD, e, NULL);
        else
                eb_reply_json(req->msg, SOUP_STATUS_OK, sample_json(&s));
        eb_request_finish(req);
        return 0;
}

void eb_route_metrics(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(EbRequest) req = eb_request_new(s, msg);

        eb_request_call(req, METRICS_PATH, METRICS_INTERFACE, "GetSample", on_sample_reply, NULL);
}

/* ---- watch ------------------------------------------------------------------------------------- */

typedef struct Hub Hub;

typedef struct {
        Hub *hub;
        EbSse *sse;
} Watcher;

struct Hub {
        EbServer *server;
        GPtrArray *watchers; /* Watcher* */
        sd_bus_slot *match;
        sd_bus_slot *watch_call;
        gboolean watching;
        EbSignalTarget target;
};

static void watcher_free(Watcher *w) {
        eb_sse_free(w->sse);
        g_free(w);
}

static void hub_stop(Hub *h) {
        sd_bus *bus = eb_server_bus(h->server);

        eb_server_unwatch_object(h->server, METRICS_PATH, &h->target);
        h->match = sd_bus_slot_unref(h->match);
        h->watch_call = sd_bus_slot_unref(h->watch_call);
        if (h->watching && bus)
                (void) sd_bus_call_method_async(bus, NULL, EB_BUS_NAME, METRICS_PATH, METRICS_INTERFACE, "Unwatch",
                                                NULL, NULL, NULL);
        h->watching = FALSE;
}

static void hub_free(Hub *h) {
        hub_stop(h);
        g_ptr_array_unref(h->watchers);
        g_free(h);
}

static void hub_on_signal(sd_bus_message *m, gpointer data) {
        Hub *h = data;
        Sample s = {};
        const char *interface;
        unsigned found = 0;
        g_autoptr(GString) json = NULL;

        if (!sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged") ||
            sd_bus_message_read(m, "s", &interface) < 0 || strcmp(interface, METRICS_INTERFACE) != 0 ||
            sd_bus_message_enter_container(m, 'a', "{sv}") < 0)
                return;
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                const char *name;
                int k = sd_bus_message_read(m, "s", &name);

                if (k >= 0 && strcmp(name, "CpuCount") == 0)
                        k = sd_bus_message_read(m, "v", "d", &s.cpu_count), found |= 1;
                else if (k >= 0 && strcmp(name, "CpuUsedPercent") == 0)
                        k = sd_bus_message_read(m, "v", "d", &s.cpu_used_percent), found |= 2;
                else if (k >= 0 && strcmp(name, "MemTotalMiB") == 0)
                        k = sd_bus_message_read(m, "v", "d", &s.mem_total_mib), found |= 4;
                else if (k >= 0 && strcmp(name, "MemUsedMiB") == 0)
                        k = sd_bus_message_read(m, "v", "d", &s.mem_used_mib), found |= 8;
                else if (k >= 0 && strcmp(name, "Timestamp") == 0)
                        k = sd_bus_message_read(m, "v", "t", &s.timestamp), found |= 16;
                else if (k >= 0)
                        k = sd_bus_message_skip(m, "v");
                if (k < 0 || sd_bus_message_exit_container(m) < 0)
                        return;
        }
        if (found != 31)
                return; /* not a sample (e.g. only Watchers changed) */
        json = sample_json(&s);
        for (guint i = 0; i < h->watchers->len; i++) {
                Watcher *w = h->watchers->pdata[i];
                eb_sse_data_event(w->sse, json->str, json->len);
                eb_sse_flush(w->sse);
        }
}

static void hub_on_daemon_gone(gpointer data) {
        Hub *h = data;

        /* The daemon's watch is gone with it: end the streams; clients reconnect. */
        h->watching = FALSE;
        hub_stop(h);
        while (h->watchers->len > 0) {
                Watcher *w = h->watchers->pdata[h->watchers->len - 1];
                eb_sse_end(w->sse);
                g_ptr_array_remove_index(h->watchers, h->watchers->len - 1);
        }
}

static void watcher_gone(gpointer data) {
        Watcher *w = data;
        Hub *h = w->hub;

        g_ptr_array_remove_fast(h->watchers, w);
        if (h->watchers->len == 0)
                hub_stop(h);
}

static int on_watch_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Hub *h = userdata;

        h->watch_call = sd_bus_slot_unref(h->watch_call);
        /* Without the daemon's watch no sample would ever come: end the streams. */
        if (sd_bus_message_is_method_error(reply, NULL))
                hub_on_daemon_gone(h);
        return 0;
}

static gboolean hub_start(Hub *h) {
        sd_bus *bus = eb_server_bus(h->server);
        int k;

        if (h->watching)
                return TRUE;
        if (!bus)
                return FALSE;
        k = sd_bus_add_match(bus, &h->match,
                             "type='signal',sender='" EB_BUS_NAME "',path='" METRICS_PATH "',"
                             "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
                             NULL, NULL);
        if (k >= 0)
                k = sd_bus_call_method_async(bus, &h->watch_call, EB_BUS_NAME, METRICS_PATH, METRICS_INTERFACE, "Watch",
                                             on_watch_reply, h, NULL);
        if (k < 0) {
                h->match = sd_bus_slot_unref(h->match);
                return FALSE;
        }
        h->target = (EbSignalTarget) { hub_on_signal, hub_on_daemon_gone, h };
        eb_server_watch_object(h->server, METRICS_PATH, &h->target);
        h->watching = TRUE;
        return TRUE;
}

void eb_route_metrics_watch(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        Hub *h = eb_server_get_area(s, METRICS_AREA);
        Watcher *w;

        if (!h) {
                h = g_new0(Hub, 1);
                h->server = s;
                h->watchers = g_ptr_array_new_with_free_func((GDestroyNotify) watcher_free);
                eb_server_set_area(s, METRICS_AREA, h, (GDestroyNotify) hub_free);
        }
        if (h->watchers->len >= METRICS_WATCHERS_MAX) {
                eb_reply_error(msg, EB_API_EXECD, 429, "LIMITS_EXCEEDED", "too many metrics watchers");
                return;
        }
        if (!eb_server_stream_begin(s, msg))
                return;
        if (!eb_server_daemon_present(s) || !hub_start(h)) {
                eb_reply_error(msg, EB_API_EXECD, 503, "SERVICE_UNAVAILABLE", "the execd daemon is not available");
                return;
        }
        w = g_new0(Watcher, 1);
        w->hub = h;
        w->sse = eb_sse_start(msg, watcher_gone, w);
        g_ptr_array_add(h->watchers, w);
        /* Headers go out at once; samples follow every second. */
        soup_server_message_unpause(msg);
}
