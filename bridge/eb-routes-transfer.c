/* SPDX-License-Identifier: Apache-2.0 */
/* POST /files/upload and GET /files/download: file data streams between the HTTP connection
 * and a descriptor the daemon hands over (OpenWrite / OpenRead); the bridge never holds more
 * than a few hundred KiB of a file. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eb-conn.h"
#include "eb-files.h"
#include "eb-http.h"
#include "eb-multipart.h"
#include "eb-routes.h"

/* Read and write in pieces of this size: large enough for few syscalls, small enough that a
 * transfer costs the bridge almost no memory. */
#define TRANSFER_CHUNK (256 * 1024)
#define METADATA_MAX (64 * 1024)
#define UPLOAD_PAIRS_MAX 1000
#define UPLOAD_KEY "eb-upload"

static int write_all(int fd, const guint8 *data, gsize size) {
        while (size > 0) {
                ssize_t n = write(fd, data, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                data += n;
                size -= (gsize) n;
        }
        return 0;
}

/* ---- GET /files/download ---- */

/* libsoup keeps reading or writing one connection for as long as its socket is ready, so a
 * fast transfer would starve every other client; after this many bytes a transfer lets the
 * main loop run once. */
#define TRANSFER_SLICE (1024 * 1024)

typedef struct {
        SoupServerMessage *msg;
        int fd;
        guint64 offset, remaining;
        guint64 since_yield;
        guint resume_id;
} Download;

static void download_free(Download *d) {
        g_clear_handle_id(&d->resume_id, g_source_remove);
        if (d->fd >= 0)
                close(d->fd);
        g_free(d);
}

static void download_next(SoupServerMessage *msg, Download *d) {
        SoupMessageBody *body = soup_server_message_get_response_body(msg);
        gsize want = (gsize) MIN(d->remaining, (guint64) TRANSFER_CHUNK);
        guint8 *buf;
        ssize_t n;

        if (d->remaining == 0) {
                soup_message_body_complete(body);
                return;
        }
        buf = g_malloc(want);
        do
                n = pread(d->fd, buf, want, (off_t) d->offset);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
                /* The headers promised more: cutting the connection is the only honest answer. */
                g_free(buf);
                g_warning("download stopped: %s", n < 0 ? g_strerror(errno) : "the file shrank");
                if (eb_conn_message_socket(msg))
                        g_socket_shutdown(eb_conn_message_socket(msg), TRUE, TRUE, NULL);
                return;
        }
        d->offset += (guint64) n;
        d->remaining -= (guint64) n;
        soup_message_body_append_take(body, buf, (gsize) n);
}

static gboolean download_resume(gpointer user_data) {
        Download *d = user_data;

        d->resume_id = 0;
        download_next(d->msg, d);
        soup_server_message_unpause(d->msg);
        return G_SOURCE_REMOVE;
}

static void on_download_wrote_chunk(SoupServerMessage *msg, gpointer user_data) {
        Download *d = user_data;

        d->since_yield += TRANSFER_CHUNK;
        if (d->since_yield < TRANSFER_SLICE || d->remaining == 0) {
                download_next(msg, d);
                return;
        }
        /* With no data queued libsoup pauses the message itself; the idle refills it. */
        d->since_yield = 0;
        d->resume_id = g_idle_add(download_resume, d);
}

static void on_download_finished(SoupServerMessage *msg, gpointer user_data) {
        Download *d = user_data;

        g_clear_handle_id(&d->resume_id, g_source_remove);
}

static void reply_range_error(SoupServerMessage *msg, guint64 size, const char *message) {
        g_autofree char *range = g_strdup_printf("bytes */%" G_GUINT64_FORMAT, size);

        soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Content-Range", range);
        eb_reply_error(msg, EB_API_EXECD, 416, "RANGE_NOT_SATISFIABLE", message);
}

