/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "eb-lines.h"

void eb_lines_init(EbLineSplitter *s) {
        *s = (EbLineSplitter) { .partial = g_byte_array_new() };
}

void eb_lines_clear(EbLineSplitter *s) {
        g_clear_pointer(&s->partial, g_byte_array_unref);
}

/* Bytes of data that can be cut off without splitting a UTF-8 sequence at the end. */
static gsize utf8_safe_cut(const guint8 *data, gsize len) {
        for (gsize back = 1; back <= 3 && back <= len; back++) {
                guint8 c = data[len - back];
                if ((c & 0xC0) == 0x80)
                        continue; /* continuation byte: keep looking for the lead */
                if (c >= 0xC0) {
                        gsize need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                        if (need > back)
                                return len - back;
                }
                break;
        }
        return len;
}

static void emit_pieces_of_partial(EbLineSplitter *s, EbLineFunc func, gpointer user_data) {
        while (s->partial->len >= EB_LINE_MAX) {
                s->piece_sent = TRUE;
                gsize cut = utf8_safe_cut(s->partial->data, EB_LINE_MAX);
                func((const char *) s->partial->data, cut, user_data);
                g_byte_array_remove_range(s->partial, 0, (guint) cut);
        }
}

void eb_lines_feed(EbLineSplitter *s, const char *data, gsize len, EbLineFunc func, gpointer user_data) {
        const char *p = data, *end = data + len;

        /* An empty feed (an Output signal with no bytes) says nothing: a '\r' at the end of the
         * previous feed may still be followed by its '\n'. */
        if (len == 0)
                return;
        if (s->after_cr && p < end && *p == '\n')
                p++;
        s->after_cr = FALSE;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                const char *cr = memchr(p, '\r', (size_t) ((nl ? nl : end) - p));
                const char *term = cr ? cr : nl;
                const char *line;
                gsize line_len;

                if (!term) {
                        g_byte_array_append(s->partial, (const guint8 *) p, (guint) (end - p));
                        emit_pieces_of_partial(s, func, user_data);
                        return;
                }
                if (s->partial->len > 0) {
                        g_byte_array_append(s->partial, (const guint8 *) p, (guint) (term - p));
                        emit_pieces_of_partial(s, func, user_data);
                        line = (const char *) s->partial->data;
                        line_len = s->partial->len;
                } else {
                        line = p;
                        line_len = (gsize) (term - p);
                        while (line_len >= EB_LINE_MAX) {
                                s->piece_sent = TRUE;
                                gsize cut = utf8_safe_cut((const guint8 *) line, EB_LINE_MAX);
                                func(line, cut, user_data);
                                line += cut;
                                line_len -= cut;
                        }
                }
                /* An empty line is reported as "\n", so it is visible as an event; the empty tail of
                 * a line already sent in pieces is nothing. */
                if (line_len > 0)
                        func(line, line_len, user_data);
                else if (!s->piece_sent)
                        func("\n", 1, user_data);
                s->piece_sent = FALSE;
                g_byte_array_set_size(s->partial, 0);

                p = term + 1;
                if (*term == '\r') {
                        if (p < end && *p == '\n')
                                p++;
                        else if (p == end)
                                s->after_cr = TRUE;
                }
        }
}

void eb_lines_flush(EbLineSplitter *s, EbLineFunc func, gpointer user_data) {
        if (s->partial->len > 0)
                func((const char *) s->partial->data, s->partial->len, user_data);
        g_byte_array_set_size(s->partial, 0);
        s->after_cr = FALSE;
        s->piece_sent = FALSE;
}
