/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "eb-server.h"

#define EB_FILES_PATH "/org/execd/Execd1/files"
#define EB_FILES_INTERFACE "org.execd.Execd1.Files"
#define EB_FILE_INFO "(sstxxssu)"

/* Every value of a repeated query parameter, decoded as Go's url.Query does ('+' is a space),
 * in order; NULL with *bad set when one holds %00 or a broken escape. */
char **eb_query_values(SoupServerMessage *msg, const char *name, gboolean *bad);
/* The first value, or NULL. */
char *eb_query_value(SoupServerMessage *msg, const char *name, gboolean *bad);

/* A mode written as octal digits in a JSON integer (755 means 0755), or null/absent (0).
 * FALSE with *error set for anything else. */
gboolean eb_parse_mode(JsonNode *node, guint32 *ret, char **error);
/* A JSON string or null/absent (""). */
gboolean eb_parse_optional_string(JsonNode *node, const char **ret);

/* Read one FileInfo from m and write the API's object: 1, or 0 at the end of an array. */
int eb_write_file_info(sd_bus_message *m, EbJson *j);

/* The daemon's error as the files routes report it (404 is FILE_NOT_FOUND). */
void eb_reply_files_error(SoupServerMessage *msg, const sd_bus_error *e);

/* POST /files/upload: set up streaming once the headers are in. */
void eb_files_upload_begin(EbServer *s, SoupServerMessage *msg);
gboolean eb_files_is_upload(SoupServerMessage *msg);
