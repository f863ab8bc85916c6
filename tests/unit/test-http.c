/* SPDX-License-Identifier: Apache-2.0 */
#include <glib.h>

#include "eb-http.h"

typedef struct {
        const char *header;
        guint64 size;
        EbRangeResult result;
        guint64 start, end;
} RangeCase;

static void test_range(void) {
        static const RangeCase cases[] = {
                { NULL, 10, EB_RANGE_NONE, 0, 0 },
                { "bytes=", 10, EB_RANGE_NONE, 0, 0 },
                { "bytes= , ,", 10, EB_RANGE_NONE, 0, 0 },
                { "bytes=0-9", 100, EB_RANGE_OK, 0, 9 },
                { "bytes=0-0", 100, EB_RANGE_OK, 0, 0 },
                { "bytes=5-", 10, EB_RANGE_OK, 5, 9 },
                { "bytes=-3", 10, EB_RANGE_OK, 7, 9 },
                { "bytes=-999", 10, EB_RANGE_OK, 0, 9 },
                { "bytes=3-999", 10, EB_RANGE_OK, 3, 9 },
                { "bytes= 2 - 4 ", 10, EB_RANGE_OK, 2, 4 },
                /* Only the first satisfiable spec is served. */
                { "bytes=0-1, 4-5", 10, EB_RANGE_OK, 0, 1 },
                { "bytes=50-60,2-3", 10, EB_RANGE_OK, 2, 3 },
                { "bytes=99-", 10, EB_RANGE_UNSATISFIABLE, 0, 0 },
                { "bytes=10-20", 10, EB_RANGE_UNSATISFIABLE, 0, 0 },
                { "bytes=-0", 10, EB_RANGE_UNSATISFIABLE, 0, 0 },
                { "bytes=0-", 0, EB_RANGE_UNSATISFIABLE, 0, 0 },
                { "bytes=-5", 0, EB_RANGE_UNSATISFIABLE, 0, 0 },
                { "items=0-1", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "Bytes=0-1", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=abc", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=5", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=5-2", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=-", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=+1-2", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=1-x", 10, EB_RANGE_MALFORMED, 0, 0 },
                { "bytes=99999999999999999999-", 10, EB_RANGE_MALFORMED, 0, 0 },
                /* A malformed spec anywhere spoils the header. */
                { "bytes=0-1,x", 10, EB_RANGE_MALFORMED, 0, 0 },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                guint64 start = 0, end = 0;
                EbRangeResult r = eb_range_parse(cases[i].header, cases[i].size, &start, &end);

                g_test_message("%s on %" G_GUINT64_FORMAT " bytes", cases[i].header, cases[i].size);
                g_assert_cmpint(r, ==, cases[i].result);
                if (r == EB_RANGE_OK) {
                        g_assert_cmpuint(start, ==, cases[i].start);
                        g_assert_cmpuint(end, ==, cases[i].end);
                }
        }
}

static void test_disposition(void) {
        static const char *const cases[][2] = {
                { "a.txt", "attachment; filename=\"a.txt\"" },
                { "a b.txt", "attachment; filename=\"a b.txt\"" },
                { "测试文件.txt", "attachment; filename=\"%E6%B5%8B%E8%AF%95%E6%96%87%E4%BB%B6.txt\"; "
                                  "filename*=UTF-8''%E6%B5%8B%E8%AF%95%E6%96%87%E4%BB%B6.txt" },
                { "é q.txt", "attachment; filename=\"%C3%A9%20q.txt\"; filename*=UTF-8''%C3%A9%20q.txt" },
                { "say\"hi\".txt", "attachment; filename=\"say%22hi%22.txt\"; filename*=UTF-8''say%22hi%22.txt" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *got = eb_content_disposition(cases[i][0]);
                g_assert_cmpstr(got, ==, cases[i][1]);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/http/range", test_range);
        g_test_add_func("/http/content-disposition", test_disposition);
        return g_test_run();
}
