/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "eb-lines.h"

static void collect(const char *line, gsize len, gpointer user_data) {
        g_ptr_array_add(user_data, g_strndup(line, len));
}

/* Feed the input in pieces of `step` bytes and return the lines. */
static GPtrArray *split(const char *input, gsize len, gsize step) {
        GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
        EbLineSplitter s;

        eb_lines_init(&s);
        for (gsize i = 0; i < len; i += step)
                eb_lines_feed(&s, input + i, MIN(step, len - i), collect, lines);
        eb_lines_flush(&s, collect, lines);
        eb_lines_clear(&s);
        return lines;
}

static void assert_lines(const char *input, const char *const *expected) {
        gsize n = g_strv_length((char **) expected);

        /* Every split point must give the same answer, \r\n across chunks included. */
        for (gsize step = 1; step <= strlen(input) + 1; step++) {
                g_autoptr(GPtrArray) lines = split(input, strlen(input), step);
                g_assert_cmpuint(lines->len, ==, n);
                for (gsize i = 0; i < n; i++)
                        g_assert_cmpstr(lines->pdata[i], ==, expected[i]);
        }
}

static void test_reference_examples(void) {
        assert_lines("a\n\nb\n\n\nc\n", (const char *const[]) { "a", "\n", "b", "\n", "\n", "c", NULL });
        assert_lines("line1\nprog 10%\rprog 20%\rprog 30%\nlast\n",
                     (const char *const[]) { "line1", "prog 10%", "prog 20%", "prog 30%", "last", NULL });
        assert_lines("x\r\ny\r\n", (const char *const[]) { "x", "y", NULL });
        assert_lines("a\r\r\nb", (const char *const[]) { "a", "\n", "b", NULL });
        assert_lines("tail without newline", (const char *const[]) { "tail without newline", NULL });
        assert_lines("", (const char *const[]) { NULL });
        assert_lines("\n", (const char *const[]) { "\n", NULL });
}

static void test_long_line_in_pieces(void) {
        gsize len = EB_LINE_MAX * 2 + 10;
        g_autofree char *input = g_malloc(len + 1);
        g_autoptr(GPtrArray) lines = NULL;

        memset(input, 'z', len);
        input[len - 1] = '\n';
        input[len] = 0;
        lines = split(input, len, 65536);
        g_assert_cmpuint(lines->len, ==, 3);
        g_assert_cmpuint(strlen(lines->pdata[0]), ==, EB_LINE_MAX);
        g_assert_cmpuint(strlen(lines->pdata[1]), ==, EB_LINE_MAX);
        g_assert_cmpuint(strlen(lines->pdata[2]), ==, 9);
}

static void test_exact_max_line_has_no_extra_event(void) {
        g_autofree char *input = g_malloc(EB_LINE_MAX + 2);
        g_autoptr(GPtrArray) lines = NULL;

        memset(input, 'q', EB_LINE_MAX);
        input[EB_LINE_MAX] = '\n';
        input[EB_LINE_MAX + 1] = 0;
        lines = split(input, EB_LINE_MAX + 1, 4096);
        g_assert_cmpuint(lines->len, ==, 1);
        g_assert_cmpuint(strlen(lines->pdata[0]), ==, EB_LINE_MAX);
}

static void test_pieces_cut_at_utf8_boundary(void) {
        /* A 3-byte character straddles the cut point; no piece may split it. */
        gsize len = EB_LINE_MAX + 4;
        g_autofree char *input = g_malloc(len + 1);
        g_autoptr(GPtrArray) lines = NULL;

        memset(input, 'a', len);
        memcpy(input + EB_LINE_MAX - 1, "\xe2\x82\xac", 3);
        input[len] = 0;
        lines = split(input, len, 100000);
        g_assert_cmpuint(lines->len, ==, 2);
        for (guint i = 0; i < lines->len; i++)
                g_assert_true(g_utf8_validate(lines->pdata[i], -1, NULL));
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/lines/reference-examples", test_reference_examples);
        g_test_add_func("/lines/long-line-in-pieces", test_long_line_in_pieces);
        g_test_add_func("/lines/exact-max-line", test_exact_max_line_has_no_extra_event);
        g_test_add_func("/lines/utf8-boundary", test_pieces_cut_at_utf8_boundary);
        return g_test_run();
}
