/* SPDX-License-Identifier: Apache-2.0 */
/* Jupyter kernel specifications: find the installed kernel.json for a language. */
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "kernelspec.h"
#include "macro.h"

/* A kernel.json is a few hundred bytes; anything this large is not one. */
#define KERNEL_JSON_MAX (1024 * 1024)

KernelSpec *kernelspec_free(KernelSpec *s) {
        if (!s)
                return NULL;
        free(s->name);
        free(s->display_name);
        free(s->language);
        strv_freep(&s->argv);
        strv_freep(&s->env);
        free(s->resource_dir);
        free(s);
        return NULL;
}

static void g_object_unrefp(void *p) {
        if (*(void **) p)
                g_object_unref(*(void **) p);
}

static const char *object_get_string(JsonObject *o, const char *member) {
        JsonNode *n = json_object_get_member(o, member);

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

int kernelspec_load(const char *dir, KernelSpec **ret) {
        _cleanup_(g_object_unrefp) JsonParser *parser = NULL;
        _cleanup_(kernelspec_freep) KernelSpec *s = NULL;
        _cleanup_(freep) char *path = NULL, *data = NULL;
        _cleanup_(closep) int fd = -1;
        const char *language, *display, *mode, *base;
        JsonObject *root, *env;
        JsonArray *argv;
        struct stat st;
        size_t len = 0;
        JsonNode *n;

        if (asprintf(&path, "%s/kernel.json", dir) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if (st.st_size > KERNEL_JSON_MAX)
                return -EFBIG;
        data = malloc((size_t) st.st_size + 1);
        if (!data)
                return -ENOMEM;
        while (len < (size_t) st.st_size) {
                ssize_t k = read(fd, data + len, (size_t) st.st_size - len);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        break;
                len += (size_t) k;
        }

        parser = json_parser_new();
        if (!json_parser_load_from_data(parser, data, (gssize) len, NULL))
                return -EBADMSG;
        n = json_parser_get_root(parser);
        if (!n || !JSON_NODE_HOLDS_OBJECT(n))
                return -EBADMSG;
        root = json_node_get_object(n);

        language = object_get_string(root, "language");
        n = json_object_get_member(root, "argv");
        if (!language || !n || !JSON_NODE_HOLDS_ARRAY(n))
                return -EBADMSG;
        argv = json_node_get_array(n);
        if (json_array_get_length(argv) == 0)
                return -EBADMSG;

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        base = strrchr(dir, '/');
        base = base ? base + 1 : dir;
        display = object_get_string(root, "display_name");
        mode = object_get_string(root, "interrupt_mode");
        s->interrupt_message = mode && strcmp(mode, "message") == 0;
        s->name = strdup(base);
        s->display_name = strdup(display ? display : base);
        s->language = strdup(language);
        s->resource_dir = strdup(dir);
        s->argv = calloc(json_array_get_length(argv) + 1, sizeof(char *));
        if (!s->name || !s->display_name || !s->language || !s->resource_dir || !s->argv)
                return -ENOMEM;
        for (guint i = 0; i < json_array_get_length(argv); i++) {
                JsonNode *e = json_array_get_element(argv, i);
                if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING)
                        return -EBADMSG;
                s->argv[i] = strdup(json_node_get_string(e));
                if (!s->argv[i])
                        return -ENOMEM;
        }

        n = json_object_get_member(root, "env");
        env = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
        {
                g_autoptr(GList) members = env ? json_object_get_members(env) : NULL;
                size_t i = 0;

                s->env = calloc(g_list_length(members) + 1, sizeof(char *));
                if (!s->env)
                        return -ENOMEM;
                for (GList *l = members; l; l = l->next) {
                        const char *value = object_get_string(env, l->data);
                        /* Non-string values and names a process environment cannot hold. */
                        if (!value || !*(const char *) l->data || strchr(l->data, '='))
                                continue;
                        if (asprintf(&s->env[i], "%s=%s", (const char *) l->data, value) < 0) {
                                s->env[i] = NULL;
                                return -ENOMEM;
                        }
                        i++;
                }
        }

        *ret = TAKE_PTR(s);
        return 0;
}

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The directory's subdirectory names, sorted, without hidden ones. Missing directory: empty. */
static int list_dir_sorted(const char *path, char ***ret, size_t *ret_n) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0, cap = 0;
        DIR *d;

        d = opendir(path);
        if (!d) {
                *ret = NULL;
                *ret_n = 0;
                return errno == ENOENT || errno == ENOTDIR || errno == EACCES ? 0 : -errno;
        }
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                if (de->d_type != DT_DIR && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
                        continue;
                if (n + 2 > cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        char **l = realloc(names, ncap * sizeof *l);
                        if (!l) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        names = l;
                        cap = ncap;
                }
                names[n] = strdup(de->d_name);
                names[n + 1] = NULL;
                if (!names[n]) {
                        closedir(d);
                        return -ENOMEM;
                }
                n++;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof *names, cmp_names);
        *ret = TAKE_PTR(names);
        *ret_n = n;
        return 0;
}

