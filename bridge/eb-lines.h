/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <glib.h>

/* Splits a byte stream into lines the way the execd API reports them: a line ends at \n or
 * \r, \r\n is one terminator even when split across chunks, the terminator is not part of
 * the line, and a line longer than EB_LINE_MAX is passed on in pieces (cut at a UTF-8
 * boundary) so no event grows without bound. */
#define EB_LINE_MAX (512 * 1024)

typedef void (*EbLineFunc)(const char *line, gsize len, gpointer user_data);

typedef struct {
        GByteArray *partial;
        gboolean after_cr;
        gboolean piece_sent; /* the current line was already passed on in part */
} EbLineSplitter;

void eb_lines_init(EbLineSplitter *s);
void eb_lines_clear(EbLineSplitter *s);
void eb_lines_feed(EbLineSplitter *s, const char *data, gsize len, EbLineFunc func, gpointer user_data);
/* Emit a final line without terminator, if any. */
void eb_lines_flush(EbLineSplitter *s, EbLineFunc func, gpointer user_data);