static int on_open_read_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        SoupServerMessage *msg = req->msg;
        SoupMessageHeaders *in = soup_server_message_get_request_headers(msg);
        SoupMessageHeaders *out = soup_server_message_get_response_headers(msg);
        const char *path, *type, *owner, *group, *since;
        g_autoptr(GDateTime) mtime = NULL;
        g_autofree char *last_modified = NULL, *disposition = NULL;
        uint64_t size, start = 0, end = 0;
        int64_t mtime_ns, ctime_ns;
        uint32_t mode;
        EbRangeResult range;
        Download *d;
        int fd, k;

        if (e) {
                eb_reply_files_error(msg, e);
                eb_request_finish(req);
                return 0;
        }
        k = sd_bus_message_read(reply, "h", &fd);
        if (k >= 0)
                k = sd_bus_message_read(reply, EB_FILE_INFO, &path, &type, &size, &mtime_ns, &ctime_ns, &owner,
                                        &group, &mode);
        if (k >= 0)
                k = fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (k < 0) {
                g_autofree char *text = g_strdup_printf("cannot open the file: %s", g_strerror(errno));
                eb_reply_error(msg, EB_API_EXECD, 500, "RUNTIME_ERROR", text);
                eb_request_finish(req);
                return 0;
        }
        d = g_new0(Download, 1);
        d->msg = msg;
        d->fd = fd;
        g_object_set_data_full(G_OBJECT(msg), "eb-download", d, (GDestroyNotify) download_free);

        mtime = g_date_time_new_from_unix_utc(mtime_ns / 1000000000);
        last_modified = mtime ? soup_date_time_to_string(mtime, SOUP_DATE_HTTP) : NULL;
        disposition = eb_content_disposition(strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
        soup_message_headers_replace(out, "Content-Disposition", disposition);
        soup_message_headers_replace(out, "Accept-Ranges", "bytes");
        if (last_modified)
                soup_message_headers_replace(out, "Last-Modified", last_modified);

        since = soup_message_headers_get_one(in, "If-Modified-Since");
        /* As Go's ServeContent: a satisfied If-Modified-Since wins over Range. */
        if (since && mtime) {
                g_autoptr(GDateTime) t = soup_date_time_new_from_http_string(since);
                if (t && g_date_time_to_unix(mtime) <= g_date_time_to_unix(t)) {
                        soup_server_message_set_status(msg, SOUP_STATUS_NOT_MODIFIED, NULL);
                        eb_request_finish(req);
                        return 0;
                }
        }

        range = eb_range_parse(soup_message_headers_get_one(in, "Range"), size, &start, &end);
        if (range == EB_RANGE_MALFORMED || range == EB_RANGE_UNSATISFIABLE) {
                reply_range_error(msg, size,
                                  range == EB_RANGE_MALFORMED ? "invalid range: malformed Range header"
                                                              : "invalid range: failed to overlap");
                eb_request_finish(req);
                return 0;
        }
        if (range == EB_RANGE_OK) {
                soup_server_message_set_status(msg, SOUP_STATUS_PARTIAL_CONTENT, NULL);
                soup_message_headers_set_content_range(out, (goffset) start, (goffset) end, (goffset) size);
                d->offset = start;
                d->remaining = end - start + 1;
        } else {
                soup_server_message_set_status(msg, SOUP_STATUS_OK, NULL);
                d->remaining = size;
        }
        soup_message_headers_replace(out, "Content-Type", "application/octet-stream");
        soup_message_headers_set_content_length(out, (goffset) d->remaining);
        soup_message_body_set_accumulate(soup_server_message_get_response_body(msg), FALSE);
        g_signal_connect(msg, "wrote-chunk", G_CALLBACK(on_download_wrote_chunk), d);
        g_signal_connect(msg, "finished", G_CALLBACK(on_download_finished), d);
        download_next(msg, d);
        eb_request_finish(req);
        return 0;
}

