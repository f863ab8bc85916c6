/* SPDX-License-Identifier: Apache-2.0 */
#include <gio/gio.h>
#include <string.h>

#include "eb-multipart.h"

/* What the callbacks saw, as text that does not depend on how the data was cut into pieces:
 * "[name='a' filename=- type=-]data[end]\n" per part, data escaped. */
typedef struct {
        GString *log;
        gboolean in_part;
        guint begun;
        guint data_calls;
        guint64 data_bytes;
        GChecksum *sum;      /* when set, data goes here instead of into the log */
        guint fail_begin_at; /* part_begin of this part (from 1) returns FALSE */
        gboolean fail_data;  /* part_data returns FALSE */
        gboolean fail_quietly; /* ... without setting an error */
} Recorder;

static void recorder_init(Recorder *r) {
        *r = (Recorder) { .log = g_string_new(NULL) };
}

static void recorder_clear(Recorder *r) {
        g_string_free(r->log, TRUE);
        g_clear_pointer(&r->sum, g_checksum_free);
}

static void append_escaped(GString *out, const guint8 *buf, gsize len) {
        for (gsize i = 0; i < len; i++) {
                guint8 c = buf[i];
                if (c == '\\')
                        g_string_append(out, "\\\\");
                else if (c == '\r')
                        g_string_append(out, "\\r");
                else if (c == '\n')
                        g_string_append(out, "\\n");
                else if (c == 0)
                        g_string_append(out, "\\0");
                else if (c < 0x20 || c >= 0x7f)
                        g_string_append_printf(out, "\\x%02x", c);
                else
                        g_string_append_c(out, (char) c);
        }
}

static void append_field(GString *out, const char *key, const char *value) {
        g_string_append_printf(out, "%s=", key);
        if (!value) {
                g_string_append_c(out, '-');
                return;
        }
        g_string_append_c(out, '\'');
        append_escaped(out, (const guint8 *) value, strlen(value));
        g_string_append_c(out, '\'');
}

static gboolean on_begin(gpointer data, const char *name, const char *filename, const char *content_type,
                         GError **error) {
        Recorder *r = data;

        g_assert_false(r->in_part);
        r->in_part = TRUE;
        r->begun++;
        if (r->begun == r->fail_begin_at) {
                g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "begin refused");
                return FALSE;
        }
        g_string_append_c(r->log, '[');
        append_field(r->log, "name", name);
        g_string_append_c(r->log, ' ');
        append_field(r->log, "filename", filename);
        g_string_append_c(r->log, ' ');
        append_field(r->log, "type", content_type);
        g_string_append_c(r->log, ']');
        return TRUE;
}

static gboolean on_data(gpointer data, const guint8 *buf, gsize len, GError **error) {
        Recorder *r = data;

        g_assert_true(r->in_part);
        g_assert_cmpuint(len, >, 0);
        g_assert_nonnull(buf);
        if (r->fail_data) {
                if (!r->fail_quietly)
                        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "disk full");
                return FALSE;
        }
        r->data_calls++;
        r->data_bytes += len;
        if (r->sum)
                g_checksum_update(r->sum, buf, (gssize) len);
        else
                append_escaped(r->log, buf, len);
        return TRUE;
}

static gboolean on_end(gpointer data, GError **error) {
        Recorder *r = data;

        g_assert_true(r->in_part);
        r->in_part = FALSE;
        g_string_append(r->log, "[end]\n");
        return TRUE;
}

static const EbMultipartCallbacks callbacks = { on_begin, on_data, on_end };

/* Feed body cut at the ascending offsets cuts[0..ncuts), then finish. */
static gboolean run_cuts(Recorder *r, const char *boundary, const char *body, gsize len, const gsize *cuts,
                         guint ncuts, GError **error) {
        g_autoptr(EbMultipart) mp = eb_multipart_new(boundary, &callbacks, r);
        gsize at = 0;

        for (guint i = 0; i <= ncuts; i++) {
                gsize next = i < ncuts ? cuts[i] : len;

                if (!eb_multipart_feed(mp, (const guint8 *) body + at, next - at, error))
                        return FALSE;
                at = next;
        }
        return eb_multipart_finish(mp, error);
}

