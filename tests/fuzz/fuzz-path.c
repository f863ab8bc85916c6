/* SPDX-License-Identifier: Apache-2.0 */
/* Path expansion: files_expand (daemon/files.c: $VAR, ${VAR}, ~, relative paths, then
 * path_clean), which every Files method runs on its paths, with the daemon's environment being
 * the fuzzer's; and expand_path with a request's own environment, as RunCommand expands cwd
 * against the command's envs. The input is lines: NAME=value lines make the environment, the
 * last line is the path. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "execd.h"
#include "files.h"
#include "polkit.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* files.c's method handlers need these; files_expand does not. */
int manager_caller_uid(Manager *m, sd_bus_message *msg, uid_t *ret) {
        abort();
}

int polkit_take_answer(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        /* A fixed working directory: relative paths are made absolute against it. */
        if (chdir("/tmp") < 0)
                abort();
        return 0;
}

static void check_clean(const char *p) {
        size_t n = strlen(p);

        if (p[0] != '/' || strstr(p, "//") || strstr(p, "/./") || strstr(p, "/../") || (n > 1 && p[n - 1] == '/'))
                abort();
        if ((n >= 2 && strcmp(p + n - 2, "/.") == 0) || (n >= 3 && strcmp(p + n - 3, "/..") == 0))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        extern char **environ;
        char *text, *line, *save = NULL, *path = "", *out = NULL, *missing = NULL;
        char **envp = NULL, **saved_environ;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int k;

        if (size > 16 * 1024)
                return 0;
        text = strndup((const char *) data, size);
        if (!text)
                return 0;
        envp = calloc(1, sizeof *envp);
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *eq = strchr(line, '=');
                path = line;
                if (eq && eq != line) {
                        *eq = 0;
                        if (env_name_is_valid(line) && env_set(&envp, line, eq + 1) < 0)
                                abort();
                        *eq = '=';
                }
        }

        /* The daemon's own environment. */
        saved_environ = environ;
        environ = envp;
        k = files_expand(path, &out, &error);
        environ = saved_environ;
        if (k >= 0) {
                if (!out || strlen(out) > FILES_PATH_MAX)
                        abort();
                check_clean(out);
                free(out);
                out = NULL;
        } else if (!sd_bus_error_is_set(&error))
                abort();
        sd_bus_error_free(&error);

        /* A request's environment (cwd of RunCommand). */
        k = expand_path(path, envp, &out, &missing);
        if (k == 0) {
                char *copy;
                if (!out || out[0] != '/' || missing)
                        abort();
                copy = strdup(out);
                path_clean(copy);
                check_clean(copy);
                free(copy);
        } else if (k == -ENXIO) {
                if (!missing || !*missing || out)
                        abort();
        } else if (k != -ENOMEM)
                abort();
        free(out);
        free(missing);

        for (char **e = envp; e && *e; e++)
                free(*e);
        free(envp);
        free(text);
        return 0;
}