void eb_route_files_download(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        g_autoptr(EbRequest) req = NULL;
        g_autofree char *path = NULL;
        gboolean bad;

        path = eb_query_value(msg, "path", &bad);
        if (bad) {
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_REQUEST_BODY",
                               "invalid query string: a value is not UTF-8, holds a NUL byte or a broken %-escape");
                return;
        }
        if (!path || !*path) {
                eb_reply_error(msg, EB_API_EXECD, 400, "MISSING_QUERY", "missing query parameter 'path'");
                return;
        }
        req = eb_request_new(s, msg);
        eb_request_call(req, EB_FILES_PATH, EB_FILES_INTERFACE, "OpenRead", on_open_read_reply, "s", path);
}

/* ---- POST /files/upload ---- */

/* One metadata/file pair. The file's bytes go to the daemon's descriptor once OpenWrite has
 * answered; before that they wait in `pending` (at most one received chunk, because the body
 * is paused while OpenWrite runs), or, when the file part came before its metadata, in an
 * unnamed spool file. */
typedef struct {
        char *path;
        guint32 mode;
        char *owner, *group;
        gboolean has_metadata, opening;
        int fd;       /* the daemon's uncommitted file */
        char *token;
        int spool_fd; /* file data that arrived before its metadata */
        GByteArray *pending;
} UploadItem;

typedef enum { PART_NONE, PART_METADATA, PART_FILE, PART_OTHER } PartKind;

typedef struct {
        EbServer *server;
        SoupServerMessage *msg;
        EbMultipart *mp;
        GPtrArray *items; /* UploadItem* */
        guint n_metadata, n_files;
        guint64 received, max; /* file bytes so far; the cap (0: none) */
        PartKind part;
        UploadItem *current; /* the file part being received */
        GByteArray *metadata;
        guint opening;      /* OpenWrite calls in flight */
        gboolean paused;    /* the body is paused until those answer */
        guint64 since_yield;
        guint resume_id;    /* the body is paused to let other clients run */
        EbRequest *finish;  /* the body is complete: reply once nothing is in flight */
        guint committing;   /* index of the next item to commit */
        /* The first error wins; the rest of the body is then read and dropped. */
        guint status;
        char *code, *message;
        gboolean gone;
} Upload;

static void item_free(UploadItem *it) {
        if (it->fd >= 0)
                close(it->fd);
        if (it->spool_fd >= 0)
                close(it->spool_fd);
        g_byte_array_unref(it->pending);
        g_free(it->token);
        g_free(it->path);
        g_free(it->owner);
        g_free(it->group);
        g_free(it);
}

static UploadItem *item_at(Upload *u, guint i) {
        while (u->items->len <= i) {
                UploadItem *it = g_new0(UploadItem, 1);
                it->fd = it->spool_fd = -1;
                it->pending = g_byte_array_new();
                g_ptr_array_add(u->items, it);
        }
        return g_ptr_array_index(u->items, i);
}

static void upload_fail(Upload *u, guint status, const char *code, const char *message) {
        if (u->status)
                return;
        u->status = status;
        u->code = g_strdup(code);
        u->message = g_strdup(message);
}

/* Discard every uncommitted write from the index on: the daemon then drops the new files. */
static void abort_from(Upload *u, guint from) {
        sd_bus *bus = eb_server_bus(u->server);

        for (guint i = from; i < u->items->len; i++) {
                UploadItem *it = g_ptr_array_index(u->items, i);
                if (it->token && bus)
                        (void) sd_bus_call_method_async(bus, NULL, EB_BUS_NAME, EB_FILES_PATH, EB_FILES_INTERFACE,
                                                        "AbortWrite", NULL, NULL, "s", it->token);
                g_clear_pointer(&it->token, g_free);
        }
}

static void upload_free(Upload *u) {
        g_clear_handle_id(&u->resume_id, g_source_remove);
        abort_from(u, 0);
        eb_multipart_free(u->mp);
        g_ptr_array_unref(u->items);
        if (u->metadata)
                g_byte_array_unref(u->metadata);
        g_free(u->code);
        g_free(u->message);
        g_free(u);
}

static void item_write_failed(Upload *u, int err) {
        g_autofree char *text = g_strdup_printf("error writing file: %s", g_strerror(err));
        upload_fail(u, 500, "RUNTIME_ERROR", text);
}