static gboolean run_steps(Recorder *r, const char *boundary, const char *body, gsize len, gsize step,
                          GError **error) {
        g_autoptr(EbMultipart) mp = eb_multipart_new(boundary, &callbacks, r);

        for (gsize at = 0; at < len; at += step) {
                if (!eb_multipart_feed(mp, (const guint8 *) body + at, MIN(step, len - at), error))
                        return FALSE;
        }
        return eb_multipart_finish(mp, error);
}

/* One run's result against the expectation: the log, and the error if one was expected (a
 * substring of its message). */
static void check_run(Recorder *r, gboolean ok, GError *error, const char *expected_log,
                      const char *error_part) {
        g_assert_cmpstr(r->log->str, ==, expected_log);
        if (!error_part) {
                g_assert_no_error(error);
                g_assert_true(ok);
                return;
        }
        g_assert_false(ok);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
        if (!strstr(error->message, error_part))
                g_test_message("error \"%s\" lacks \"%s\"", error->message, error_part);
        g_assert_nonnull(strstr(error->message, error_part));
}

/* Every way of feeding the body must give the same callbacks: in one piece, in pieces of every
 * size from one byte, cut at every point, and for small bodies cut at every two points. */
static void check_body_len(const char *boundary, const char *body, gsize len, const char *expected_log,
                           const char *error_part) {
        for (gsize step = 0; step <= len; step++) {
                Recorder r;
                g_autoptr(GError) error = NULL;
                gboolean ok;

                recorder_init(&r);
                ok = step == 0 ? run_cuts(&r, boundary, body, len, NULL, 0, &error)
                               : run_steps(&r, boundary, body, len, step, &error);
                check_run(&r, ok, error, expected_log, error_part);
                recorder_clear(&r);
        }
        for (gsize cut = 0; cut <= len; cut++) {
                Recorder r;
                g_autoptr(GError) error = NULL;
                gboolean ok;

                recorder_init(&r);
                ok = run_cuts(&r, boundary, body, len, &cut, 1, &error);
                check_run(&r, ok, error, expected_log, error_part);
                recorder_clear(&r);
        }
        if (len > 200)
                return;
        for (gsize a = 1; a < len; a++) {
                for (gsize b = a + 1; b < len; b++) {
                        Recorder r;
                        g_autoptr(GError) error = NULL;
                        gsize cuts[] = { a, b };
                        gboolean ok;

                        recorder_init(&r);
                        ok = run_cuts(&r, boundary, body, len, cuts, 2, &error);
                        check_run(&r, ok, error, expected_log, error_part);
                        recorder_clear(&r);
                }
        }
}

static void check_body(const char *boundary, const char *body, const char *expected_log,
                       const char *error_part) {
        check_body_len(boundary, body, strlen(body), expected_log, error_part);
}

static void test_metadata_and_file_pairs(void) {
        static const char body[] =
                "--XyZ\r\n"
                "Content-Disposition: form-data; name=\"meta\"\r\n"
                "Content-Type: application/json\r\n"
                "\r\n"
                "{\"path\":\"/tmp/a.bin\",\"mode\":420}\r\n"
                "--XyZ\r\n"
                "Content-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
                "Content-Type: application/octet-stream\r\n"
                "\r\n"
                "\x00\x01\x02\r\n\xff binary\r\n"
                "--XyZ\r\n"
                "content-disposition: form-data; name=meta\r\n"
                "\r\n"
                "{\"path\":\"/tmp/b.txt\"}\r\n"
                "--XyZ\r\n"
                "CONTENT-DISPOSITION: form-data; filename=\"b.txt\"; name=\"file\"\r\n"
                "X-Unknown: ignored\r\n"
                "\r\n"
                "line 1\nline 2\n\r\n"
                "--XyZ--\r\n";

        check_body_len("XyZ", body, sizeof(body) - 1,
                       "[name='meta' filename=- type='application/json']"
                       "{\"path\":\"/tmp/a.bin\",\"mode\":420}[end]\n"
                       "[name='file' filename='a.bin' type='application/octet-stream']"
                       "\\0\\x01\\x02\\r\\n\\xff binary[end]\n"
                       "[name='meta' filename=- type=-]{\"path\":\"/tmp/b.txt\"}[end]\n"
                       "[name='file' filename='b.txt' type=-]line 1\\nline 2\\n[end]\n",
                       NULL);
}

