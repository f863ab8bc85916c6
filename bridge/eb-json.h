/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <glib.h>

/* A small JSON writer: the bridge's single way of producing JSON. It is lean enough for
 * millions of output events a second, which JsonGenerator is not. */
typedef struct {
        GString *out;
        guint depth;
        guint64 has_items; /* bit per depth: a value was written at that level */
        gboolean after_key;
} EbJson;

void eb_json_init(EbJson *j, GString *out);
/* Quoted JSON string; invalid UTF-8 becomes U+FFFD, control characters \uXXXX. */
void eb_json_append_escaped(GString *out, const char *s, gsize len);
/* The same into dst, which must have room for EB_JSON_ESCAPED_MAX(len) bytes; returns the
 * bytes written. */
#define EB_JSON_ESCAPED_MAX(len) (6 * (len) + 2)
gsize eb_json_escape_into(char *dst, const char *s, gsize len);
void eb_json_begin_object(EbJson *j);
void eb_json_end_object(EbJson *j);
void eb_json_begin_array(EbJson *j);
void eb_json_end_array(EbJson *j);
void eb_json_key(EbJson *j, const char *key);
void eb_json_string(EbJson *j, const char *s);
void eb_json_string_len(EbJson *j, const char *s, gsize len);
void eb_json_int(EbJson *j, gint64 v);
/* Shortest form that reads back the same, locale-independent; NaN and infinities as null. */
void eb_json_double(EbJson *j, double v);
void eb_json_bool(EbJson *j, gboolean v);
void eb_json_null(EbJson *j);
/* RFC 3339 in local time with nanoseconds, the fraction's trailing zeros trimmed ("Z" for UTC),
 * as the reference prints times. */
void eb_json_time_ns(EbJson *j, gint64 ns);

/* Whether raw JSON text holds a NUL, escaped (\u0000) or not, or an unpaired surrogate escape
 * (\ud800-\udfff), inside any string. */
gboolean eb_json_text_has_nul_escape(const char *data, gsize len);
/* Whether raw JSON text holds more than one top-level value ("{} {}", "0[]"). json-glib 1.6
 * accepts such text when a later value is an object or array, keeps the last one and leaks the
 * others, so bodies are checked before they are parsed. */
gboolean eb_json_text_has_trailing_value(const char *data, gsize len);