static int search_dirs(char ***ret) {
        _cleanup_(strv_freep) char **l = NULL;
        const char *jp = getenv("JUPYTER_PATH"), *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        size_t n = 0, cap = 4;
        char *d;

        for (const char *p = jp; p && *p; p++)
                if (*p == ':')
                        cap++;
        l = calloc(cap + 2, sizeof *l);
        if (!l)
                return -ENOMEM;
        while (jp && *jp) {
                size_t len = strcspn(jp, ":");
                /* Empty entries mean nothing, as in Jupyter. */
                if (len > 0) {
                        if (asprintf(&d, "%.*s/kernels", (int) len, jp) < 0)
                                return -ENOMEM;
                        l[n++] = d;
                }
                jp += len;
                if (*jp == ':')
                        jp++;
        }
        if (xdg && *xdg == '/') {
                if (asprintf(&d, "%s/jupyter/kernels", xdg) < 0)
                        return -ENOMEM;
                l[n++] = d;
        } else if (home && *home == '/') {
                if (asprintf(&d, "%s/.local/share/jupyter/kernels", home) < 0)
                        return -ENOMEM;
                l[n++] = d;
        }
        if (!(l[n++] = strdup("/usr/local/share/jupyter/kernels")) ||
            !(l[n++] = strdup("/usr/share/jupyter/kernels")))
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

static bool strv_contains(char **l, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(l[i], s) == 0)
                        return true;
        return false;
}

/* Call f for every visible spec in search order; f returns > 0 to stop (that value is returned). */
static int kernelspec_foreach(int (*f)(KernelSpec *s, void *userdata), void *userdata) {
        _cleanup_(strv_freep) char **dirs = NULL, **seen = NULL;
        size_t n_seen = 0, cap_seen = 0;
        int r;

        r = search_dirs(&dirs);
        if (r < 0)
                return r;
        for (char **d = dirs; *d; d++) {
                _cleanup_(strv_freep) char **names = NULL;
                size_t n = 0;

                r = list_dir_sorted(*d, &names, &n);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++) {
                        _cleanup_(kernelspec_freep) KernelSpec *s = NULL;
                        _cleanup_(freep) char *path = NULL;
                        int k;

                        if (strv_contains(seen, n_seen, names[i]))
                                continue;
                        if (asprintf(&path, "%s/%s", *d, names[i]) < 0)
                                return -ENOMEM;
                        k = kernelspec_load(path, &s);
                        if (k == -ENOENT || k == -ENOTDIR)
                                continue; /* not a spec directory: hides nothing */
                        if (k == -ENOMEM)
                                return k;
                        if (n_seen + 2 > cap_seen) {
                                size_t ncap = cap_seen ? cap_seen * 2 : 16;
                                char **l = realloc(seen, ncap * sizeof *l);
                                if (!l)
                                        return -ENOMEM;
                                seen = l;
                                cap_seen = ncap;
                        }
                        seen[n_seen] = strdup(names[i]);
                        seen[n_seen + 1] = NULL;
                        if (!seen[n_seen])
                                return -ENOMEM;
                        n_seen++;
                        if (k < 0)
                                continue; /* broken spec: hides its name, but cannot be used */
                        k = f(s, userdata);
                        if (k != 0)
                                return k;
                }
        }
        return 0;
}

struct find_data {
        const char *language;
        KernelSpec *found;
};

static int find_one(KernelSpec *s, void *userdata) {
        struct find_data *d = userdata;
        KernelSpec *copy;

        if (strcasecmp(s->language, d->language) != 0)
                return 0;
        /* Steal the spec: the caller's cleanup then frees an empty shell. */
        copy = malloc(sizeof *copy);
        if (!copy)
                return -ENOMEM;
        *copy = *s;
        memset(s, 0, sizeof *s);
        d->found = copy;
        return 1;
}

int kernelspec_find(const char *language, KernelSpec **ret) {
        struct find_data d = { .language = language };
        int r;

        if (!language || !*language)
                return -EINVAL;
        r = kernelspec_foreach(find_one, &d);
        if (r < 0)
                return r;
        if (!d.found)
                return -ENOENT;
        *ret = d.found;
        return 0;
}

struct lang_data {
        char **l;
        size_t n, cap;
};

static int add_language(KernelSpec *s, void *userdata) {
        struct lang_data *d = userdata;
        char *lower;

        if (!*s->language)
                return 0;
        lower = strdup(s->language);
        if (!lower)
                return -ENOMEM;
        for (char *p = lower; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p += 'a' - 'A';
        if (strv_contains(d->l, d->n, lower)) {
                free(lower);
                return 0;
        }
        if (d->n + 2 > d->cap) {
                size_t ncap = d->cap ? d->cap * 2 : 8;
                char **l = realloc(d->l, ncap * sizeof *l);
                if (!l) {
                        free(lower);
                        return -ENOMEM;
                }
                d->l = l;
                d->cap = ncap;
        }
        d->l[d->n++] = lower;
        d->l[d->n] = NULL;
        return 0;
}

int kernelspec_languages(char ***ret) {
        struct lang_data d = {};
        int r;

        r = kernelspec_foreach(add_language, &d);
        if (r < 0) {
                strv_freep(&d.l);
                return r;
        }
        if (!d.l) {
                d.l = calloc(1, sizeof(char *));
                if (!d.l)
                        return -ENOMEM;
        }
        qsort(d.l, d.n, sizeof *d.l, cmp_names);
        *ret = d.l;
        return 0;
}