static void item_flush_to(Upload *u, UploadItem *it, int sink) {
        int k;

        if (u->status || sink < 0 || it->pending->len == 0)
                return;
        k = write_all(sink, it->pending->data, it->pending->len);
        g_byte_array_set_size(it->pending, 0);
        if (k < 0)
                item_write_failed(u, -k);
}

/* Move what is pending to wherever the item's data goes now: the daemon's descriptor, the
 * spool while the metadata is unknown, or nowhere yet while OpenWrite runs. */
static void item_flush(Upload *u, UploadItem *it) {
        item_flush_to(u, it, it->fd >= 0 ? it->fd : !it->has_metadata ? it->spool_fd : -1);
}

static int open_spool(void) {
        const char *dir = g_get_tmp_dir();
        char *path;
        int fd;

        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                return fd;
        path = g_build_filename(dir, "execd-upload-XXXXXX", NULL);
        fd = g_mkstemp_full(path, O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
                unlink(path);
        g_free(path);
        return fd;
}

static int on_open_write_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);

static void open_item(Upload *u, UploadItem *it) {
        g_autoptr(EbRequest) req = eb_request_new(u->server, u->msg);

        /* eb_request_new paused the body: nothing more arrives until OpenWrite answers. */
        u->paused = TRUE;
        it->opening = TRUE;
        u->opening++;
        req->data = it;
        req->finish_call_when_gone = TRUE; /* the new file must be aborted even then */
        if (!eb_request_call(req, EB_FILES_PATH, EB_FILES_INTERFACE, "OpenWrite", on_open_write_reply, "suss",
                             it->path, it->mode, it->owner ? it->owner : "", it->group ? it->group : "")) {
                it->opening = FALSE;
                u->opening--;
                upload_fail(u, 503, "SERVICE_UNAVAILABLE", "the execd daemon is not available");
        }
}

static void upload_settle(Upload *u);

/* The file part came before its metadata: its bytes wait in the spool. */
static void copy_spool(Upload *u, UploadItem *it) {
        off_t off = 0;
        struct stat st;

        item_flush_to(u, it, it->spool_fd);
        if (fstat(it->spool_fd, &st) < 0) {
                item_write_failed(u, errno);
                st.st_size = 0;
        }
        while (!u->status && off < st.st_size) {
                ssize_t n = copy_file_range(it->spool_fd, &off, it->fd, NULL, (size_t) (st.st_size - off), 0);
                if (n > 0)
                        continue;
                if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP)) {
                        /* No in-kernel copy between these filesystems: read and write. */
                        guint8 buf[65536];
                        ssize_t r;
                        while (!u->status && (r = pread(it->spool_fd, buf, sizeof buf, off)) > 0) {
                                int k = write_all(it->fd, buf, (gsize) r);
                                if (k < 0)
                                        item_write_failed(u, -k);
                                off += r;
                        }
                        break;
                }
                item_write_failed(u, n < 0 ? errno : EIO);
        }
        close(it->spool_fd);
        it->spool_fd = -1;
}

static int on_open_write_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        Upload *u = g_object_get_data(G_OBJECT(req->msg), UPLOAD_KEY);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        UploadItem *it = req->data;
        const char *token;
        int fd, k;

        req->data = NULL;
        if (!u) {
                /* The client left: the upload is gone, so is the item; just drop the new file. */
                if (!e && sd_bus_message_read(reply, "hs", &fd, &token) >= 0 && eb_server_bus(req->server))
                        (void) sd_bus_call_method_async(eb_server_bus(req->server), NULL, EB_BUS_NAME, EB_FILES_PATH,
                                                        EB_FILES_INTERFACE, "AbortWrite", NULL, NULL, "s", token);
                return 0;
        }
        it->opening = FALSE;
        u->opening--;
        if (e) {
                const EbErrorMapping *map = eb_error_lookup(e->name);
                guint status = eb_error_status(map, EB_API_EXECD);
                const char *code = status == 404 ? "FILE_NOT_FOUND" : map->code;
                /* The daemon refused what the metadata asked for (an unknown owner, a bad mode). */
                if (sd_bus_error_has_name(e, "org.execd.Execd1.Error.InvalidArgument"))
                        code = "INVALID_FILE_METADATA";
                upload_fail(u, status, code, e->message ? e->message : e->name);
        } else {
                k = sd_bus_message_read(reply, "hs", &fd, &token);
                if (k >= 0)
                        it->token = g_strdup(token);
                if (k >= 0)
                        k = it->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (k < 0)
                        item_write_failed(u, errno ? errno : EIO);
        }
        if (it->fd >= 0 && it->spool_fd >= 0 && !u->status)
                copy_spool(u, it);
        item_flush(u, it);
        upload_settle(u);
        return 0;
}

