/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "glob.h"

typedef struct Case {
        const char *pattern, *name;
        int want;
} Case;

static void check_cases(const Case *cases, gsize n) {
        for (gsize i = 0; i < n; i++) {
                int r = glob_match(cases[i].pattern, cases[i].name);

                if (r != cases[i].want)
                        g_test_message("pattern \"%s\" name \"%s\": got %d, want %d",
                                       cases[i].pattern, cases[i].name, r, cases[i].want);
                g_assert_cmpint(r, ==, cases[i].want);
                /* Whatever matches (or not) is well formed, and the other way round. */
                g_assert_cmpint(glob_validate(cases[i].pattern), ==, r < 0 ? r : 0);
        }
}

static void test_literal_star_any(void) {
        static const Case cases[] = {
                { "", "", 1 },
                { "", "a", 0 },
                { "abc", "abc", 1 },
                { "abc", "abd", 0 },
                { "abc", "ab", 0 },
                { "abc", "abcd", 0 },
                { "*", "", 1 },
                { "*", "anything.at.all", 1 },
                { "a*", "a", 1 },
                { "a*", "abc", 1 },
                { "a*", "ba", 0 },
                { "*a", "bca", 1 },
                { "*a", "ab", 0 },
                { "a*b*c", "axxbyyc", 1 },
                { "a*b*c", "abc", 1 },
                { "a*b*c", "acb", 0 },
                { "*.txt", "notes.txt", 1 },
                { "*.txt", ".txt", 1 },
                { "*.txt", "notes.txt.bak", 0 },
                { "*.txt", "notes.TXT", 0 },
                { "?", "a", 1 },
                { "?", "", 0 },
                { "?", "ab", 0 },
                { "???", "abc", 1 },
                { "a?c", "abc", 1 },
                { "a?c", "ac", 0 },
                { "?*", "", 0 },
                { "?*", "x", 1 },
                { "*?*?*", "ab", 1 },
                { "*?*?*", "a", 0 },
                /* Metacharacters of other syntaxes are plain. */
                { "a+b(c)", "a+b(c)", 1 },
                { ".*", ".hidden", 1 },
                { ".*", "xhidden", 0 },
                { "a,b", "a,b", 1 },
                { "a}", "a}", 1 },
                { "}{a}", "}a", 1 },
                { "a!", "a!", 1 },
                { "a!b", "a!b", 1 },
                { "a!(b)", "a!(b)", 1 },
                { "a!(b)", "ab", 0 },
                { "()", "()", 1 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_globstar_and_slash(void) {
        static const Case cases[] = {
                { "**", "", 1 },
                { "**", "anything", 1 },
                { "a**b", "ab", 1 },
                { "a**b", "a-x-b", 1 },
                { "a**b", "a-x-c", 0 },
                { "**.c", "main.c", 1 },
                { "**/*.txt", "a.txt", 1 },
                { "**/*.txt", "a.c", 0 },
                { "**/**/x", "x", 1 },
                { "**/**/x", "y", 0 },
                { "**/x*", "xyz", 1 },
                { "**/", "", 1 },
                { "**/", "a", 0 },
                /* Only a leading "**" "/" goes; any other slash can never match a base name. */
                { "sub/*.txt", "a.txt", 0 },
                { "sub/*.txt", "sub", 0 },
                { "sub/*.txt", "sub/a.txt", 0 },
                { "*/", "a", 0 },
                { "/*", "a", 0 },
                { "a/**", "a", 0 },
                { "**/a/b", "b", 0 },
                { "*/*", "a", 0 },
                { "\\/", "/", 0 },
                { "***/x", "x", 0 },
                /* A slash only sinks its own alternative, and a class never holds one. */
                { "{a/b,c}", "c", 1 },
                { "{a/b,c}", "b", 0 },
                { "[a/]", "a", 1 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_escapes(void) {
        static const Case cases[] = {
                { "\\*", "*", 1 },
                { "\\*", "a", 0 },
                { "\\?", "?", 1 },
                { "\\?", "a", 0 },
                { "\\[a]", "[a]", 1 },
                { "\\[a]", "a", 0 },
                { "\\\\", "\\", 1 },
                { "a\\b", "ab", 1 },
                { "\\{a,b\\}", "{a,b}", 1 },
                { "\\{a,b\\}", "a", 0 },
                { "\\!x", "!x", 1 },
                { "\\!(x)", "!(x)", 1 },
                { "\\!(x)", "y", 0 },
                { "*\\*", "abc*", 1 },
                { "*\\*", "abc", 0 },
                { "\\é", "é", 1 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_classes(void) {
        static const Case cases[] = {
                { "[abc]", "a", 1 },
                { "[abc]", "c", 1 },
                { "[abc]", "d", 0 },
                { "[abc]", "", 0 },
                { "[abc]", "ab", 0 },
                { "[a-c]x", "bx", 1 },
                { "[a-c]x", "dx", 0 },
                { "[a-cx-z]", "y", 1 },
                { "[a-cx-z]", "m", 0 },
                { "[0-9][0-9]", "42", 1 },
                { "[0-9][0-9]", "4x", 0 },
                { "[!a-c]", "d", 1 },
                { "[!a-c]", "b", 0 },
                { "[^a-c]", "d", 1 },
                { "[^a-c]", "a", 0 },
                { "[!a]", "", 0 },
                /* ']' first is a member. */
                { "[]]", "]", 1 },
                { "[]]", "a", 0 },
                { "[]a]", "a", 1 },
                { "[]a]", "]", 1 },
                { "[]a]", "b", 0 },
                { "[!]]", "]", 0 },
                { "[!]]", "a", 1 },
                { "[^]]", "]", 0 },
                { "[^]a]", "b", 1 },
                { "[]-a]", "^", 1 }, /* the range ']'..'a' */
                /* Escapes inside. */
                { "[\\]]", "]", 1 },
                { "[\\]a]", "a", 1 },
                { "[a\\-z]", "-", 1 },
                { "[a\\-z]", "b", 0 },
                { "[\\!a]", "!", 1 },
                { "[\\\\]", "\\", 1 },
                /* '-' first or last is a member. */
                { "[a-]", "-", 1 },
                { "[a-]", "a", 1 },
                { "[-a]", "-", 1 },
                { "[!-]", "-", 0 },
                /* A reversed range is empty. */
                { "[z-a]", "m", 0 },
                { "[z-a]", "z", 0 },
                /* Other metacharacters are members. */
                { "[[]", "[", 1 },
                { "[*?]", "*", 1 },
                { "[*?]", "x", 0 },
                { "[{,}]", ",", 1 },
                { "[!x]*", "yes", 1 },
                { "[!x]*", "xes", 0 },
                /* A class swallows braces' separators. */
                { "{[,}]x,y}", ",x", 1 },
                { "{[,}]x,y}", "}x", 1 },
                { "{[,}]x,y}", "y", 1 },
                { "{[,}]x,y}", "x", 0 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_braces(void) {
        static const Case cases[] = {
                { "{a,b,c}", "a", 1 },
                { "{a,b,c}", "c", 1 },
                { "{a,b,c}", "d", 0 },
                { "{a,b,c}", "", 0 },
                { "{a,b,c}", "ab", 0 },
                { "x{a,b}y", "xby", 1 },
                { "x{a,b}y", "xy", 0 },
                { "{a,b{c,d}}", "a", 1 },
                { "{a,b{c,d}}", "bc", 1 },
                { "{a,b{c,d}}", "bd", 1 },
                { "{a,b{c,d}}", "b", 0 },
                { "{a,b{c,d}}", "ac", 0 },
                { "{{a,b},{c,{d,e}}}f", "ef", 1 },
                { "{{a,b},{c,{d,e}}}f", "f", 0 },
                { "{*.c,*.h}", "main.c", 1 },
                { "{*.c,*.h}", "main.h", 1 },
                { "{*.c,*.h}", "main.o", 0 },
                { "*.{c,h}", "x.h", 1 },
                { "*.{c,h}", "x.ch", 0 },
                { "{a*,*b}", "axxb", 1 },
                { "{a*,*b}", "xxb", 1 },
                { "{a*,*b}", "xxa", 0 },
                { "{?,??}x", "abx", 1 },
                { "{?,??}x", "abcx", 0 },
                { "{[0-9],x}{[0-9],y}", "1y", 1 },
                { "{[0-9],x}{[0-9],y}", "yx", 0 },
                /* Empty alternatives. */
                { "a{,b}", "a", 1 },
                { "a{,b}", "ab", 1 },
                { "a{,b}", "abb", 0 },
                { "a{b,}c", "ac", 1 },
                { "a{b,}c", "abc", 1 },
                { "{}", "", 1 },
                { "{}", "a", 0 },
                { "a{}b", "ab", 1 },
                { "{,}", "", 1 },
                { "{,}x", "x", 1 },
                { "{,,a}", "a", 1 },
                /* Escapes inside. */
                { "{a\\,b,c}", "a,b", 1 },
                { "{a\\,b,c}", "c", 1 },
                { "{a\\,b,c}", "a", 0 },
                { "{a\\}b}", "a}b", 1 },
                { "{\\{,x}", "{", 1 },
                { "{\\{,x}", "x", 1 },
                /* A '}' with no '{' open is a character. */
                { "{a,b}}", "a}", 1 },
                { "{a,b}}", "a", 0 },
                /* Many alternatives in a row, each of which could match the same text. */
                { "{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}b",
                  "aaaaaaaaaaaab", 1 },
                { "{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}{a,a}b",
                  "aaaaaaaaaaaac", 0 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_negation(void) {
        static const Case cases[] = {
                { "!(*.o)", "main.o", 0 },
                { "!(*.o)", "main.c", 1 },
                { "!(*.o)", "", 1 },
                { "!(a)", "a", 0 },
                { "!(a)", "aa", 1 },
                { "!(a)", "", 1 },
                { "!()", "", 0 },
                { "!()", "x", 1 },
                { "!({a,b})", "a", 0 },
                { "!({a,b})", "c", 1 },
                { "!(*.{c,h})", "x.h", 0 },
                { "!(*.{c,h})", "x.o", 1 },
                { "!([abc]*)", "boat", 0 },
                { "!([abc]*)", "dog", 1 },
                { "!(**/*.o)", "x.o", 0 },
                { "!(**/*.o)", "x.c", 1 },
                { "**/!(*.o)", "x.o", 0 },
                { "**/!(*.o)", "x.c", 1 },
                { "!(!(a))", "a", 1 },
                { "!(!(a))", "b", 0 },
                { "!(!(!(a)))", "a", 0 },
                { "!(a\\))", "a)", 0 },
                { "!(a\\))", "a", 1 },
                { "!(a)b)", "a)b", 0 }, /* the body is "a)b" */
                { "!(a)b)", "ab", 1 },
                { "!(a/b)", "x", 1 },   /* the body can never match */
                /* As a whole alternative. */
                { "{!(*.c),x.c}", "x.c", 1 },
                { "{!(*.c),x.c}", "y.c", 0 },
                { "{!(*.c),x.c}", "y.h", 1 },
                { "x{!(a),b}y", "xay", 0 },
                { "x{!(a),b}y", "xby", 1 },
                { "x{!(a),b}y", "xy", 1 },
                { "x{!(a),b}y", "xaay", 1 },
                { "{!(a)}", "a", 0 },
                { "{!(a)}", "b", 1 },
                { "{a,!(*)}", "a", 1 },
                { "{a,!(*)}", "b", 0 },
                { "{!(*.{c,h}),main.c}", "main.c", 1 },
                { "{!(*.{c,h}),main.c}", "util.c", 0 },
                { "{!(*.{c,h}),main.c}", "util.o", 1 },
                /* Anywhere else '!' is a character. */
                { "{!x,y}", "!x", 1 },
                { "{!x,y}", "x", 0 },
                { "a!(b)", "a!(b)", 1 },
                { "*!(b)", "a!(b)", 1 },
                { "*!(b)", "ab", 0 },
                { "[!]]!(a)", "x!(a)", 1 },
                { "[!]]!(a)", "]!(a)", 0 },
                { "x!", "x!", 1 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_malformed(void) {
        static const char *const bad[] = {
                "[", "[abc", "[!", "[^", "[]", "[!]", "[^]", "[a-", "[\\", "[a\\", "[a\\]",
                "{", "{a,b", "{a,{b}", "{{a}", "x{a,b", "{[}", "{a,b\\}",
                "a\\", "\\", "*\\", "{a\\",
                "!", "!a", "!x*", "!!(a)", "**/!",
                "!(", "!(a", "!(a)b", "!(a))b", "!(a\\)", "!(a)(b)x", "{!(a}", "{!(a,b)}",
                "{!(a)b,c}", "{a,!(b}", "!(!(a)", "!(!(a)x)",
                "**/[", "**/{", "x/[", "!([)]",
        };
        static const char *const good[] = {
                "", "a", "*", "**", "?", "[]]", "[!]]", "[a-]", "}", "a}", ",", "{}", "{,}",
                "!(a)", "!()", "!(!(a))", "a!", "{!x}", "()", ")(", "\\!", "a!(b", "**/",
                "a/b", "[z-a]", "{!(a),b}", "\\\\",
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                if (glob_validate(bad[i]) != -EINVAL)
                        g_test_message("pattern \"%s\" should be malformed", bad[i]);
                g_assert_cmpint(glob_validate(bad[i]), ==, -EINVAL);
                /* Checked fully: the names here never reach the bad part, or match a prefix. */
                g_assert_cmpint(glob_match(bad[i], ""), ==, -EINVAL);
                g_assert_cmpint(glob_match(bad[i], "zzz"), ==, -EINVAL);
                g_assert_cmpint(glob_match(bad[i], bad[i]), ==, -EINVAL);
        }
        for (gsize i = 0; i < G_N_ELEMENTS(good); i++) {
                if (glob_validate(good[i]) != 0)
                        g_test_message("pattern \"%s\" should be well formed", good[i]);
                g_assert_cmpint(glob_validate(good[i]), ==, 0);
                g_assert_cmpint(glob_match(good[i], "zzz"), >=, 0);
        }

        /* The bad part lies beyond where matching "b" could ever fail or succeed. */
        g_assert_cmpint(glob_match("a*[", "b"), ==, -EINVAL);
        g_assert_cmpint(glob_match("*{x,y", "anything"), ==, -EINVAL);
        g_assert_cmpint(glob_match("{a,b}c\\", "ac"), ==, -EINVAL);
        g_assert_cmpint(glob_match("sub/[", "x"), ==, -EINVAL);
        g_assert_cmpint(glob_validate(NULL), ==, -EINVAL);
        g_assert_cmpint(glob_match(NULL, "a"), ==, -EINVAL);
        g_assert_cmpint(glob_match("a", NULL), ==, -EINVAL);
}

static char *repeat(const char *s, int n) {
        GString *str = g_string_new(NULL);

        for (int i = 0; i < n; i++)
                g_string_append(str, s);
        return g_string_free(str, FALSE);
}

static void test_limits(void) {
        const int half = GLOB_DEPTH_MAX / 2;
        g_autofree char *longest = repeat("a", GLOB_PATTERN_MAX);
        g_autofree char *too_long = repeat("a", GLOB_PATTERN_MAX + 1);
        g_autofree char *star_long = repeat("*", GLOB_PATTERN_MAX + 1);
        g_autofree char *opens = repeat("{", GLOB_DEPTH_MAX), *closes = repeat("}", GLOB_DEPTH_MAX);
        g_autofree char *deep = g_strconcat(opens, "a", closes, NULL);
        g_autofree char *too_deep = g_strconcat("{", opens, "a", closes, "}", NULL);
        g_autofree char *negs = repeat("!(", GLOB_DEPTH_MAX), *parens = repeat(")", GLOB_DEPTH_MAX);
        g_autofree char *deep_neg = g_strconcat(negs, "a", parens, NULL);
        g_autofree char *too_deep_neg = g_strconcat("!(", negs, "a", parens, ")", NULL);
        g_autofree char *mixed = repeat("{!(", half), *mixed_end = repeat(")}", half);
        g_autofree char *deep_mixed = g_strconcat(mixed, "a", mixed_end, NULL);
        g_autofree char *too_deep_mixed = g_strconcat("{", mixed, "a", mixed_end, "}", NULL);

        g_assert_cmpint(glob_match(longest, longest), ==, 1);
        g_assert_cmpint(glob_match(longest, too_long), ==, 0);
        g_assert_cmpint(glob_match(too_long, too_long), ==, -EINVAL);
        g_assert_cmpint(glob_validate(too_long), ==, -EINVAL);
        g_assert_cmpint(glob_validate(star_long), ==, -EINVAL);

        g_assert_cmpint(glob_match(deep, "a"), ==, 1);
        g_assert_cmpint(glob_match(deep, "b"), ==, 0);
        g_assert_cmpint(glob_match(too_deep, "a"), ==, -EINVAL);
        /* An even number of negations is the body itself. */
        g_assert_cmpint(glob_match(deep_neg, "a"), ==, 1);
        g_assert_cmpint(glob_match(deep_neg, "b"), ==, 0);
        g_assert_cmpint(glob_match(too_deep_neg, "a"), ==, -EINVAL);
        /* Braces and negations count together; 16 negations again cancel out. */
        g_assert_cmpint(glob_match(deep_mixed, "a"), ==, 1);
        g_assert_cmpint(glob_match(deep_mixed, "b"), ==, 0);
        g_assert_cmpint(glob_match(too_deep_mixed, "a"), ==, -EINVAL);
}

static void test_utf8(void) {
        static const Case cases[] = {
                { "?", "é", 1 },
                { "??", "é", 0 },
                { "caf?", "café", 1 },
                { "caf??", "café", 0 },
                { "[é]", "é", 1 },
                { "[aé]x", "éx", 1 },
                { "[!é]", "é", 0 },
                { "[!a]", "é", 1 },
                { "[à-ï]", "é", 1 },
                { "[à-ï]", "ô", 0 },
                { "é*", "été", 1 },
                { "*é", "été", 1 },
                { "É*", "été", 0 }, /* no case folding, not even beyond ASCII */
                { "测试*.txt", "测试报告.txt", 1 },
                { "测试*.txt", "测验.txt", 0 },
                { "??.txt", "测试.txt", 1 },
                { "???.txt", "测试.txt", 0 },
                { "{测,试}?", "试验", 1 },
                { "?", "😀", 1 },
                { "[😀-😂]", "😁", 1 },
                { "!(?)", "😀", 0 },
                /* A byte that is not valid UTF-8 counts as one character. */
                { "?", "\xff", 1 },
                { "??", "\xc3\x28", 1 }, /* a lead byte without its continuation */
                { "?(", "\xc3\x28", 1 },
                { "?", "\xe2\x82", 0 },  /* truncated: two characters */
                { "??", "\xe2\x82", 1 },
                { "??", "\xc0\xaf", 1 }, /* overlong '/' stays two bytes */
                { "a*", "a\xff\xfe", 1 },
                { "[!a]", "\x80", 1 },
                { "\xff", "\xff", 1 },
                { "\xff", "\xfe", 0 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_case_sensitive(void) {
        static const Case cases[] = {
                { "ABC", "abc", 0 },
                { "abc", "ABC", 0 },
                { "ABC", "ABC", 1 },
                { "*.TXT", "a.txt", 0 },
                { "*.TXT", "a.TXT", 1 },
                { "[A-Z]", "a", 0 },
                { "[A-Z]", "Q", 1 },
                { "[a-z]", "Q", 0 },
                { "[!a]", "A", 1 },
                { "{Makefile,README}", "makefile", 0 },
                { "!(readme)", "README", 1 },
        };

        check_cases(cases, G_N_ELEMENTS(cases));
}

static void test_pathological(void) {
        g_autofree char *as = repeat("a", 200);
        g_autofree char *as_b = g_strconcat(as, "b", NULL);
        g_autofree char *long_as = repeat("a", 20000);
        gint64 begin = g_get_monotonic_time();

        g_assert_cmpint(glob_match("*a*a*a*a*a*a*a*b", as), ==, 0);
        g_assert_cmpint(glob_match("*a*a*a*a*a*a*a*b", as_b), ==, 1);
        g_assert_cmpint(glob_match("a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", long_as), ==, 0);
        g_assert_cmpint(glob_match("{*a,a*}{*a,a*}{*a,a*}{*a,a*}{*a,a*}{*a,a*}b", long_as), ==, 0);
        g_assert_cmpint(glob_match("*{!(*b),b}*{!(*b),b}*c", as), ==, 0);
        g_assert_cmpint(glob_match("*{!(*b),b}*{!(*b),b}*a", as), ==, 1);
        /* Generous enough for sanitizers and slow machines; backtracking would take ages. */
        g_assert_cmpint(g_get_monotonic_time() - begin, <, 5 * G_USEC_PER_SEC);
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/glob/literal-star-any", test_literal_star_any);
        g_test_add_func("/glob/globstar-and-slash", test_globstar_and_slash);
        g_test_add_func("/glob/escapes", test_escapes);
        g_test_add_func("/glob/classes", test_classes);
        g_test_add_func("/glob/braces", test_braces);
        g_test_add_func("/glob/negation", test_negation);
        g_test_add_func("/glob/malformed", test_malformed);
        g_test_add_func("/glob/limits", test_limits);
        g_test_add_func("/glob/utf8", test_utf8);
        g_test_add_func("/glob/case-sensitive", test_case_sensitive);
        g_test_add_func("/glob/pathological", test_pathological);
        return g_test_run();
}
