/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "eb-conn.h"
#include "eb-sse.h"

#define EB_SSE_SNDBUF (4 * 1024 * 1024)

struct EbSse {
        SoupServerMessage *msg;
        GString *batch;
        EbJson json;
        guint64 appended, written;
        gint64 last_event_us;
        guint ping_id;
        GSource *hup_watch;
        gulong finished_id, wrote_id;
        gboolean ended, gone;
        EbSseGoneFunc on_gone;
        gpointer user_data;
        GFunc on_written;
        gpointer written_data;
        /* `,"timestamp":N}\n\n` for the batch being built: one clock read per batch. */
        char suffix[48];
        gsize suffix_len;
        gint64 batch_ms;
};

gint64 eb_now_ms(void) {
        return g_get_real_time() / 1000;
}

static void sse_gone(EbSse *sse) {
        if (sse->gone || sse->ended)
                return;
        sse->gone = TRUE;
        g_clear_handle_id(&sse->ping_id, g_source_remove);
        if (sse->hup_watch) {
                g_source_destroy(sse->hup_watch);
                g_clear_pointer(&sse->hup_watch, g_source_unref);
        }
        if (sse->on_gone)
                sse->on_gone(sse->user_data);
}

static void on_finished(SoupServerMessage *msg, gpointer user_data) {
        sse_gone(user_data);
}

static void on_wrote_body_data(SoupServerMessage *msg, guint size, gpointer user_data) {
        EbSse *sse = user_data;

        sse->written += size;
        if (sse->on_written)
                sse->on_written(sse, sse->written_data);
}

/* libsoup does not read a connection while it waits for response data, so a client that
 * hangs up during a quiet command would go unnoticed until the next write. */
static gboolean on_socket_event(GSocket *socket, GIOCondition condition, gpointer user_data) {
        EbSse *sse = user_data;
        char ch;
        ssize_t k = recv(g_socket_get_fd(socket), &ch, 1, MSG_PEEK | MSG_DONTWAIT);

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return G_SOURCE_CONTINUE;
        if (k > 0) {
                /* A pipelined request: the client is alive; stop watching. */
                g_clear_pointer(&sse->hup_watch, g_source_unref);
                return G_SOURCE_REMOVE;
        }
        g_clear_pointer(&sse->hup_watch, g_source_unref);
        if (!sse->gone && !sse->ended) {
                /* libsoup waits for more of the body and would keep the connection forever:
                 * cut it and end the body, so that its write fails and it finishes the message
                 * and drops the connection. */
                GSocket *s = eb_conn_message_socket(sse->msg);
                if (s)
                        g_socket_shutdown(s, TRUE, TRUE, NULL);
                soup_message_body_complete(soup_server_message_get_response_body(sse->msg));
                soup_server_message_unpause(sse->msg);
        }
        sse_gone(sse);
        return G_SOURCE_REMOVE;
}

static gboolean on_ping(gpointer user_data) {
        EbSse *sse = user_data;

        if (g_get_monotonic_time() - sse->last_event_us >= (EB_SSE_PING_SECONDS * G_USEC_PER_SEC) * 9 / 10) {
                eb_sse_text_event(sse, "ping", "pong", 4);
                eb_sse_flush(sse);
        }
        return G_SOURCE_CONTINUE;
}

