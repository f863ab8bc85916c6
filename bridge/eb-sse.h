/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <libsoup/soup.h>

#include "eb-json.h"

/* A Server-Sent-Events response: `data: <json>\n\n` frames on a chunked body. Events are
 * batched in memory and handed to libsoup by eb_sse_flush(), one HTTP chunk per batch. */
typedef struct EbSse EbSse;
/* The client went away before eb_sse_end(). */
typedef void (*EbSseGoneFunc)(gpointer user_data);

#define EB_SSE_PING_SECONDS 3

/* Frame building, independent of any connection: `data: {"type":"<type>"` ... `,"timestamp":N}\n\n`. */
void eb_sse_frame_begin(GString *out, EbJson *j, const char *type);
void eb_sse_frame_end(EbJson *j, gint64 timestamp_ms);

EbSse *eb_sse_start(SoupServerMessage *msg, EbSseGoneFunc on_gone, gpointer user_data);
/* Start an event: `data: {"type":"<type>"`; add fields with eb_json_*, then eb_sse_end_event(). */
EbJson *eb_sse_begin_event(EbSse *sse, const char *type);
void eb_sse_end_event(EbSse *sse);
/* A whole {"type","text","timestamp"} event: the hot path for output lines. */
void eb_sse_text_event(EbSse *sse, const char *type, const char *text, gsize len);
/* A frame whose JSON was built once for many streams: `data: <json>\n\n`. */
void eb_sse_data_event(EbSse *sse, const char *json, gsize len);
void eb_sse_flush(EbSse *sse);
/* Flush, then complete the chunked body. */
void eb_sse_end(EbSse *sse);
void eb_sse_free(EbSse *sse);
/* Bytes handed to libsoup and bytes libsoup has written to the socket. */
guint64 eb_sse_appended(EbSse *sse);
guint64 eb_sse_written(EbSse *sse);
void eb_sse_set_written_callback(EbSse *sse, GFunc func, gpointer user_data);
gint64 eb_now_ms(void);
