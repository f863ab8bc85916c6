/* SPDX-License-Identifier: Apache-2.0 */
/* The streaming multipart/form-data parser. The first line of the input is the Content-Type
 * header (eb_multipart_boundary); when it gives no boundary, "BOUNDARY" is used. The rest is
 * the body, fed whole, then in chunks of varying sizes, then (for small bodies) a byte at a
 * time: the events (parts, their headers and data, the outcome) must be the same every way. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb-multipart.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        setenv("G_SLICE", "always-malloc", 1);
        return 0;
}

typedef struct {
        GString *log;
        gboolean in_part;
} Events;

static void log_str(GString *log, const char *s) {
        if (s)
                g_string_append_printf(log, "[%zu:%s]", strlen(s), s);
        else
                g_string_append(log, "[null]");
}

static gboolean on_begin(gpointer data, const char *name, const char *filename, const char *content_type,
                         GError **error) {
        Events *e = data;

        if (e->in_part)
                abort(); /* a part began inside another */
        e->in_part = TRUE;
        g_string_append(e->log, "\nB");
        log_str(e->log, name);
        log_str(e->log, filename);
        log_str(e->log, content_type);
        g_string_append_c(e->log, '\n');
        return TRUE;
}

static gboolean on_data(gpointer data, const guint8 *buf, gsize len, GError **error) {
        Events *e = data;

        if (!e->in_part || len == 0)
                abort(); /* data outside a part, or an empty piece */
        g_string_append_len(e->log, (const char *) buf, (gssize) len);
        return TRUE;
}

static gboolean on_end(gpointer data, GError **error) {
        Events *e = data;

        if (!e->in_part)
                abort();
        e->in_part = FALSE;
        g_string_append(e->log, "\nE");
        return TRUE;
}

static const EbMultipartCallbacks callbacks = { on_begin, on_data, on_end };

/* mode 0: whole; 1: chunks from a small PRNG seeded by seed; 2: a byte at a time. */
static char *run(const char *boundary, const uint8_t *body, size_t len, int mode, uint32_t seed) {
        Events e = { .log = g_string_new(NULL) };
        g_autoptr(EbMultipart) mp = eb_multipart_new(boundary, &callbacks, &e);
        g_autoptr(GError) error = NULL;
        gboolean ok = TRUE;
        size_t at = 0;

        while (ok && at < len) {
                size_t n = len - at;

                if (mode == 1) {
                        seed = seed * 1103515245u + 12345u;
                        n = MIN(n, 1 + (seed >> 16) % 97);
                } else if (mode == 2)
                        n = 1;
                ok = eb_multipart_feed(mp, body + at, n, &error);
                at += n;
                if (ok && eb_multipart_done(mp))
                        break;
        }
        /* An empty feed is allowed and changes nothing. */
        if (ok)
                ok = eb_multipart_feed(mp, body, 0, &error);
        if (ok)
                ok = eb_multipart_finish(mp, &error);
        if (!ok && !error)
                abort();
        if (!ok) {
                /* Failed for good: later feeds say so again. */
                g_autoptr(GError) again = NULL;
                if (eb_multipart_feed(mp, (const guint8 *) "x", 1, &again) || !again)
                        abort();
        }
        g_string_append_printf(e.log, "\n=%s", ok ? "ok" : error->message);
        return g_string_free(e.log, FALSE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nl = memchr(data, '\n', size), *body;
        g_autofree char *header = NULL, *boundary = NULL, *whole = NULL, *chunked = NULL;
        size_t len;

        if (size > 256 * 1024)
                return 0;
        if (!nl)
                return 0;
        header = g_strndup((const char *) data, (gsize) (nl - data));
        body = nl + 1;
        len = size - (size_t) (body - data);
        boundary = eb_multipart_boundary(header);
        if (boundary && (strlen(boundary) == 0 || strlen(boundary) > EB_MULTIPART_BOUNDARY_MAX ||
                         strpbrk(boundary, "\r\n")))
                abort();
        if (!boundary)
                boundary = g_strdup("BOUNDARY");

        whole = run(boundary, body, len, 0, 0);
        chunked = run(boundary, body, len, 1, (uint32_t) size * 2654435761u);
        if (strcmp(whole, chunked) != 0) {
                fprintf(stderr, "whole:\n%s\n---- chunked:\n%s\n", whole, chunked);
                abort();
        }
        if (len <= 2048) {
                g_autofree char *bytes = run(boundary, body, len, 2, 0);
                if (strcmp(whole, bytes) != 0) {
                        fprintf(stderr, "whole:\n%s\n---- bytewise:\n%s\n", whole, bytes);
                        abort();
                }
        }
        return 0;
}