EbSse *eb_sse_start(SoupServerMessage *msg, EbSseGoneFunc on_gone, gpointer user_data) {
        SoupMessageHeaders *h = soup_server_message_get_response_headers(msg);
        GSocket *socket = eb_conn_message_socket(msg);
        EbSse *sse = g_new0(EbSse, 1);

        sse->msg = g_object_ref(msg);
        sse->batch = g_string_sized_new(4096);
        sse->on_gone = on_gone;
        sse->user_data = user_data;
        sse->last_event_us = g_get_monotonic_time();

        soup_server_message_set_status(msg, SOUP_STATUS_OK, NULL);
        soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
        soup_message_headers_replace(h, "Content-Type", "text/event-stream");
        soup_message_headers_replace(h, "Cache-Control", "no-cache");
        soup_message_headers_replace(h, "X-Accel-Buffering", "no");
        /* Written chunks are freed at once: memory stays bounded by what is unwritten. */
        soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);

        sse->finished_id = g_signal_connect(msg, "finished", G_CALLBACK(on_finished), sse);
        sse->wrote_id = g_signal_connect(msg, "wrote-body-data", G_CALLBACK(on_wrote_body_data), sse);
        if (socket) {
                /* A deeper send buffer lets each wake-up of a busy stream move more data. */
                int sndbuf = EB_SSE_SNDBUF;
                (void) setsockopt(g_socket_get_fd(socket), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
                sse->hup_watch = g_socket_create_source(socket, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
                g_source_set_callback(sse->hup_watch, (GSourceFunc) (void (*)(void)) on_socket_event, sse, NULL);
                g_source_attach(sse->hup_watch, NULL);
        }
        sse->ping_id = g_timeout_add_seconds(EB_SSE_PING_SECONDS, on_ping, sse);
        return sse;
}

void eb_sse_frame_begin(GString *out, EbJson *j, const char *type) {
        g_string_append_len(out, "data: ", 6);
        eb_json_init(j, out);
        eb_json_begin_object(j);
        eb_json_key(j, "type");
        eb_json_string(j, type);
}

void eb_sse_frame_end(EbJson *j, gint64 timestamp_ms) {
        eb_json_key(j, "timestamp");
        eb_json_int(j, timestamp_ms);
        eb_json_end_object(j);
        g_string_append_len(j->out, "\n\n", 2);
}

static gint64 batch_timestamp(EbSse *sse) {
        if (sse->suffix_len == 0) {
                sse->batch_ms = eb_now_ms();
                sse->suffix_len = (gsize) g_snprintf(sse->suffix, sizeof sse->suffix,
                                                     ",\"timestamp\":%" G_GINT64_FORMAT "}\n\n", sse->batch_ms);
        }
        return sse->batch_ms;
}

EbJson *eb_sse_begin_event(EbSse *sse, const char *type) {
        eb_sse_frame_begin(sse->batch, &sse->json, type);
        return &sse->json;
}

void eb_sse_end_event(EbSse *sse) {
        eb_sse_frame_end(&sse->json, batch_timestamp(sse));
}

/* The hot path, one event per output line: no JSON writer state, no formatting. */
void eb_sse_text_event(EbSse *sse, const char *type, const char *text, gsize len) {
        GString *b = sse->batch;
        gsize at = b->len, type_len = strlen(type);
        char *d;

        if (sse->suffix_len == 0)
                batch_timestamp(sse);
        g_string_set_size(b, at + 32 + type_len + EB_JSON_ESCAPED_MAX(len) + sse->suffix_len);
        d = b->str + at;
        memcpy(d, "data: {\"type\":\"", 15);
        d += 15;
        memcpy(d, type, type_len);
        d += type_len;
        memcpy(d, "\",\"text\":", 9);
        d += 9;
        d += eb_json_escape_into(d, text, len);
        memcpy(d, sse->suffix, sse->suffix_len);
        d += sse->suffix_len;
        g_string_truncate(b, (gsize) (d - b->str));
}

void eb_sse_data_event(EbSse *sse, const char *json, gsize len) {
        g_string_append_len(sse->batch, "data: ", 6);
        g_string_append_len(sse->batch, json, (gssize) len);
        g_string_append_len(sse->batch, "\n\n", 2);
}

void eb_sse_flush(EbSse *sse) {
        gsize len = sse->batch->len;

        if (len == 0 || sse->gone || sse->ended)
                return;
        sse->suffix_len = 0; /* the next batch reads the clock again */
        sse->last_event_us = g_get_monotonic_time();
        sse->appended += len;
        soup_message_body_append(soup_server_message_get_response_body(sse->msg), SOUP_MEMORY_TAKE,
                                 g_string_free(sse->batch, FALSE), len);
        sse->batch = g_string_sized_new(MIN(len + len / 4, 256 * 1024));
        soup_server_message_unpause(sse->msg);
}

void eb_sse_end(EbSse *sse) {
        if (sse->gone || sse->ended)
                return;
        eb_sse_flush(sse);
        sse->ended = TRUE;
        g_clear_handle_id(&sse->ping_id, g_source_remove);
        if (sse->hup_watch) {
                g_source_destroy(sse->hup_watch);
                g_clear_pointer(&sse->hup_watch, g_source_unref);
        }
        soup_message_body_complete(soup_server_message_get_response_body(sse->msg));
        soup_server_message_unpause(sse->msg);
}

guint64 eb_sse_appended(EbSse *sse) {
        return sse->appended;
}

guint64 eb_sse_written(EbSse *sse) {
        return sse->written;
}

void eb_sse_set_written_callback(EbSse *sse, GFunc func, gpointer user_data) {
        sse->on_written = func;
        sse->written_data = user_data;
}

void eb_sse_free(EbSse *sse) {
        if (!sse)
                return;
        g_clear_handle_id(&sse->ping_id, g_source_remove);
        if (sse->hup_watch) {
                g_source_destroy(sse->hup_watch);
                g_source_unref(sse->hup_watch);
        }
        g_clear_signal_handler(&sse->finished_id, sse->msg);
        g_clear_signal_handler(&sse->wrote_id, sse->msg);
        g_string_free(sse->batch, TRUE);
        g_object_unref(sse->msg);
        g_free(sse);
}
