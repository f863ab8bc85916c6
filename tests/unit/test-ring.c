/* SPDX-License-Identifier: Apache-2.0 */
#include <glib.h>
#include <string.h>

#include "ring.h"

static void test_append_and_lookup(void) {
        Ring r;
        uint64_t seq;

        ring_init(&r, 1 << 20);
        g_assert_cmpint(ring_append(&r, 0, "hello", 5, &seq), ==, 0);
        g_assert_cmpuint(seq, ==, 0);
        g_assert_cmpint(ring_append(&r, 1, "world!", 6, &seq), ==, 0);
        g_assert_cmpuint(seq, ==, 1);
        g_assert_cmpuint(r.total_bytes, ==, 11);
        g_assert_false(r.truncated);

        g_assert_cmpuint(ring_index_by_seq(&r, 0), ==, 0);
        g_assert_cmpuint(ring_index_by_seq(&r, 1), ==, 1);
        g_assert_cmpuint(ring_index_by_seq(&r, 2), ==, 2); /* past the end */
        g_assert_cmpuint(ring_at(&r, 1)->stream, ==, 1);
        g_assert_cmpmem(ring_at(&r, 1)->data, 6, "world!", 6);

        g_assert_cmpuint(ring_index_by_offset(&r, 0), ==, 0);
        g_assert_cmpuint(ring_index_by_offset(&r, 4), ==, 0);
        g_assert_cmpuint(ring_index_by_offset(&r, 5), ==, 1);
        g_assert_cmpuint(ring_index_by_offset(&r, 10), ==, 1);
        g_assert_cmpuint(ring_index_by_offset(&r, 11), ==, 2);

        g_assert_cmpuint(ring_end_offset_of_seq(&r, 0), ==, 5);
        g_assert_cmpuint(ring_end_offset_of_seq(&r, 1), ==, 11);
        g_assert_cmpuint(ring_end_offset_of_seq(&r, 7), ==, 11);
        g_assert_cmpint(ring_append(&r, 0, "", 0, NULL), ==, -EINVAL);
        ring_clear(&r);
}

static void test_cap_drops_oldest(void) {
        char buf[1000];
        Ring r;

        memset(buf, 'x', sizeof buf);
        ring_init(&r, 10 * RING_CHUNK_COST(sizeof buf));
        for (int i = 0; i < 100; i++) {
                buf[0] = (char) i;
                g_assert_cmpint(ring_append(&r, 0, buf, sizeof buf, NULL), ==, 0);
                g_assert_cmpuint(r.used, <=, r.max);
        }
        g_assert_true(r.truncated);
        g_assert_cmpuint(r.count, ==, 10);
        g_assert_cmpuint(ring_at(&r, 0)->seq, ==, 90);
        g_assert_cmpint(ring_at(&r, 0)->data[0], ==, 90);
        g_assert_cmpuint(ring_first_offset(&r), ==, 90 * sizeof buf);
        g_assert_cmpuint(r.total_bytes, ==, 100 * sizeof buf);
        /* Older than anything retained: start at the oldest. */
        g_assert_cmpuint(ring_index_by_seq(&r, 3), ==, 0);
        g_assert_cmpuint(ring_index_by_offset(&r, 5), ==, 0);
        g_assert_cmpuint(ring_end_offset_of_seq(&r, 3), ==, 0);
        ring_clear(&r);
}

static void test_tiny_chunks_bounded(void) {
        Ring r;

        /* Headers are charged too, so a flood of one-byte chunks stays within the cap. */
        ring_init(&r, 64 * 1024);
        for (int i = 0; i < 200000; i++)
                g_assert_cmpint(ring_append(&r, 0, "y", 1, NULL), ==, 0);
        g_assert_cmpuint(r.used, <=, r.max);
        g_assert_cmpuint(r.count, <, 64 * 1024 / sizeof(RingChunk));
        g_assert_cmpuint(ring_at(&r, r.count - 1)->seq, ==, 199999);
        ring_clear(&r);
}

static void test_oversized_chunk_kept(void) {
        static char big[100000];
        Ring r;

        ring_init(&r, 1000);
        g_assert_cmpint(ring_append(&r, 0, "a", 1, NULL), ==, 0);
        g_assert_cmpint(ring_append(&r, 0, big, sizeof big, NULL), ==, 0);
        g_assert_cmpuint(r.count, ==, 1);
        g_assert_cmpuint(ring_at(&r, 0)->size, ==, sizeof big);
        ring_clear(&r);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/ring/append-and-lookup", test_append_and_lookup);
        g_test_add_func("/ring/cap-drops-oldest", test_cap_drops_oldest);
        g_test_add_func("/ring/tiny-chunks-bounded", test_tiny_chunks_bounded);
        g_test_add_func("/ring/oversized-chunk-kept", test_oversized_chunk_kept);
        return g_test_run();
}
