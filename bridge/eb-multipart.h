/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <glib.h>

/* An incremental parser for multipart/form-data request bodies (RFC 2046, RFC 7578), as lenient
 * as Go's mime/multipart, which the reference server used. The body may arrive in chunks of any
 * size; part data is handed on as it arrives, so a part is never held in memory. The parser's
 * own memory is the part headers (at most EB_MULTIPART_HEADER_MAX bytes) and a few words: the
 * bytes of a possible delimiter split across chunks are not copied, since they can only be a
 * prefix of the delimiter itself and are given back from it if it turns out to be data.
 *
 * Syntax accepted:
 * - Everything before the first delimiter (the preamble) and after the closing one (the
 *   epilogue) is ignored.
 * - A delimiter is "--" boundary at the start of the body or of a line. The line break before
 *   it (CRLF or a bare LF) belongs to the delimiter, not to the part data. "--" boundary that is
 *   not at the start of a line, or is followed by anything but spaces, tabs, a line break or
 *   "--", is data.
 * - After "--" boundary: spaces and tabs, then a line break and the next part's headers; or
 *   "--", the close. The line that ends a part's headers also serves as the line break before
 *   the next delimiter, so an empty part need not have a second line break (as in Go).
 * - Header lines end in CRLF or LF and the headers end with an empty line. A line that starts
 *   with a space or tab continues the previous header: the two are joined with one space.
 *   Names are tokens, matched case-insensitively; lines without a colon and control characters
 *   other than tab are errors. Unknown headers are ignored; of repeated ones, the first counts.
 * - Content-Disposition parameters are tokens or quoted strings. In a quoted string a backslash
 *   escapes only a MIME special character ("\"", "\\", ...) and is kept otherwise, as old
 *   browsers send unescaped Windows paths. "name*" and "filename*" in the RFC 5987 form
 *   UTF-8''percent-encoded (or us-ascii) take precedence over "name" and "filename"; other
 *   charsets or bad encoding leave them unused. A malformed parameter list or a parameter given
 *   twice with different values makes the whole header count as having no parameters, as in Go;
 *   a NUL character (from %00) is an error rather than a name cut short.
 *
 * Limits: at most EB_MULTIPART_HEADER_MAX bytes of headers per part (line breaks and the empty
 * line included) and EB_MULTIPART_PARTS_MAX parts per body; beyond them the body is an error. */
#define EB_MULTIPART_HEADER_MAX (16 * 1024)
#define EB_MULTIPART_PARTS_MAX 10000
#define EB_MULTIPART_BOUNDARY_MAX 70

typedef struct EbMultipart EbMultipart;

/* Any callback may be NULL. A callback that returns FALSE stops parsing: the feed returns FALSE
 * with the callback's error (a generic one if it set none), and so does every later feed. */
typedef struct {
        /* A part's headers are complete. From Content-Disposition: name (only when the disposition
         * type is form-data, as Go's FormName) and filename, NULL when absent; filename="" (a file
         * input with no file chosen, as browsers send it) is reported as "". The filename is as
         * sent, not reduced to its last path component: never use it as a path. content_type is the
         * Content-Type value as sent (parameters included), NULL when absent. The strings are not
         * checked to be UTF-8 and are valid only during the call. */
        gboolean (*part_begin)(gpointer data, const char *name, const char *filename,
                               const char *content_type, GError **error);
        /* Body bytes of the current part, in order, in pieces of any size (never 0). */
        gboolean (*part_data)(gpointer data, const guint8 *buf, gsize len, GError **error);
        /* The current part ended (its delimiter was seen). */
        gboolean (*part_end)(gpointer data, GError **error);
} EbMultipartCallbacks;

/* The boundary from a Content-Type value ("multipart/form-data; boundary=..." quoted or not,
 * parameters in any order, case-insensitive type and parameter name); NULL when the type is not
 * multipart/form-data, the parameters are malformed, or the boundary is missing, empty, longer
 * than EB_MULTIPART_BOUNDARY_MAX characters or holds control characters. */
char *eb_multipart_boundary(const char *content_type);

/* boundary: as returned by eb_multipart_boundary(). The callbacks are copied. */
EbMultipart *eb_multipart_new(const char *boundary, const EbMultipartCallbacks *callbacks, gpointer data);
void eb_multipart_free(EbMultipart *mp);

/* Feed the next bytes of the body. FALSE on malformed input (G_IO_ERROR_INVALID_DATA) or when a
 * callback returned FALSE (its error). After FALSE, further feeds return FALSE again, with the
 * same error. Bytes after the closing delimiter are ignored. */
gboolean eb_multipart_feed(EbMultipart *mp, const guint8 *buf, gsize len, GError **error);

/* The body is complete: FALSE (G_IO_ERROR_INVALID_DATA, or the earlier failure) unless the
 * closing delimiter was seen. */
gboolean eb_multipart_finish(EbMultipart *mp, GError **error);

/* Whether the closing delimiter has been seen (anything after it, the epilogue, is ignored). */
gboolean eb_multipart_done(EbMultipart *mp);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(EbMultipart, eb_multipart_free)
