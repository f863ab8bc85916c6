/* SPDX-License-Identifier: Apache-2.0 */
/* Glob patterns: compile (validate) and match. The input is PATTERN NUL NAME; without a NUL
 * the whole input is the pattern, matched against a few fixed names. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *pattern, const char *name) {
        int m = glob_match(pattern, name), v = glob_validate(pattern);

        if (m != 0 && m != 1 && m != -EINVAL)
                abort(); /* -ENOMEM never happens at these sizes */
        if (v != (m < 0 ? m : 0))
                abort(); /* a pattern is malformed whatever the name */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const names[] = { "", "a", "notes.txt", ".hidden", "a,b}c", "\xc3\xa9t\xc3\xa9", "\xff" };
        const uint8_t *nul = memchr(data, 0, size);
        char *pattern, *name;

        if (size > 8192)
                return 0;
        if (nul) {
                pattern = strndup((const char *) data, (size_t) (nul - data));
                name = strndup((const char *) nul + 1, size - (size_t) (nul - data) - 1);
                /* A base name never holds '/'; the daemon never asks. */
                for (char *p = name; *p; p++)
                        if (*p == '/')
                                *p = '_';
                check(pattern, name);
                free(name);
        } else {
                pattern = strndup((const char *) data, size);
                for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                        check(pattern, names[i]);
        }
        free(pattern);
        return 0;
}
