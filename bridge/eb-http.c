/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "eb-http.h"

static const char *skip_space(const char *s, const char *end) {
        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        return s;
}

static const char *trim_end(const char *s, const char *end) {
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        return end;
}

static gboolean parse_number(const char *s, const char *end, guint64 *ret) {
        guint64 v = 0;

        if (s == end)
                return FALSE;
        for (; s < end; s++) {
                if (*s < '0' || *s > '9' || v > (G_MAXINT64 - 9) / 10)
                        return FALSE;
                v = v * 10 + (guint64) (*s - '0');
        }
        *ret = v;
        return TRUE;
}

EbRangeResult eb_range_parse(const char *header, guint64 size, guint64 *ret_start, guint64 *ret_end) {
        const char *p, *stop;
        gboolean any = FALSE, found = FALSE;
        guint64 first_start = 0, first_end = 0;

        if (!header)
                return EB_RANGE_NONE;
        if (strncmp(header, "bytes=", 6) != 0)
                return EB_RANGE_MALFORMED;
        p = header + 6;
        stop = p + strlen(p);
        while (p < stop) {
                const char *comma = memchr(p, ',', (size_t) (stop - p));
                const char *spec_end = comma ? comma : stop;
                const char *a = skip_space(p, spec_end), *b = trim_end(a, spec_end);
                const char *dash;
                guint64 start, end;

                p = comma ? comma + 1 : stop;
                if (a == b)
                        continue;
                any = TRUE;
                dash = memchr(a, '-', (size_t) (b - a));
                if (!dash)
                        return EB_RANGE_MALFORMED;
                if (trim_end(a, dash) == a) {
                        /* "-N": the last N bytes. */
                        if (!parse_number(skip_space(dash + 1, b), b, &end))
                                return EB_RANGE_MALFORMED;
                        if (end == 0 || size == 0)
                                continue;
                        start = size - MIN(end, size);
                        end = size - 1;
                } else {
                        if (!parse_number(a, trim_end(a, dash), &start))
                                return EB_RANGE_MALFORMED;
                        if (skip_space(dash + 1, b) == b)
                                end = size ? size - 1 : 0;
                        else if (!parse_number(skip_space(dash + 1, b), b, &end) || end < start)
                                return EB_RANGE_MALFORMED;
                        if (start >= size)
                                continue;
                        end = MIN(end, size - 1);
                }
                if (!found) {
                        found = TRUE;
                        first_start = start;
                        first_end = end;
                }
        }
        if (!any)
                return EB_RANGE_NONE;
        if (!found)
                return EB_RANGE_UNSATISFIABLE;
        *ret_start = first_start;
        *ret_end = first_end;
        return EB_RANGE_OK;
}

/* As Go's url.PathEscape: unreserved characters and $&+,:;=@ stay, everything else is %XX. */
static void append_path_escaped(GString *out, const char *s) {
        for (const guchar *p = (const guchar *) s; *p; p++) {
                if (g_ascii_isalnum(*p) || strchr("-_.~$&+,:;=@", *p))
                        g_string_append_c(out, (char) *p);
                else
                        g_string_append_printf(out, "%%%02X", *p);
        }
}

char *eb_content_disposition(const char *name) {
        GString *out = g_string_new("attachment; filename=\"");
        gboolean plain = TRUE;

        for (const guchar *p = (const guchar *) name; *p; p++)
                if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\')
                        plain = FALSE;
        if (plain) {
                g_string_append(out, name);
                g_string_append_c(out, '"');
        } else {
                append_path_escaped(out, name);
                g_string_append(out, "\"; filename*=UTF-8''");
                append_path_escaped(out, name);
        }
        return g_string_free(out, FALSE);
}
