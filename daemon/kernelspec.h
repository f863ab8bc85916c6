/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/* An installed Jupyter kernel specification (<dir>/<name>/kernel.json). */
typedef struct KernelSpec {
        char *name;             /* directory name, e.g. "python3" */
        char *display_name;     /* the name when the spec declares none */
        char *language;         /* as declared, e.g. "python" */
        char **argv;            /* with {connection_file} still in it */
        char **env;             /* NAME=VALUE from the spec's "env", may be empty */
        bool interrupt_message; /* "interrupt_mode": "message" (else signal) */
        char *resource_dir;
} KernelSpec;

/* Search $JUPYTER_PATH (colon-separated, each + "/kernels"), the per-user data dir
 * ($XDG_DATA_HOME or ~/.local/share, + "/jupyter/kernels"), /usr/local/share/jupyter/kernels and
 * /usr/share/jupyter/kernels, in that order; the first spec (directories sorted by name within a
 * search dir) whose language equals `language` case-insensitively wins. As in Jupyter, a spec
 * name found in an earlier search dir hides specs of that name in later ones. Specs that do not
 * parse, or lack "argv" or "language", are skipped. -ENOENT when none matches. */
int kernelspec_find(const char *language, KernelSpec **ret);
/* Load the spec in one directory (which holds kernel.json); name is the directory's base name. */
int kernelspec_load(const char *dir, KernelSpec **ret);
/* Every language that some installed spec declares, lowercase, sorted, unique (NULL-terminated). */
int kernelspec_languages(char ***ret);
KernelSpec *kernelspec_free(KernelSpec *s);

static inline void kernelspec_freep(KernelSpec **s) {
        kernelspec_free(*s);
}
