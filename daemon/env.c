/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "macro.h"

char **env_copy(char *const *envp) {
        size_t n = 0;
        char **l;

        while (envp && envp[n])
                n++;
        l = calloc(n + 1, sizeof *l);
        if (!l)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                l[i] = strdup(envp[i]);
                if (!l[i]) {
                        strv_freep(&l);
                        return NULL;
                }
        }
        return l;
}

const char *env_get(char *const *envp, const char *name) {
        size_t len = strlen(name);

        for (size_t i = 0; envp && envp[i]; i++)
                if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
                        return envp[i] + len + 1;
        return NULL;
}

bool env_name_is_valid(const char *name) {
        return name && *name && !strchr(name, '=');
}

int env_set(char ***envp, const char *name, const char *value) {
        size_t len = strlen(name), n = 0;
        char *entry, **l;

        if (asprintf(&entry, "%s=%s", name, value) < 0)
                return -ENOMEM;
        for (; (*envp)[n]; n++)
                if (strncmp((*envp)[n], name, len) == 0 && (*envp)[n][len] == '=') {
                        free((*envp)[n]);
                        (*envp)[n] = entry;
                        return 0;
                }
        l = realloc(*envp, (n + 2) * sizeof *l);
        if (!l) {
                free(entry);
                return -ENOMEM;
        }
        l[n] = entry;
        l[n + 1] = NULL;
        *envp = l;
        return 0;
}

static bool is_name_start(char ch) {
        return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_name_char(char ch) {
        return is_name_start(ch) || (ch >= '0' && ch <= '9');
}

/* Expand $NAME and ${NAME}; undefined names are collected in *missing when it is non-NULL and
 * expand to nothing otherwise. */
static int expand_vars(const char *in, char *const *envp, char **ret, char **missing) {
        _cleanup_(freep) char *out = NULL;
        size_t len = 0, cap = strlen(in) + 1;

        out = malloc(cap);
        if (!out)
                return -ENOMEM;

        for (const char *p = in; *p;) {
                const char *value = NULL, *name_start;
                size_t name_len = 0, vlen;
                bool braced = false;

                if (*p != '$') {
                        value = p;
                        vlen = 1;
                        p++;
                        goto append;
                }
                if (p[1] && (strchr("*#$@!?-", p[1]) || (p[1] >= '0' && p[1] <= '9'))) {
                        p += 2; /* special parameters are always empty here */
                        continue;
                }
                braced = p[1] == '{';
                name_start = p + 1 + braced;
                while (is_name_char(name_start[name_len]) && (name_len > 0 || is_name_start(name_start[0])))
                        name_len++;
                if (name_len == 0 || (braced && name_start[name_len] != '}')) {
                        value = p; /* not a reference: keep the '$' */
                        vlen = 1;
                        p++;
                        goto append;
                }
                {
                        _cleanup_(freep) char *name = strndup(name_start, name_len);
                        if (!name)
                                return -ENOMEM;
                        value = env_get(envp, name);
                        if (!value && missing) {
                                char *m;
                                if (asprintf(&m, "%s%s%s", *missing ? *missing : "", *missing ? "," : "", name) < 0)
                                        return -ENOMEM;
                                free(*missing);
                                *missing = m;
                        }
                }
                p = name_start + name_len + braced;
                if (!value)
                        continue;
                vlen = strlen(value);
        append:
                if (len + vlen + 1 > cap) {
                        char *n;
                        cap = (len + vlen + 1) * 2;
                        n = realloc(out, cap);
                        if (!n)
                                return -ENOMEM;
                        out = n;
                }
                memcpy(out + len, value, vlen);
                len += vlen;
        }
        out[len] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

int env_merge_file(char ***envp, const char *path, char *const *expand_env) {
        _cleanup_(freep) char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        FILE *f;
        int k = 0;

        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT ? 0 : -errno;
        while ((n = getline(&line, &cap, f)) >= 0) {
                char *s = line, *e = line + n, *eq;
                _cleanup_(freep) char *value = NULL;

                while (s < e && strchr(" \t\r\n", *s))
                        s++;
                while (e > s && strchr(" \t\r\n", e[-1]))
                        e--;
                *e = 0;
                if (*s == 0 || *s == '#' || !(eq = strchr(s, '=')) || eq == s)
                        continue;
                *eq = 0;
                if (expand_vars(eq + 1, expand_env, &value, NULL) < 0 || env_set(envp, s, value) < 0) {
                        k = -ENOMEM;
                        break;
                }
        }
        fclose(f);
        return k;
}

int expand_path(const char *in, char *const *envp, char **ret, char **ret_missing) {
        _cleanup_(freep) char *expanded = NULL, *missing = NULL, *cwd = NULL;
        char *out;
        int k;

        k = expand_vars(in, envp, &expanded, &missing);
        if (k < 0)
                return k;
        if (missing) {
                if (ret_missing)
                        *ret_missing = TAKE_PTR(missing);
                return -ENXIO;
        }
        if (expanded[0] == '~' && (expanded[1] == 0 || expanded[1] == '/')) {
                const char *home = getenv("HOME");
                if (asprintf(&out, "%s%s", home ? home : "/", expanded + 1) < 0)
                        return -ENOMEM;
                free(expanded);
                expanded = out;
        }
        if (expanded[0] != '/') {
                cwd = getcwd(NULL, 0);
                if (!cwd)
                        return -errno;
                if (asprintf(&out, "%s/%s", cwd, expanded) < 0)
                        return -ENOMEM;
                free(expanded);
                expanded = out;
        }
        *ret = TAKE_PTR(expanded);
        return 0;
}

void path_clean(char *path) {
        char *out = path, *in = path;

        /* out always ends just after a component (or at the root slash). */
        *out++ = '/';
        while (*in) {
                char *start, *end;
                size_t n;

                while (*in == '/')
                        in++;
                if (!*in)
                        break;
                start = in;
                while (*in && *in != '/')
                        in++;
                end = in;
                n = (size_t) (end - start);
                if (n == 1 && start[0] == '.')
                        continue;
                if (n == 2 && start[0] == '.' && start[1] == '.') {
                        /* Back to the previous slash, never above the root. */
                        if (out > path + 1) {
                                out--;
                                while (out > path + 1 && out[-1] != '/')
                                        out--;
                        }
                        continue;
                }
                if (out > path + 1 && out[-1] != '/')
                        *out++ = '/';
                memmove(out, start, n);
                out += n;
        }
        if (out > path + 1 && out[-1] == '/')
                out--;
        *out = 0;
}