static gboolean parse_metadata(Upload *u, UploadItem *it) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        g_autoptr(GError) error = NULL;
        g_autofree char *problem = NULL;
        const char *path, *owner, *group;
        JsonNode *root;
        JsonObject *o;

        if (eb_json_text_has_nul_escape((const char *) u->metadata->data, u->metadata->len))
                problem = g_strdup("invalid metadata format. strings must not contain NUL characters or unpaired surrogates");
        else if (eb_json_text_has_trailing_value((const char *) u->metadata->data, u->metadata->len))
                problem = g_strdup("invalid metadata format. invalid character after top-level value");
        else if (!json_parser_load_from_data(parser, (const char *) u->metadata->data, (gssize) u->metadata->len, &error))
                problem = g_strdup_printf("invalid metadata format. %s", error->message);
        else if (!(root = json_parser_get_root(parser)) || !JSON_NODE_HOLDS_OBJECT(root))
                problem = g_strdup("invalid metadata format. the metadata must be a JSON object");
        else {
                o = json_node_get_object(root);
                if (!eb_parse_optional_string(eb_json_object_get_ci(o, "path"), &path) ||
                    !eb_parse_optional_string(eb_json_object_get_ci(o, "owner"), &owner) ||
                    !eb_parse_optional_string(eb_json_object_get_ci(o, "group"), &group))
                        problem = g_strdup("invalid metadata format. path, owner and group must be strings");
                else if (!*path)
                        problem = g_strdup("metadata path is empty");
                else if (!eb_parse_mode(eb_json_object_get_ci(o, "mode"), &it->mode, &problem))
                        ;
                else {
                        it->path = g_strdup(path);
                        it->owner = g_strdup(owner);
                        it->group = g_strdup(group);
                }
        }
        if (problem) {
                upload_fail(u, 400, "INVALID_FILE_METADATA", problem);
                return FALSE;
        }
        it->has_metadata = TRUE;
        return TRUE;
}

static gboolean on_part_begin(gpointer data, const char *name, const char *filename, const char *content_type,
                              GError **error) {
        Upload *u = data;

        if (g_strcmp0(name, "metadata") == 0) {
                u->part = PART_METADATA;
                g_byte_array_set_size(u->metadata, 0);
        } else if (g_strcmp0(name, "file") == 0) {
                u->part = PART_FILE;
                if (u->n_files >= UPLOAD_PAIRS_MAX) {
                        upload_fail(u, 400, "INVALID_FILE", "too many files in one request (at most 1000)");
                        u->part = PART_OTHER;
                        return TRUE;
                }
                u->current = item_at(u, u->n_files++);
                if (!u->current->has_metadata && !u->status) {
                        u->current->spool_fd = open_spool();
                        if (u->current->spool_fd < 0)
                                item_write_failed(u, errno);
                }
        } else
                u->part = PART_OTHER;
        return TRUE;
}

