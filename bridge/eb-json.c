/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
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

/* 1 for bytes that stand for themselves inside a JSON string. */
static const guint8 plain_byte[256] = {
        [0x20] = 1, [0x21] = 1, [0x23 ... 0x5B] = 1, [0x5D ... 0x7F] = 1,
};

/* True when one of the 8 bytes in w needs attention: a control character, '"', '\\' or a
 * byte >= 0x80 (checked eight at a time; output is mostly plain text). */
static inline gboolean word_needs_escape(guint64 w) {
        const guint64 ones = G_GUINT64_CONSTANT(0x0101010101010101), high = ones * 0x80;
        guint64 quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
        guint64 control = (w - ones * 0x20) & ~w & high;          /* some byte < 0x20 */
        guint64 is_quote = (quote - ones) & ~quote & high;         /* some byte == '"' */
        guint64 is_backslash = (backslash - ones) & ~backslash & high;

        return (control | is_quote | is_backslash | (w & high)) != 0;
}

gsize eb_json_escape_into(char *dst, const char *str, gsize len) {
        static const char hex[] = "0123456789abcdef";
        const guchar *s = (const guchar *) str, *end = s + len;
        char *d = dst;

        *d++ = '"';
        while (s < end) {
                guchar c;

                while (end - s >= 8) {
                        guint64 w;
                        memcpy(&w, s, 8);
                        if (word_needs_escape(w))
                                break;
                        memcpy(d, &w, 8);
                        d += 8;
                        s += 8;
                }
                if (s == end)
                        break;
                c = *s;

                if (plain_byte[c]) {
                        *d++ = (char) c;
                        s++;
                        continue;
                }
                if (c >= 0x80) {
                        gsize n = utf8_sequence_length(s, (gsize) (end - s));
                        if (n > 0) {
                                memcpy(d, s, n);
                                d += n;
                                s += n;
                        } else {
                                memcpy(d, "\xef\xbf\xbd", 3);
                                d += 3;
                                s++;
                        }
                        continue;
                }
                *d++ = '\\';
                switch (c) {
                case '"':
                case '\\':
                        *d++ = (char) c;
                        break;
                case '\n':
                        *d++ = 'n';
                        break;
                case '\r':
                        *d++ = 'r';
                        break;
                case '\t':
                        *d++ = 't';
                        break;
                default:
                        memcpy(d, "u00", 3);
                        d[3] = hex[c >> 4];
                        d[4] = hex[c & 15];
                        d += 5;
                }
                s++;
        }
        *d++ = '"';
        return (gsize) (d - dst);
}

void eb_json_append_escaped(GString *out, const char *str, gsize len) {
        gsize at = out->len;

        g_string_set_size(out, at + EB_JSON_ESCAPED_MAX(len));
        g_string_truncate(out, at + eb_json_escape_into(out->str + at, str, len));
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

void eb_json_double(EbJson *j, double v) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];

        if (!isfinite(v)) {
                eb_json_null(j);
                return;
        }
        before_value(j);
        g_string_append(j->out, g_ascii_dtostr(buf, sizeof buf, v));
}

void eb_json_bool(EbJson *j, gboolean v) {
        before_value(j);
        g_string_append(j->out, v ? "true" : "false");
}

void eb_json_null(EbJson *j) {
        before_value(j);
        g_string_append(j->out, "null");
}

/* The 16-bit value of the \uXXXX escape at data[i] (data[i] == '\\'), or -1. */
static int u_escape_at(const char *data, gsize len, gsize i) {
        int v = 0;

        if (i + 5 >= len || data[i + 1] != 'u')
                return -1;
        for (gsize k = i + 2; k < i + 6; k++) {
                int d = g_ascii_xdigit_value(data[k]);
                if (d < 0)
                        return -1;
                v = v * 16 + d;
        }
        return v;
}

/* json-glib keeps strings as C strings, so "a\u0000b" would silently become "a": a command,
 * path or name cut short is worse than an error. It also turns an unpaired surrogate escape
 * ("\udcff") into bytes that are not UTF-8, which sd-bus then refuses to send: that must be a
 * 400 too, not a "daemon not available". Escapes are followed, so "\\u0000" (a backslash,
 * then text) is not a NUL. */
gboolean eb_json_text_has_nul_escape(const char *data, gsize len) {
        for (gsize i = 0; i < len; i++) {
                int v;

                if (data[i] == 0)
                        return TRUE;
                if (data[i] != '\\')
                        continue;
                v = u_escape_at(data, len, i);
                if (v == 0)
                        return TRUE;
                if (v >= 0xD800 && v <= 0xDBFF) {
                        int lo = i + 6 < len && data[i + 6] == '\\' ? u_escape_at(data, len, i + 6) : -1;
                        if (lo < 0xDC00 || lo > 0xDFFF)
                                return TRUE;
                        i += 6; /* the pair's low half, then as below */
                } else if (v >= 0xDC00 && v <= 0xDFFF)
                        return TRUE;
                i++; /* the escaped character */
        }
        return FALSE;
}

gboolean eb_json_text_has_trailing_value(const char *data, gsize len) {
        gsize depth = 0;
        gboolean in_string = FALSE, seen_value = FALSE;

        /* An object or array at depth 0 after anything but white space is a second value. */
        for (gsize i = 0; i < len; i++) {
                char c = data[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = FALSE;
                        continue;
                }
                if (c == '"')
                        in_string = TRUE;
                else if (c == '{' || c == '[') {
                        if (depth == 0 && seen_value)
                                return TRUE;
                        depth++;
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
                if (!g_ascii_isspace(c))
                        seen_value = TRUE;
        }
        return FALSE;
}

void eb_json_time_ns(EbJson *j, gint64 ns) {
        gint64 sec = ns >= 0 ? ns / 1000000000 : -((-ns + 999999999) / 1000000000);
        gint64 frac = ns - sec * 1000000000;
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_local(sec);
        char s[64];
        gsize n;
        GTimeSpan offset;

        if (!t) {
                eb_json_null(j);
                return;
        }
        n = (gsize) g_snprintf(s, sizeof s, "%04d-%02d-%02dT%02d:%02d:%02d", g_date_time_get_year(t),
                               g_date_time_get_month(t), g_date_time_get_day_of_month(t), g_date_time_get_hour(t),
                               g_date_time_get_minute(t), g_date_time_get_second(t));
        if (frac) {
                n += (gsize) g_snprintf(s + n, sizeof s - n, ".%09" G_GINT64_FORMAT, frac);
                while (s[n - 1] == '0')
                        n--;
        }
        offset = g_date_time_get_utc_offset(t);
        if (offset == 0)
                s[n++] = 'Z';
        else {
                gint64 minutes = (offset < 0 ? -offset : offset) / G_TIME_SPAN_MINUTE;
                n += (gsize) g_snprintf(s + n, sizeof s - n, "%c%02" G_GINT64_FORMAT ":%02" G_GINT64_FORMAT,
                                        offset < 0 ? '-' : '+', minutes / 60, minutes % 60);
        }
        eb_json_string_len(j, s, n);
}