static void test_data_that_looks_like_a_delimiter(void) {
        static const char body[] =
                "--b0undary\r\n"
                "Content-Disposition: form-data; name=\"bin\"; filename=\"x\"\r\n"
                "\r\n"
                "\r\n--"                 /* too short */
                "\r\n--b0und"            /* a prefix, then other bytes */
                "\r\n--b0undaryX"        /* the boundary followed by a non-delimiter byte */
                "x--b0undary\r\n"        /* not at the start of a line */
                "\n--b0undary-x"         /* one dash is not the close */
                "\r\n--b0undary-"
                "\0\0\r\r\r\n"           /* NULs and carriage returns */
                "\n--b0undar"
                "\r\r\n--b0undary\r\n"   /* the data ends in "\r": only the last belongs */
                "\r\n"                   /* no headers */
                "--b0undaryZ"            /* the data starts like a delimiter */
                "\r\n--b0undary\r\n"
                "\r\n"
                "tail\n"
                "\r\n--b0undary--";

        check_body_len("b0undary", body, sizeof(body) - 1,
                       "[name='bin' filename='x' type=-]"
                       "\\r\\n--\\r\\n--b0und\\r\\n--b0undaryXx--b0undary\\r\\n"
                       "\\n--b0undary-x\\r\\n--b0undary-"
                       "\\0\\0\\r\\r\\r\\n\\n--b0undar\\r[end]\n"
                       "[name=- filename=- type=-]--b0undaryZ[end]\n"
                       "[name=- filename=- type=-]tail\\n[end]\n",
                       NULL);
}

static void test_lf_only(void) {
        check_body("b",
                   "--b\n"
                   "Content-Disposition: form-data; name=\"a\"\n"
                   "\n"
                   "value\n"
                   "--b\n"
                   "Content-Disposition: form-data; name=\"f\"; filename=\"f.txt\"\n"
                   "Content-Type: text/plain\n"
                   "\n"
                   "x\r\ny\n"
                   "\n"
                   "--b--\n",
                   "[name='a' filename=- type=-]value[end]\n"
                   "[name='f' filename='f.txt' type='text/plain']x\\r\\ny\\n[end]\n",
                   NULL);
}

static void test_preamble_and_epilogue(void) {
        check_body("bnd",
                   "This is the preamble --bnd\r\n"
                   "--bndX is not a delimiter\r\n"
                   "--bnd junk: neither (skipped, as in Go)\r\n"
                   "--bnd-\r\n"
                   "--bnd \t\r\n"
                   "Content-Disposition: form-data; name=\"only\"\r\n"
                   "\r\n"
                   "1\r\n"
                   "--bnd--   and the epilogue\r\n"
                   "--bnd\r\n"
                   "Content-Disposition: form-data; name=\"late\"\r\n"
                   "\r\n"
                   "not a part\r\n"
                   "--bnd--\r\n",
                   "[name='only' filename=- type=-]1[end]\n", NULL);

        /* The first delimiter at the very start, and spaces after a later one. */
        check_body("bnd", "--bnd\r\n\r\na\r\n--bnd \t \r\n\r\nb\r\n--bnd--",
                   "[name=- filename=- type=-]a[end]\n[name=- filename=- type=-]b[end]\n", NULL);

        /* A close in the preamble: a form with no fields. */
        check_body("bnd", "preamble\r\n--bnd--\r\n", "", NULL);
}