static gboolean on_part_data(gpointer data, const guint8 *buf, gsize len, GError **error) {
        Upload *u = data;
        UploadItem *it = u->current;

        if (u->status)
                return TRUE;
        if (u->part == PART_METADATA) {
                if (u->metadata->len + len > METADATA_MAX)
                        upload_fail(u, 400, "INVALID_FILE_METADATA", "invalid metadata format. larger than 64 KiB");
                else
                        g_byte_array_append(u->metadata, buf, (guint) len);
        } else if (u->part == PART_FILE) {
                u->received += len;
                if (u->max && u->received > u->max) {
                        /* Everything written so far is aborted once the body is in. */
                        g_autofree char *text = g_strdup_printf("the upload is larger than %" G_GUINT64_FORMAT " bytes",
                                                                u->max);
                        g_byte_array_set_size(it->pending, 0);
                        upload_fail(u, 413, "REQUEST_TOO_LARGE", text);
                        return TRUE;
                }
                g_byte_array_append(it->pending, buf, (guint) len);
                if (it->pending->len >= TRANSFER_CHUNK)
                        item_flush(u, it);
        }
        return TRUE;
}

static gboolean on_part_end(gpointer data, GError **error) {
        Upload *u = data;

        if (u->part == PART_METADATA) {
                UploadItem *it;
                if (u->n_metadata >= UPLOAD_PAIRS_MAX) {
                        upload_fail(u, 400, "INVALID_FILE", "too many files in one request (at most 1000)");
                        return TRUE;
                }
                it = item_at(u, u->n_metadata++);
                if (!u->status && parse_metadata(u, it))
                        open_item(u, it);
        } else if (u->part == PART_FILE)
                item_flush(u, u->current);
        u->part = PART_NONE;
        return TRUE;
}

static const EbMultipartCallbacks multipart_callbacks = {
        .part_begin = on_part_begin,
        .part_data = on_part_data,
        .part_end = on_part_end,
};

static gboolean upload_resume(gpointer user_data) {
        Upload *u = user_data;

        u->resume_id = 0;
        upload_settle(u);
        return G_SOURCE_REMOVE;
}

static void on_upload_got_chunk(SoupServerMessage *msg, GBytes *chunk, gpointer user_data) {
        Upload *u = user_data;
        g_autoptr(GError) error = NULL;
        gsize len;
        const guint8 *data = g_bytes_get_data(chunk, &len);

        u->since_yield += len;
        if (u->since_yield >= TRANSFER_SLICE && !u->resume_id) {
                u->since_yield = 0;
                u->paused = TRUE;
                soup_server_message_pause(msg);
                u->resume_id = g_idle_add(upload_resume, u);
        }
        if (!u->mp || eb_multipart_done(u->mp))
                return;
        if (!eb_multipart_feed(u->mp, data, len, &error)) {
                g_autofree char *text = g_strdup_printf("multipart form is empty: %s", error->message);
                upload_fail(u, 400, "INVALID_FILE", text);
                g_clear_pointer(&u->mp, eb_multipart_free);
        }
}

static void on_upload_finished(SoupServerMessage *msg, gpointer user_data) {
        /* Finished before the reply (the client left, or the connection broke): drop it all. */
        g_object_set_data(G_OBJECT(msg), UPLOAD_KEY, NULL);
}

gboolean eb_files_is_upload(SoupServerMessage *msg) {
        return strcmp(soup_server_message_get_method(msg), "POST") == 0 &&
               strcmp(g_uri_get_path(soup_server_message_get_uri(msg)), "/files/upload") == 0;
}

void eb_files_upload_begin(EbServer *s, SoupServerMessage *msg) {
        const char *type = soup_message_headers_get_one(soup_server_message_get_request_headers(msg), "Content-Type");
        g_autofree char *boundary = type ? eb_multipart_boundary(type) : NULL;
        Upload *u = g_new0(Upload, 1);

        u->server = s;
        u->msg = msg;
        u->max = eb_server_max_upload(s);
        u->items = g_ptr_array_new_with_free_func((GDestroyNotify) item_free);
        u->metadata = g_byte_array_new();
        if (boundary)
                u->mp = eb_multipart_new(boundary, &multipart_callbacks, u);
        else
                upload_fail(u, 400, "INVALID_FILE", "multipart form is empty: the body is not multipart/form-data");
        g_object_set_data_full(G_OBJECT(msg), UPLOAD_KEY, u, (GDestroyNotify) upload_free);
        soup_message_body_set_accumulate(soup_server_message_get_request_body(msg), FALSE);
        g_signal_connect(msg, "got-chunk", G_CALLBACK(on_upload_got_chunk), u);
        g_signal_connect(msg, "finished", G_CALLBACK(on_upload_finished), NULL);
}

