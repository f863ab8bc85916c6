/* SPDX-License-Identifier: Apache-2.0 */
/* The output line splitter (eb-lines.c) and the SSE frames the lines go out in (eb-sse.c,
 * eb-json.c). The input is a command's output, fed whole, in chunks of varying sizes, and (when
 * small) a byte at a time: the lines must be the same every way. Each line is then framed as an
 * event both ways the bridge does (the JSON writer and the hot path's eb_json_escape_into): the
 * frame must be one "data: " line ending in a blank line, and its JSON must parse back to the
 * text (invalid UTF-8 as U+FFFD). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "eb-json.h"
#include "eb-lines.h"
#include "eb-sse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        setenv("G_SLICE", "always-malloc", 1);
        return 0;
}

static void collect(const char *line, gsize len, gpointer user_data) {
        GPtrArray *lines = user_data;

        if (len == 0 || len > EB_LINE_MAX)
                abort(); /* never empty (an empty line is "\n"), never over the cap */
        if (!(len == 1 && line[0] == '\n') && (memchr(line, '\n', len) || memchr(line, '\r', len)))
                abort(); /* a terminator inside a line */
        g_ptr_array_add(lines, g_bytes_new(line, len));
}

static GPtrArray *split(const uint8_t *data, size_t size, int mode) {
        GPtrArray *lines = g_ptr_array_new_with_free_func((GDestroyNotify) g_bytes_unref);
        EbLineSplitter s;
        uint32_t seed = (uint32_t) size * 2654435761u;

        eb_lines_init(&s);
        for (size_t at = 0; at < size;) {
                size_t n = size - at;
                if (mode == 1) {
                        seed = seed * 1103515245u + 12345u;
                        n = MIN(n, (seed >> 16) % 17); /* 0 included: an empty feed is allowed */
                } else if (mode == 2)
                        n = 1;
                eb_lines_feed(&s, (const char *) data + at, n, collect, lines);
                at += n;
        }
        eb_lines_flush(&s, collect, lines);
        eb_lines_clear(&s);
        return lines;
}

static void same(GPtrArray *a, GPtrArray *b) {
        if (a->len != b->len)
                abort();
        for (guint i = 0; i < a->len; i++)
                if (!g_bytes_equal(a->pdata[i], b->pdata[i]))
                        abort();
}

/* The text as the client must read it back: invalid UTF-8 sequences become U+FFFD. */
static char *expected_text(const char *s, gsize len) {
        return g_utf8_make_valid(s, (gssize) len);
}

static void check_frame(const char *line, gsize len) {
        g_autoptr(GString) frame = g_string_new(NULL);
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autofree char *hot = g_malloc(EB_JSON_ESCAPED_MAX(len));
        g_autofree char *want = NULL;
        g_autoptr(GError) error = NULL;
        gsize hot_len;
        const char *json, *text;
        JsonObject *o;
        EbJson j;

        eb_sse_frame_begin(frame, &j, "stdout");
        eb_json_key(&j, "text");
        eb_json_string_len(&j, line, len);
        eb_sse_frame_end(&j, 1767600000000);

        if (!g_str_has_prefix(frame->str, "data: ") || !g_str_has_suffix(frame->str, "\n\n") ||
            memchr(frame->str, '\n', frame->len - 2) || memchr(frame->str, '\r', frame->len) ||
            strlen(frame->str) != frame->len)
                abort(); /* one SSE data line, then the blank line */
        json = frame->str + 6;
        if (!json_parser_load_from_data(parser, json, (gssize) (frame->len - 8), &error)) {
                fprintf(stderr, "unparsable frame: %s: %s\n", error->message, frame->str);
                abort();
        }
        o = json_node_get_object(json_parser_get_root(parser));
        text = json_object_get_string_member(o, "text");
        want = expected_text(line, len);
        /* json-glib's strings stop at a NUL; the escaped text holds it as \u0000. */
        if (!text || strncmp(text, want, strlen(text)) != 0 || (!memchr(line, 0, len) && strcmp(text, want) != 0)) {
                fprintf(stderr, "text changed: %s\n", frame->str);
                abort();
        }

        /* The hot path writes the same escaped string. */
        hot_len = eb_json_escape_into(hot, line, len);
        if (hot_len > EB_JSON_ESCAPED_MAX(len) || !strstr(frame->str, "\"text\":") ||
            memcmp(strstr(frame->str, "\"text\":") + 7, hot, hot_len) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        GPtrArray *whole, *chunked;

        if (size > 64 * 1024)
                return 0;
        whole = split(data, size, 0);
        chunked = split(data, size, 1);
        same(whole, chunked);
        g_ptr_array_unref(chunked);
        if (size <= 4096) {
                GPtrArray *bytes = split(data, size, 2);
                same(whole, bytes);
                g_ptr_array_unref(bytes);
        }
        for (guint i = 0; i < whole->len; i++) {
                gsize len;
                const char *line = g_bytes_get_data(whole->pdata[i], &len);
                check_frame(line, len);
        }
        g_ptr_array_unref(whole);
        return 0;
}
