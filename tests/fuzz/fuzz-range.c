/* SPDX-License-Identifier: Apache-2.0 */
/* The Range header parser (and Content-Disposition, which quotes a file name into a header).
 * The first 8 bytes are the file size (little endian), the rest the header value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eb-http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        setenv("G_SLICE", "always-malloc", 1);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autofree char *header = NULL, *cd = NULL;
        guint64 file_size = 0, start = G_MAXUINT64, end = G_MAXUINT64;
        EbRangeResult r;

        if (size < 8 || size > 16 * 1024)
                return 0;
        memcpy(&file_size, data, 8);
        /* Small sizes are the interesting ones half of the time. */
        if (file_size & 1)
                file_size = (file_size >> 1) % 4096;
        header = g_strndup((const char *) data + 8, size - 8); /* stops at a NUL, as a header does */

        r = eb_range_parse(header, file_size, &start, &end);
        switch (r) {
        case EB_RANGE_OK:
                if (start > end || end >= file_size)
                        abort();
                break;
        case EB_RANGE_NONE:
        case EB_RANGE_MALFORMED:
        case EB_RANGE_UNSATISFIABLE:
                if (start != G_MAXUINT64 || end != G_MAXUINT64)
                        abort(); /* outputs are only written on success */
                break;
        default:
                abort();
        }

        cd = eb_content_disposition(header);
        /* The header value stays one printable ASCII line. */
        for (const char *p = cd; *p; p++)
                if ((guchar) *p < 0x20 || (guchar) *p >= 0x7f)
                        abort();
        return 0;
}
