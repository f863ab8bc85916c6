/* SPDX-License-Identifier: Apache-2.0 */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdbool.h>
#include <unistd.h>

#include "env.h"
#include "macro.h"

static void test_expand_path(void) {
        char *env[] = { (char *) "A=/alpha", (char *) "B=beta", (char *) "EMPTY=", NULL };
        g_autofree char *cwd = g_get_current_dir();
        struct {
                const char *in, *out;
        } ok[] = {
                { "/x/$A/y", "/x//alpha/y" },
                { "${A}/${B}", "/alpha/beta" },
                { "/p$EMPTY/q", "/p/q" },
                { "/cost$5", "/cost" },       /* special parameters are empty */
                { "/a$$b", "/ab" },
                { "/lit$", "/lit$" },         /* a lone $ stays */
                { "/lit$/x", "/lit$/x" },
                { "/b${", "/b${" },
        };

        for (gsize i = 0; i < G_N_ELEMENTS(ok); i++) {
                char *out = NULL, *missing = NULL;
                g_assert_cmpint(expand_path(ok[i].in, env, &out, &missing), ==, 0);
                g_assert_cmpstr(out, ==, ok[i].out);
                g_assert_null(missing);
                free(out);
        }

        {
                char *out = NULL, *missing = NULL;
                g_assert_cmpint(expand_path("/$NOPE/${ALSO_NOT}/$A", env, &out, &missing), ==, -ENXIO);
                g_assert_null(out);
                g_assert_cmpstr(missing, ==, "NOPE,ALSO_NOT");
                free(missing);
        }
        {
                char *out = NULL;
                g_autofree char *want = g_build_filename(cwd, "rel/beta", NULL);
                g_assert_cmpint(expand_path("rel/$B", env, &out, NULL), ==, 0);
                g_assert_cmpstr(out, ==, want);
                free(out);
        }
        {
                char *out = NULL;
                g_autofree char *want = g_strconcat(g_getenv("HOME"), "/x", NULL);
                g_assert_cmpint(expand_path("~/x", env, &out, NULL), ==, 0);
                g_assert_cmpstr(out, ==, want);
                free(out);
        }
}

static void test_env_file(void) {
        char *base[] = { (char *) "HOME=/home/t", (char *) "KEEP=1", NULL };
        g_autofree char *path = NULL;
        char **envp = env_copy(base);
        int fd = g_file_open_tmp("execd-env-XXXXXX", &path, NULL);

        g_assert_cmpint(fd, >=, 0);
        g_assert_true(g_file_set_contents(path,
                                          "# comment\n"
                                          "  SPACED = v \n"
                                          "NOEQUALS\n"
                                          "\n"
                                          "QUOTED=\"q\"\n"
                                          "EXP=$HOME/x\n"
                                          "UNDEF=${NOPE}z\n"
                                          "KEEP=2\n"
                                          "EMPTY=\n",
                                          -1, NULL));
        close(fd);
        g_assert_cmpint(env_merge_file(&envp, path, base), ==, 0);
        g_assert_cmpstr(env_get(envp, "SPACED "), ==, " v");
        g_assert_null(env_get(envp, "NOEQUALS"));
        g_assert_cmpstr(env_get(envp, "QUOTED"), ==, "\"q\"");
        g_assert_cmpstr(env_get(envp, "EXP"), ==, "/home/t/x");
        g_assert_cmpstr(env_get(envp, "UNDEF"), ==, "z");
        g_assert_cmpstr(env_get(envp, "KEEP"), ==, "2");
        g_assert_cmpstr(env_get(envp, "EMPTY"), ==, "");
        g_assert_cmpint(env_merge_file(&envp, "/nonexistent/file", base), ==, 0);
        g_unlink(path);
        strv_freep(&envp);
}

static void test_env_set_and_names(void) {
        char *base[] = { (char *) "A=1", NULL };
        char **envp = env_copy(base);

        g_assert_cmpint(env_set(&envp, "A", "2"), ==, 0);
        g_assert_cmpint(env_set(&envp, "AB", "3"), ==, 0);
        g_assert_cmpstr(env_get(envp, "A"), ==, "2");
        g_assert_cmpstr(env_get(envp, "AB"), ==, "3");
        g_assert_null(envp[2]);
        g_assert_true(env_name_is_valid("X_1"));
        g_assert_false(env_name_is_valid(""));
        g_assert_false(env_name_is_valid("A=B"));
        strv_freep(&envp);
}

static void test_path_clean(void) {
        static const char *const cases[][2] = {
                { "/", "/" },
                { "//", "/" },
                { "/a/b/", "/a/b" },
                { "/a//b///c", "/a/b/c" },
                { "/a/./b/.", "/a/b" },
                { "/a/b/..", "/a" },
                { "/a/..", "/" },
                { "/..", "/" },
                { "/../../x", "/x" },
                { "/a/b/../../c/../d", "/d" },
                { "/tmp/x/../y", "/tmp/y" },
                { "/a/..b/.c/...", "/a/..b/.c/..." },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                char *p = g_strdup(cases[i][0]);
                path_clean(p);
                g_assert_cmpstr(p, ==, cases[i][1]);
                g_free(p);
        }
}

int main(int argc, char *argv[]) {
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/env/expand-path", test_expand_path);
        g_test_add_func("/env/file", test_env_file);
        g_test_add_func("/env/set-and-names", test_env_set_and_names);
        g_test_add_func("/env/path-clean", test_path_clean);
        return g_test_run();
}
