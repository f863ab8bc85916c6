/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "eb-json.h"

void eb_json_init(EbJson *j, GString *out) {
        *j = (EbJson) { .out = out };
}

/* Length of the valid UTF-8 sequence at s (at most len bytes), 0 if invalid. */
static gsize utf8_sequence_length(const guchar *s, gsize len) {
        guint32 cp;
        gsize n;

        if (s[0] < 0xC2)
                return 0; /* continuation byte or overlong lead */
        if (s[0] < 0xE0)
                n = 2, cp = s[0] & 0x1F;
        else if (s[0] < 0xF0)
                n = 3, cp = s[0] & 0x0F;
        else if (s[0] < 0xF5)
                n = 4, cp = s[0] & 0x07;
        else
                return 0;
        if (n > len)
                return 0;
        for (gsize i = 1; i < n; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        return n;
}

void eb_json_append_escaped(GString *out, const char *str, gsize len) {
        static const char hex[] = "0123456789abcdef";
        const guchar *s = (const guchar *) str, *end = s + len, *run = s;

        g_string_append_c(out, '"');
        while (s < end) {
                guchar c = *s;

                if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
                        s++;
                        continue;
                }
                if (c >= 0x80) {
                        gsize n = utf8_sequence_length(s, (gsize) (end - s));
                        if (n > 0) {
                                s += n;
                                continue;
                        }
                }
                g_string_append_len(out, (const char *) run, s - run);
                switch (c) {
                case '"':
                        g_string_append_len(out, "\\\"", 2);
                        break;
                case '\\':
                        g_string_append_len(out, "\\\\", 2);
                        break;
                case '\n':
                        g_string_append_len(out, "\\n", 2);
                        break;
                case '\r':
                        g_string_append_len(out, "\\r", 2);
                        break;
                case '\t':
                        g_string_append_len(out, "\\t", 2);
                        break;
                default:
                        if (c >= 0x80)
                                g_string_append_len(out, "\xef\xbf\xbd", 3);
                        else {
                                char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                                g_string_append_len(out, u, 6);
                        }
                }
                s++;
                run = s;
        }
        g_string_append_len(out, (const char *) run, s - run);
        g_string_append_c(out, '"');
}

static void before_value(EbJson *j) {
        if (j->after_key) {
                j->after_key = FALSE;
                return;
        }
        if (j->has_items & (G_GUINT64_CONSTANT(1) << j->depth))
                g_string_append_c(j->out, ',');
        j->has_items |= G_GUINT64_CONSTANT(1) << j->depth;
}

static void open_container(EbJson *j, char ch) {
        before_value(j);
        g_string_append_c(j->out, ch);
        g_assert(j->depth < 63);
        j->depth++;
        j->has_items &= ~(G_GUINT64_CONSTANT(1) << j->depth);
}

static void close_container(EbJson *j, char ch) {
        g_assert(j->depth > 0);
        j->depth--;
        g_string_append_c(j->out, ch);
}

void eb_json_begin_object(EbJson *j) {
        open_container(j, '{');
}

void eb_json_end_object(EbJson *j) {
        close_container(j, '}');
}

void eb_json_begin_array(EbJson *j) {
        open_container(j, '[');
}

void eb_json_end_array(EbJson *j) {
        close_container(j, ']');
}

void eb_json_key(EbJson *j, const char *key) {
        before_value(j);
        eb_json_append_escaped(j->out, key, strlen(key));
        g_string_append_c(j->out, ':');
        j->after_key = TRUE;
}

void eb_json_string_len(EbJson *j, const char *s, gsize len) {
        before_value(j);
        eb_json_append_escaped(j->out, s, len);
}

void eb_json_string(EbJson *j, const char *s) {
        eb_json_string_len(j, s, strlen(s));
}

void eb_json_int(EbJson *j, gint64 v) {
        before_value(j);
        g_string_append_printf(j->out, "%" G_GINT64_FORMAT, v);
}

void eb_json_bool(EbJson *j, gboolean v) {
        before_value(j);
        g_string_append(j->out, v ? "true" : "false");
}

void eb_json_null(EbJson *j) {
        before_value(j);
        g_string_append(j->out, "null");
}
