/* SPDX-License-Identifier: Apache-2.0 */
/* The bridge's JSON writer, SSE frames and the D-Bus error table. */
#include <json-glib/json-glib.h>
#include <string.h>

#include "eb-errors.h"
#include "eb-json.h"
#include "eb-sse.h"

static char *escaped(const char *s, gsize len) {
        GString *out = g_string_new(NULL);
        eb_json_append_escaped(out, s, len);
        return g_string_free(out, FALSE);
}

/* Whatever goes in, a standard parser must read back valid UTF-8. */
static char *round_trip(const char *json) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(GError) error = NULL;
        g_autofree char *doc = g_strdup_printf("[%s]", json);

        g_assert_true(json_parser_load_from_data(p, doc, -1, &error));
        g_assert_no_error(error);
        return g_strdup(json_array_get_string_element(json_node_get_array(json_parser_get_root(p)), 0));
}

static void test_escaping(void) {
        struct {
                const char *in;
                gsize len;
                const char *out;
        } cases[] = {
                { "plain", 5, "\"plain\"" },
                { "q\"b\\", 4, "\"q\\\"b\\\\\"" },
                { "a\nb\rc\td", 7, "\"a\\nb\\rc\\td\"" },
                { "nul\0x", 5, "\"nul\\u0000x\"" },
                { "\x01\x1f", 2, "\"\\u0001\\u001f\"" },
                { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"" },
                { "\xff\xfe", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },                 /* invalid bytes */
                { "\xc3", 1, "\"\xef\xbf\xbd\"" },                                 /* truncated sequence */
                { "\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },                 /* overlong */
                { "\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" }, /* surrogate */
                { "\xf4\x90\x80\x80", 4, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" }, /* > U+10FFFF */
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *e = escaped(cases[i].in, cases[i].len);
                g_autofree char *back = NULL;
                g_assert_cmpstr(e, ==, cases[i].out);
                back = round_trip(e);
                g_assert_true(g_utf8_validate(back, -1, NULL));
        }
}

static void test_random_bytes_always_valid(void) {
        GRand *rand = g_rand_new_with_seed(42);

        for (int n = 0; n < 2000; n++) {
                guint8 buf[64];
                g_autofree char *e = NULL, *back = NULL;
                for (gsize i = 0; i < sizeof buf; i++)
                        buf[i] = (guint8) g_rand_int_range(rand, 0, 256);
                e = escaped((const char *) buf, sizeof buf);
                back = round_trip(e);
                g_assert_true(g_utf8_validate(back, -1, NULL));
        }
        g_rand_free(rand);
}

static void test_writer_nesting(void) {
        GString *out = g_string_new(NULL);
        EbJson j;

        eb_json_init(&j, out);
        eb_json_begin_object(&j);
        eb_json_key(&j, "a");
        eb_json_int(&j, -5);
        eb_json_key(&j, "b");
        eb_json_begin_array(&j);
        eb_json_string(&j, "x");
        eb_json_bool(&j, TRUE);
        eb_json_null(&j);
        eb_json_begin_object(&j);
        eb_json_end_object(&j);
        eb_json_end_array(&j);
        eb_json_key(&j, "c");
        eb_json_bool(&j, FALSE);
        eb_json_end_object(&j);
        g_assert_cmpstr(out->str, ==, "{\"a\":-5,\"b\":[\"x\",true,null,{}],\"c\":false}");
        g_string_free(out, TRUE);
}

static void test_sse_frame(void) {
        GString *out = g_string_new(NULL);
        EbJson j;

        eb_sse_frame_begin(out, &j, "stdout");
        eb_json_key(&j, "text");
        eb_json_string_len(&j, "a\nb", 3);
        eb_sse_frame_end(&j, 1767600000123);
        eb_sse_frame_begin(out, &j, "error");
        eb_json_key(&j, "error");
        eb_json_begin_object(&j);
        eb_json_key(&j, "ename");
        eb_json_string(&j, "CommandExecError");
        eb_json_end_object(&j);
        eb_sse_frame_end(&j, 5);
        g_assert_cmpstr(out->str, ==,
                        "data: {\"type\":\"stdout\",\"text\":\"a\\nb\",\"timestamp\":1767600000123}\n\n"
                        "data: {\"type\":\"error\",\"error\":{\"ename\":\"CommandExecError\"},\"timestamp\":5}\n\n");
        g_string_free(out, TRUE);
}

static void test_error_table(void) {
        struct {
                const char *name;
                guint execd, env;
                const char *code;
        } cases[] = {
                { "org.freedesktop.DBus.Error.InvalidArgs", 400, 400, "INVALID_REQUEST_BODY" },
                { "org.execd.Execd1.Error.InvalidArgument", 400, 400, "INVALID_REQUEST_BODY" },
                { "org.freedesktop.DBus.Error.AccessDenied", 403, 403, "FORBIDDEN" },
                { "org.execd.Execd1.Error.NotOwner", 403, 403, "FORBIDDEN" },
                { "org.freedesktop.DBus.Error.UnknownObject", 404, 404, "NOT_FOUND" },
                { "org.execd.Execd1.Error.NotFound", 404, 404, "NOT_FOUND" },
                { "org.execd.Execd1.Error.Busy", 409, 409, "BUSY" },
                { "org.execd.Execd1.Error.RangeNotSatisfiable", 416, 416, "RANGE_NOT_SATISFIABLE" },
                { "org.execd.Execd1.Error.LimitsExceeded", 429, 429, "LIMITS_EXCEEDED" },
                { "org.freedesktop.DBus.Error.ServiceUnknown", 503, 502, "SERVICE_UNAVAILABLE" },
                { "org.freedesktop.DBus.Error.NameHasNoOwner", 503, 502, "SERVICE_UNAVAILABLE" },
                { "org.freedesktop.DBus.Error.NoReply", 504, 504, "GATEWAY_TIMEOUT" },
                { "org.execd.Execd1.Error.StartFailed", 500, 500, "RUNTIME_ERROR" },
                { "com.example.Unheard.Of", 500, 500, "RUNTIME_ERROR" },
                { NULL, 500, 500, "RUNTIME_ERROR" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                const EbErrorMapping *m = eb_error_lookup(cases[i].name);
                g_assert_cmpuint(eb_error_status(m, EB_API_EXECD), ==, cases[i].execd);
                g_assert_cmpuint(eb_error_status(m, EB_API_ENVIRONMENT), ==, cases[i].env);
                g_assert_cmpstr(m->code, ==, cases[i].code);
                g_assert_nonnull(m->type);
        }
}

static void test_nul_escape_detection(void) {
        g_assert_true(eb_json_text_has_nul_escape("{\"a\":\"x\\u0000y\"}", 16));
        g_assert_true(eb_json_text_has_nul_escape("\"\\u0000\"", 8));
        g_assert_true(eb_json_text_has_nul_escape("{\"a\":\"x\0\"}", 11)); /* a raw NUL byte */
        /* an escaped backslash followed by text is not a NUL */
        g_assert_false(eb_json_text_has_nul_escape("\"\\\\u0000\"", 9));
        g_assert_true(eb_json_text_has_nul_escape("\"\\u00001\"", 9));
        g_assert_false(eb_json_text_has_nul_escape("\"\\u0001\"", 8));
        g_assert_false(eb_json_text_has_nul_escape("{\"command\":\"echo hi\"}", 21));
        g_assert_false(eb_json_text_has_nul_escape("\\u000", 5)); /* truncated escape */
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/json/escaping", test_escaping);
        g_test_add_func("/json/random-bytes", test_random_bytes_always_valid);
        g_test_add_func("/json/writer-nesting", test_writer_nesting);
        g_test_add_func("/sse/frame", test_sse_frame);
        g_test_add_func("/errors/table", test_error_table);
        g_test_add_func("/json/nul-escape", test_nul_escape_detection);
        return g_test_run();
}