static void test_done_ignores_the_rest(void) {
        Recorder r;
        g_autoptr(EbMultipart) mp = NULL;
        g_autoptr(GError) error = NULL;
        static const char body[] = "--b\r\n\r\nx\r\n--b--";
        static const char after[] = "\r\n--b\r\n\r\nmore\r\n--b--\r\n";

        recorder_init(&r);
        mp = eb_multipart_new("b", &callbacks, &r);
        g_assert_true(eb_multipart_feed(mp, (const guint8 *) body, 10, &error));
        g_assert_false(eb_multipart_done(mp));
        g_assert_true(eb_multipart_feed(mp, (const guint8 *) body + 10, strlen(body) - 10, &error));
        g_assert_no_error(error);
        g_assert_true(eb_multipart_done(mp));
        g_assert_true(eb_multipart_feed(mp, (const guint8 *) after, strlen(after), &error));
        g_assert_true(eb_multipart_feed(mp, NULL, 0, &error));
        g_assert_true(eb_multipart_finish(mp, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(r.log->str, ==, "[name=- filename=- type=-]x[end]\n");
        recorder_clear(&r);
}

static void test_quoted_parameters(void) {
        check_body("b",
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"say \\\"hi\\\"\"; filename=\"C:\\dir\\a.txt\"\r\n"
                   "\r\n"
                   "1\r\n"
                   "--b\r\n"
                   "Content-Disposition: Form-Data ; NAME = \"semi;colon\" ;filename=\"a\\\\b\"; x=y;\r\n"
                   "\r\n"
                   "2\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data;\r\n"
                   "\tname=\"folded\";\r\n"
                   "   filename=\"\"\r\n"
                   "\r\n"
                   "3\r\n"
                   "--b\r\n"
                   "Content-Disposition: attachment; name=\"ignored\"; filename=\"att.txt\"\r\n"
                   "\r\n"
                   "4\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"unterminated\r\n"
                   "\r\n"
                   "5\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"one\"; name=\"two\"\r\n"
                   "\r\n"
                   "6\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"same\"; name=same\r\n"
                   "Content-Disposition: form-data; name=\"second\"\r\n"
                   "Content-Type: text/plain;\r\n"
                   "  charset=utf-8\r\n"
                   "\r\n"
                   "7\r\n"
                   "--b--\r\n",
                   "[name='say \"hi\"' filename='C:\\\\dir\\\\a.txt' type=-]1[end]\n"
                   "[name='semi;colon' filename='a\\\\b' type=-]2[end]\n"
                   "[name='folded' filename='' type=-]3[end]\n"
                   "[name=- filename='att.txt' type=-]4[end]\n"
                   "[name=- filename=- type=-]5[end]\n"
                   "[name=- filename=- type=-]6[end]\n"
                   "[name='same' filename=- type='text/plain; charset=utf-8']7[end]\n",
                   NULL);
}

static void test_extended_filename(void) {
        check_body("b",
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"f\"; filename=\"fallback.txt\"; "
                   "filename*=UTF-8''na%C3%AFve%20r%c3%a9sum%C3%A9.txt\r\n"
                   "\r\n"
                   "1\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"f\"; filename*=iso-8859-1''caf%E9.txt; "
                   "filename=\"cafe.txt\"\r\n"
                   "\r\n"
                   "2\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data; name*=utf-8'en'%41; filename*=UTF-8''bad%zz; "
                   "filename=ok\r\n"
                   "\r\n"
                   "3\r\n"
                   "--b\r\n"
                   "Content-Disposition: form-data; name=x; filename*=\"us-ascii''quoted%2Etxt\"\r\n"
                   "\r\n"
                   "4\r\n"
                   "--b--\r\n",
                   "[name='f' filename='na\\xc3\\xafve r\\xc3\\xa9sum\\xc3\\xa9.txt' type=-]1[end]\n"
                   "[name='f' filename='cafe.txt' type=-]2[end]\n"
                   "[name='A' filename='ok' type=-]3[end]\n"
                   "[name='x' filename='quoted.txt' type=-]4[end]\n",
                   NULL);

        /* A name cut short at a NUL would be a different name. */
        check_body("b",
                   "--b\r\n"
                   "Content-Disposition: form-data; name=f; filename*=UTF-8''a%00b\r\n"
                   "\r\n"
                   "1\r\n"
                   "--b--\r\n",
                   "", "NUL");
}

static void test_empty_and_headerless_parts(void) {
        check_body("b",
                   "--b\r\n"
                   "Content-Disposition: form-data; name=\"empty\"\r\n"
                   "\r\n"
                   "\r\n"
                   "--b\r\n"
                   "\r\n"
                   "no headers\r\n"
                   "--b\r\n"
                   "\r\n"
                   "\r\n"
                   "--b\n"
                   "Content-Disposition: form-data; name=\"empty too\"\n"
                   "\n"
                   "--b\r\n"
                   "\r\n"
                   "--b--",
                   "[name='empty' filename=- type=-][end]\n"
                   "[name=- filename=- type=-]no headers[end]\n"
                   "[name=- filename=- type=-][end]\n"
                   "[name='empty too' filename=- type=-][end]\n"
                   "[name=- filename=- type=-][end]\n",
                   NULL);
}

static void test_unfinished_bodies(void) {
        /* No closing delimiter after a complete part. */
        check_body("b", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue\r\n--b\r\n",
                   "[name='a' filename=- type=-]value[end]\n", "closing");
        /* Cut inside the data, inside headers, inside the delimiter. */
        check_body("b", "--b\r\n\r\nvalue", "[name=- filename=- type=-]value", "closing");
        check_body("b", "--b\r\nContent-Disposition: form-data", "", "headers");
        check_body("b", "--b\r\n\r\nv\r\n--b-", "[name=- filename=- type=-]v", "closing");
        check_body("b", "--b\r\n\r\nv\r\n--b", "[name=- filename=- type=-]v", "closing");
        /* Garbage: no delimiter at all. */
        check_body("b", "hello, this is not multipart\r\n--other\r\n-- b\r\n", "", "no boundary");
        check_body("b", "", "", "no boundary");
}

static void test_malformed(void) {
        static const char nul[] = "--b\r\nX: a\0b\r\n\r\nx\r\n--b--";

        check_body("b", "--b\r\nNo colon here\r\n\r\nx\r\n--b--", "", "header");
        check_body("b", "--b\r\nBad Name: x\r\n\r\nx\r\n--b--", "", "header");
        check_body("b", "--b\r\n: no name\r\n\r\nx\r\n--b--", "", "header");
        check_body("b", "--b\r\n continued: first\r\n\r\nx\r\n--b--", "", "header");
        check_body("b", "--b\r\nX: bare\rcarriage return\r\n\r\nx\r\n--b--", "", "header");
        check_body_len("b", nul, sizeof(nul) - 1, "", "header");
        check_body("b", "--b\r\n\r\nx\r\n--b junk\r\n\r\ny\r\n--b--",
                   "[name=- filename=- type=-]x[end]\n", "Unexpected");
        check_body("b", "--b\r\n\r\nx\r\n--b\rjunk\r\n\r\ny\r\n--b--",
                   "[name=- filename=- type=-]x[end]\n", "Unexpected");
}

static char *header_body(gsize header_bytes) {
        /* "X-Pad: " + pad + "\r\n" + "\r\n" is header_bytes long. */
        gsize pad = header_bytes - 7 - 2 - 2;
        g_autofree char *padding = g_strnfill(pad, 'p');

        return g_strdup_printf("--b\r\nX-Pad: %s\r\n\r\ndata\r\n--b--\r\n", padding);
}

static void test_header_cap(void) {
        g_autofree char *fits = header_body(EB_MULTIPART_HEADER_MAX);
        g_autofree char *over = header_body(EB_MULTIPART_HEADER_MAX + 1);
        gsize steps[] = { 1, 7, 8192, 100000 };

        for (guint i = 0; i < G_N_ELEMENTS(steps); i++) {
                Recorder r;
                g_autoptr(GError) error = NULL;
                gboolean ok;

                recorder_init(&r);
                ok = run_steps(&r, "b", fits, strlen(fits), steps[i], &error);
                check_run(&r, ok, error, "[name=- filename=- type=-]data[end]\n", NULL);
                recorder_clear(&r);

                recorder_init(&r);
                ok = run_steps(&r, "b", over, strlen(over), steps[i], &error);
                check_run(&r, ok, error, "", "16384 bytes of headers");
                recorder_clear(&r);
        }

        /* A header line that never ends is stopped at the cap too, not buffered on. */
        {
                Recorder r;
                g_autoptr(EbMultipart) mp = NULL;
                g_autoptr(GError) error = NULL;
                g_autofree char *endless = g_strnfill(1024, 'h');
                gboolean ok = TRUE;
                guint feeds = 0;

                recorder_init(&r);
                mp = eb_multipart_new("b", &callbacks, &r);
                g_assert_true(eb_multipart_feed(mp, (const guint8 *) "--b\r\nX: ", 8, &error));
                while (ok && feeds < 100) {
                        ok = eb_multipart_feed(mp, (const guint8 *) endless, 1024, &error);
                        feeds++;
                }
                g_assert_false(ok);
                g_assert_cmpuint(feeds, ==, 16);
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
                recorder_clear(&r);
        }
}

static GString *many_parts(guint n) {
        GString *body = g_string_new(NULL);

        for (guint i = 0; i < n; i++)
                g_string_append(body, "--b\r\n\r\nx\r\n");
        g_string_append(body, "--b--\r\n");
        return body;
}

static void test_part_limit(void) {
        g_autoptr(GString) limit = many_parts(EB_MULTIPART_PARTS_MAX);
        g_autoptr(GString) over = many_parts(EB_MULTIPART_PARTS_MAX + 1);
        g_autoptr(GError) error = NULL;
        Recorder r;

        recorder_init(&r);
        g_assert_true(run_steps(&r, "b", limit->str, limit->len, 8192, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(r.begun, ==, EB_MULTIPART_PARTS_MAX);
        recorder_clear(&r);

        recorder_init(&r);
        g_assert_false(run_steps(&r, "b", over->str, over->len, 8192, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
        g_assert_nonnull(strstr(error->message, "10000 parts"));
        g_assert_cmpuint(r.begun, ==, EB_MULTIPART_PARTS_MAX);
        g_assert_false(r.in_part);
        recorder_clear(&r);
}

static void test_callback_stops_parsing(void) {
        static const char body[] =
                "--b\r\nContent-Disposition: form-data; name=\"one\"\r\n\r\n1\r\n"
                "--b\r\nContent-Disposition: form-data; name=\"two\"\r\n\r\n2\r\n"
                "--b--\r\n";
        gsize half = sizeof(body) / 2;

        /* part_begin refuses the second part: its error comes back, now and on every later call,
         * and no callback runs after it. */
        {
                Recorder r;
                g_autoptr(EbMultipart) mp = NULL;
                g_autoptr(GError) error = NULL;
                g_autoptr(GError) again = NULL;
                g_autoptr(GError) at_finish = NULL;

                recorder_init(&r);
                r.fail_begin_at = 2;
                mp = eb_multipart_new("b", &callbacks, &r);
                g_assert_false(eb_multipart_feed(mp, (const guint8 *) body, sizeof(body) - 1, &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
                g_assert_cmpstr(error->message, ==, "begin refused");
                g_assert_cmpstr(r.log->str, ==, "[name='one' filename=- type=-]1[end]\n");
                g_assert_cmpuint(r.begun, ==, 2);

                g_assert_false(eb_multipart_feed(mp, (const guint8 *) body, sizeof(body) - 1, &again));
                g_assert_error(again, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
                g_assert_false(eb_multipart_finish(mp, &at_finish));
                g_assert_error(at_finish, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
                g_assert_false(eb_multipart_done(mp));
                g_assert_cmpuint(r.begun, ==, 2);
                recorder_clear(&r);
        }

        /* part_data fails, fed in two halves. */
        {
                Recorder r;
                g_autoptr(EbMultipart) mp = NULL;
                g_autoptr(GError) error = NULL;

                recorder_init(&r);
                r.fail_data = TRUE;
                mp = eb_multipart_new("b", &callbacks, &r);
                g_assert_false(eb_multipart_feed(mp, (const guint8 *) body, half, &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
                g_clear_error(&error);
                g_assert_false(eb_multipart_feed(mp, (const guint8 *) body + half, sizeof(body) - 1 - half,
                                                 &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
                g_assert_cmpuint(r.begun, ==, 1);
                g_assert_cmpuint(r.data_calls, ==, 0);
                recorder_clear(&r);
        }

        /* A callback that says nothing still stops parsing, with an error of ours. */
        {
                Recorder r;
                g_autoptr(EbMultipart) mp = NULL;
                g_autoptr(GError) error = NULL;

                recorder_init(&r);
                r.fail_data = TRUE;
                r.fail_quietly = TRUE;
                mp = eb_multipart_new("b", &callbacks, &r);
                g_assert_false(eb_multipart_feed(mp, (const guint8 *) body, sizeof(body) - 1, &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_FAILED);
                recorder_clear(&r);
        }
}

static void test_holds_back_only_a_possible_delimiter(void) {
        Recorder r;
        g_autoptr(EbMultipart) mp = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree guint8 *big = g_malloc(1024 * 1024);

#define FEED(s) g_assert_true(eb_multipart_feed(mp, (const guint8 *) (s), strlen(s), &error))
        recorder_init(&r);
        mp = eb_multipart_new("boundary", &callbacks, &r);
        FEED("--boundary\r\n\r\n");
        for (guint i = 0; i < 1000; i++) {
                FEED("a");
                g_assert_cmpuint(r.data_bytes, ==, i + 1);
        }
        FEED("\r");
        g_assert_cmpuint(r.data_bytes, ==, 1000);
        FEED("\n--bound");
        g_assert_cmpuint(r.data_bytes, ==, 1000);
        FEED("x");
        g_assert_cmpuint(r.data_bytes, ==, 1000 + 10);
        FEED("y\r\n--boundary");
        g_assert_cmpuint(r.data_bytes, ==, 1000 + 11);
        FEED("-");
        g_assert_cmpuint(r.data_bytes, ==, 1000 + 11);
        FEED("!");
        g_assert_cmpuint(r.data_bytes, ==, 1000 + 11 + 14);

        /* A large feed is passed on in one piece, not line by line. */
        memset(big, '\n', 1024 * 1024);
        r.data_calls = 0;
        g_assert_true(eb_multipart_feed(mp, big, 1024 * 1024, &error));
        g_assert_cmpuint(r.data_calls, ==, 1);
        g_assert_cmpuint(r.data_bytes, ==, 1000 + 11 + 14 + 1024 * 1024 - 1);
        FEED("--boundary--");
        g_assert_no_error(error);
        g_assert_true(eb_multipart_done(mp));
        g_assert_cmpuint(r.data_bytes, ==, 1000 + 11 + 14 + 1024 * 1024 - 1);
#undef FEED
        recorder_clear(&r);
}

static void test_large_part(void) {
        const gsize size = 64 * 1024 * 1024;
        static const char boundary[] = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
        g_autofree char *head = g_strdup_printf("--%s\r\nContent-Disposition: form-data; name=\"file\"; "
                                                "filename=\"big.bin\"\r\n\r\n", boundary);
        g_autofree char *tail = g_strdup_printf("\r\n--%s--\r\n", boundary);
        g_autofree guint8 *body = g_malloc(strlen(head) + size + strlen(tail));
        guint8 *data = body + strlen(head);
        g_autoptr(GChecksum) expected = g_checksum_new(G_CHECKSUM_SHA256);
        g_autoptr(EbMultipart) mp = NULL;
        g_autoptr(GError) error = NULL;
        gsize len = strlen(head) + size + strlen(tail);
        guint64 x = 0x9e3779b97f4a7c15;
        Recorder r;

        memcpy(body, head, strlen(head));
        for (gsize i = 0; i < size; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(data + i, &x, 8);
        }
        /* Near-delimiters across feed boundaries now and then. */
        for (gsize at = 8190; at + 64 < size; at += 1024 * 1024 + 3) {
                memcpy(data + at, "\r\n--", 4);
                memcpy(data + at + 4, boundary, strlen(boundary) - 1);
                data[at + 4 + strlen(boundary) - 1] = 'X'; /* not the boundary's last character */
        }
        memcpy(data + size, tail, strlen(tail));
        g_checksum_update(expected, data, (gssize) size);

        recorder_init(&r);
        r.sum = g_checksum_new(G_CHECKSUM_SHA256);
        mp = eb_multipart_new(boundary, &callbacks, &r);
        for (gsize at = 0; at < len; at += 8192)
                g_assert_true(eb_multipart_feed(mp, body + at, MIN(8192, len - at), &error));
        g_assert_true(eb_multipart_finish(mp, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(r.data_bytes, ==, size);
        g_assert_cmpstr(g_checksum_get_string(r.sum), ==, g_checksum_get_string(expected));
        g_assert_cmpstr(r.log->str, ==, "[name='file' filename='big.bin' type=-][end]\n");
        recorder_clear(&r);
}

static void test_boundary_from_content_type(void) {
        g_autofree char *b70 = g_strnfill(70, 'a');
        g_autofree char *b71 = g_strnfill(71, 'a');
        g_autofree char *ct70 = g_strdup_printf("multipart/form-data; boundary=%s", b70);
        g_autofree char *ct71 = g_strdup_printf("multipart/form-data; boundary=\"%s\"", b71);
        struct {
                const char *content_type;
                const char *boundary;
        } cases[] = {
                { "multipart/form-data; boundary=abc", "abc" },
                { "multipart/form-data; boundary=\"a b:c/d\"", "a b:c/d" },
                { "multipart/form-data; boundary=\"a\\\"b\"", "a\"b" },
                { "multipart/form-data; charset=utf-8; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
                  "----WebKitFormBoundary7MA4YWxkTrZu0gW" },
                { "MULTIPART/Form-Data; BOUNDARY=XyZ", "XyZ" },
                { "  multipart/form-data ;boundary = abc ; ", "abc" },
                { "multipart/form-data; boundary=a; boundary=a", "a" },
                { ct70, b70 },
                { ct71, NULL },
                { "multipart/mixed; boundary=abc", NULL },
                { "application/json", NULL },
                { "application/x-www-form-urlencoded; boundary=abc", NULL },
                { "multipart/form-data", NULL },
                { "multipart/form-data; charset=utf-8", NULL },
                { "multipart/form-data; boundary=", NULL },
                { "multipart/form-data; boundary=\"\"", NULL },
                { "multipart/form-data; boundary=\"abc", NULL },
                { "multipart/form-data; boundary=a; boundary=b", NULL },
                { "multipart/form-data;; boundary=abc", NULL },
                { "multipart/form-data boundary=abc", NULL },
                { "multipart/form-data; boundary=\"a\tb\"", NULL },
                { "", NULL },
        };

        for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *b = eb_multipart_boundary(cases[i].content_type);
                g_assert_cmpstr(b, ==, cases[i].boundary);
        }
        g_assert_null(eb_multipart_boundary(NULL));
}

int main(int argc, char **argv) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/multipart/metadata-and-file-pairs", test_metadata_and_file_pairs);
        g_test_add_func("/multipart/data-that-looks-like-a-delimiter", test_data_that_looks_like_a_delimiter);
        g_test_add_func("/multipart/lf-only", test_lf_only);
        g_test_add_func("/multipart/preamble-and-epilogue", test_preamble_and_epilogue);
        g_test_add_func("/multipart/done-ignores-the-rest", test_done_ignores_the_rest);
        g_test_add_func("/multipart/quoted-parameters", test_quoted_parameters);
        g_test_add_func("/multipart/extended-filename", test_extended_filename);
        g_test_add_func("/multipart/empty-and-headerless-parts", test_empty_and_headerless_parts);
        g_test_add_func("/multipart/unfinished-bodies", test_unfinished_bodies);
        g_test_add_func("/multipart/malformed", test_malformed);
        g_test_add_func("/multipart/header-cap", test_header_cap);
        g_test_add_func("/multipart/part-limit", test_part_limit);
        g_test_add_func("/multipart/callback-stops-parsing", test_callback_stops_parsing);
        g_test_add_func("/multipart/holds-back-only-a-possible-delimiter",
                        test_holds_back_only_a_possible_delimiter);
        g_test_add_func("/multipart/large-part", test_large_part);
        g_test_add_func("/multipart/boundary-from-content-type", test_boundary_from_content_type);
        return g_test_run();
}
