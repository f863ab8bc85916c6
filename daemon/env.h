/* SPDX-License-Identifier: Apache-2.0 */
#include <stdbool.h>
#pragma once

/* NULL-terminated "NAME=value" vectors, for child environments. */
char **env_copy(char *const *envp);
const char *env_get(char *const *envp, const char *name);
int env_set(char ***envp, const char *name, const char *value);
bool env_name_is_valid(const char *name);
/* Merge a KEY=VALUE file (EXECD_ENVS): '#' comments and lines without '=' are skipped, values
 * are expanded against expand_env ($VAR, ${VAR}; undefined is empty). Missing file: 0. */
int env_merge_file(char ***envp, const char *path, char *const *expand_env);
/* Path expansion shared by every path argument: $NAME and ${NAME} from envp (an undefined name
 * fails with -ENXIO and *ret_missing listing them, comma-separated), $ followed by a digit or
 * one of *#$@!?- expands to nothing, a leading ~ becomes $HOME, and a relative result is made
 * absolute against the daemon's working directory. */
int expand_path(const char *in, char *const *envp, char **ret, char **ret_missing);
/* Lexical clean of an absolute path, in place: duplicate slashes, "." and ".." removed, no
 * trailing slash (except for "/"). */
void path_clean(char *path);