static int on_commit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error);

static void commit_next(Upload *u) {
        UploadItem *it;

        if (u->committing >= u->items->len) {
                eb_reply_empty(u->msg, SOUP_STATUS_OK);
                eb_request_finish(u->finish);
                g_clear_pointer(&u->finish, eb_request_unref);
                return;
        }
        it = g_ptr_array_index(u->items, u->committing);
        /* Our copy of the descriptor is done with; the daemon flushes its own. */
        if (it->fd >= 0) {
                close(it->fd);
                it->fd = -1;
        }
        {
                g_autoptr(EbRequest) req = eb_request_ref(u->finish);
                req->finish_call_when_gone = TRUE;
                eb_request_call(req, EB_FILES_PATH, EB_FILES_INTERFACE, "CommitWrite", on_commit_reply, "s", it->token);
        }
}

static int on_commit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        g_autoptr(EbRequest) req = eb_request_take_reply(userdata);
        Upload *u = g_object_get_data(G_OBJECT(req->msg), UPLOAD_KEY);
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        UploadItem *it;

        if (!u)
                return 0;
        it = g_ptr_array_index(u->items, u->committing);
        g_clear_pointer(&it->token, g_free); /* spent either way */
        u->committing++;
        if (e) {
                abort_from(u, u->committing);
                eb_reply_files_error(u->msg, e);
                eb_request_finish(u->finish);
                g_clear_pointer(&u->finish, eb_request_unref);
                return 0;
        }
        commit_next(u);
        return 0;
}

/* Called whenever something completes: resume the body, or, once it is all in and every
 * OpenWrite has answered, validate and commit. */
static void upload_settle(Upload *u) {
        if (u->opening > 0 || u->resume_id)
                return;
        if (!u->finish) {
                if (u->paused) {
                        u->paused = FALSE;
                        soup_server_message_unpause(u->msg);
                }
                return;
        }
        if (!u->status) {
                if (!u->mp || !eb_multipart_finish(u->mp, NULL))
                        upload_fail(u, 400, "INVALID_FILE", "multipart form is empty");
                else if (u->n_metadata == 0)
                        upload_fail(u, 400, "INVALID_FILE_METADATA", "metadata file is missing");
                else if (u->n_files == 0)
                        upload_fail(u, 400, "INVALID_FILE_CONTENT", "file is missing");
                else if (u->n_metadata != u->n_files) {
                        g_autofree char *text = g_strdup_printf("metadata and file count mismatch: %u vs %u",
                                                                u->n_metadata, u->n_files);
                        upload_fail(u, 400, "INVALID_FILE", text);
                }
        }
        if (u->status) {
                abort_from(u, 0);
                eb_reply_error(u->msg, EB_API_EXECD, u->status, u->code, u->message);
                eb_request_finish(u->finish);
                g_clear_pointer(&u->finish, eb_request_unref);
                return;
        }
        commit_next(u);
}

void eb_route_files_upload(EbServer *s, SoupServerMessage *msg, const char *param, GHashTable *query) {
        Upload *u = g_object_get_data(G_OBJECT(msg), UPLOAD_KEY);

        if (!u) {
                eb_reply_error(msg, EB_API_EXECD, 400, "INVALID_FILE", "multipart form is empty");
                return;
        }
        /* The whole body is in: every file's bytes are written (or failed). */
        for (guint i = 0; i < u->items->len; i++)
                item_flush(u, g_ptr_array_index(u->items, i));
        u->finish = eb_request_new(s, msg);
        upload_settle(u);
}
