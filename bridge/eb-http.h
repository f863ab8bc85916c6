/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <glib.h>

typedef enum {
        EB_RANGE_NONE,          /* no Range, or "bytes=" without specs: the whole file */
        EB_RANGE_OK,            /* serve [start, end] */
        EB_RANGE_MALFORMED,     /* not "bytes=", a spec without '-', not a number, end < start */
        EB_RANGE_UNSATISFIABLE, /* no spec overlaps the file */
} EbRangeResult;

/* The first satisfiable spec of a Range header (several specs: only the first is served, as
 * the reference does); ends are clamped to size - 1, "-N" is the last N bytes. */
EbRangeResult eb_range_parse(const char *header, guint64 size, guint64 *ret_start, guint64 *ret_end);

/* Content-Disposition for a download: attachment; filename="NAME", and for names with bytes
 * outside printable ASCII the name percent-encoded as a URL path segment in both filename and
 * filename* (RFC 5987). */
char *eb_content_disposition(const char *name);
