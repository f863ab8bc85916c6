/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <string.h>
#include <sys/stat.h>

#include "errors.h"
#include "execd.h"
#include "files.h"
#include "log.h"
#include "macro.h"
#include "polkit.h"

/* Every handler: read and validate the arguments, take the caller's identity, act, reply. */

static void caller_leavep(FileCaller *c) {
        files_caller_leave(c);
}

static bool ends_with_dot(const char *s) {
        size_t n = strlen(s);

        while (n > 1 && s[n - 1] == '/')
                n--;
        return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.') ||
               (n >= 2 && s[n - 1] == '.' && s[n - 2] == '/') ||
               (n >= 3 && s[n - 1] == '.' && s[n - 2] == '.' && s[n - 3] == '/');
}

/* Read and expand an "as" of paths; for_removal also refuses "/" and paths ending in "." or
 * "..", as rm -rf does: "x/." would empty x through a name that looks harmless. */
static int read_paths(sd_bus_message *m, bool for_removal, char ***ret, sd_bus_error *error) {
        _cleanup_(strv_freep) char **raw = NULL, **out = NULL;
        size_t n = 0;
        int k;

        k = sd_bus_message_read_strv(m, &raw);
        if (k < 0)
                return k;
        while (raw && raw[n])
                n++;
        out = calloc(n + 1, sizeof *out);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (for_removal && ends_with_dot(raw[i]))
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH,
                                                 "refusing to remove '.' or '..' directory: %s", raw[i]);
                k = files_expand(raw[i], &out[i], error);
                if (k < 0)
                        return k;
                if (for_removal && strcmp(out[i], "/") == 0)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH, "refusing to remove /");
        }
        *ret = TAKE_PTR(out);
        return 0;
}

static int check_mode(uint32_t mode, sd_bus_error *error) {
        if (mode > 07777)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "invalid mode %#o: only permission bits (at most 07777) may be set", mode);
        return 0;
}

static int method_stat(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(strv_freep) char **paths = NULL;
        int k;

        k = read_paths(m, false, &paths, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_return(m, &reply);
        if (k < 0)
                return k;
        k = files_stat(reply, paths, error);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

/* List(su) and Search(ss): a root path and one more argument, answered with FileInfos. */
static int method_walk(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(freep) char *path = NULL;
        bool search = strcmp(sd_bus_message_get_member(m), "Search") == 0;
        const char *raw, *pattern = NULL;
        uint32_t depth = 0;
        int k;

        k = search ? sd_bus_message_read(m, "ss", &raw, &pattern) : sd_bus_message_read(m, "su", &raw, &depth);
        if (k < 0)
                return k;
        k = files_expand(raw, &path, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_return(m, &reply);
        if (k < 0)
                return k;
        k = search ? files_search(reply, path, pattern, error) : files_list(reply, path, depth, error);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

/* (path, mode, owner, group) entries of MakeDirectories and SetPermissions. */
typedef struct ModeEntry {
        char *path;
        uint32_t mode;
        Ownership own;
} ModeEntry;

static void mode_entries_free(ModeEntry *e, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(e[i].path);
        free(e);
}

static int read_mode_entries(sd_bus_message *m, ModeEntry **ret, size_t *ret_n, sd_bus_error *error) {
        ModeEntry *e = NULL;
        size_t n = 0;
        const char *path, *owner, *group;
        uint32_t mode;
        int k;

        k = sd_bus_message_enter_container(m, 'a', "(suss)");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_read(m, "(suss)", &path, &mode, &owner, &group)) > 0) {
                ModeEntry *grown = realloc(e, (n + 1) * sizeof *e);
                if (!grown) {
                        k = -ENOMEM;
                        break;
                }
                e = grown;
                e[n] = (ModeEntry) { .mode = mode };
                n++;
                k = check_mode(mode, error);
                if (k >= 0)
                        k = files_expand(path, &e[n - 1].path, error);
                if (k >= 0)
                        k = files_parse_ownership(owner, group, &e[n - 1].own, error);
                if (k < 0)
                        break;
        }
        if (k >= 0)
                k = sd_bus_message_exit_container(m);
        if (k < 0) {
                mode_entries_free(e, n);
                return k;
        }
        *ret = e;
        *ret_n = n;
        return 0;
}

static int method_make_directories(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        ModeEntry *e = NULL;
        size_t n = 0;
        int k;

        k = read_mode_entries(m, &e, &n, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        for (size_t i = 0; k >= 0 && i < n; i++) {
                k = files_mkdir_p(e[i].path, 0777, error);
                if (k >= 0)
                        k = files_apply(e[i].path, e[i].mode, &e[i].own, error);
        }
        mode_entries_free(e, n);
        if (k < 0)
                return k;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_set_permissions(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        ModeEntry *e = NULL;
        size_t n = 0;
        int k;

        k = read_mode_entries(m, &e, &n, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        /* Every path must exist before anything changes. */
        for (size_t i = 0; k >= 0 && i < n; i++) {
                struct stat st;
                if (stat(e[i].path, &st) < 0)
                        k = files_error(error, errno, "error changing permissions for %s", e[i].path);
        }
        for (size_t i = 0; k >= 0 && i < n; i++)
                k = files_apply(e[i].path, e[i].mode, &e[i].own, error);
        mode_entries_free(e, n);
        if (k < 0)
                return k;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_move(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(strv_freep) char **pairs = NULL; /* src, dest, src, dest, ..., NULL */
        size_t n = 0;
        const char *src, *dest;
        int k;

        k = sd_bus_message_enter_container(m, 'a', "(ss)");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_read(m, "(ss)", &src, &dest)) > 0) {
                char **grown = realloc(pairs, (n + 3) * sizeof *pairs);
                if (!grown)
                        return -ENOMEM;
                pairs = grown;
                pairs[n] = pairs[n + 1] = pairs[n + 2] = NULL;
                k = files_expand(src, &pairs[n], error);
                if (k >= 0)
                        k = files_expand(dest, &pairs[n + 1], error);
                n += 2;
                if (k < 0)
                        return k;
        }
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        for (size_t i = 0; k >= 0 && i < n; i += 2)
                k = files_move(pairs[i], pairs[i + 1], error);
        if (k < 0)
                return k;
        return sd_bus_reply_method_return(m, NULL);
}

/* RemoveFiles and RemoveDirectories: the same walk over the paths, one removal each. */
static int method_remove(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(strv_freep) char **paths = NULL;
        bool trees = strcmp(sd_bus_message_get_member(m), "RemoveDirectories") == 0;
        int k;

        k = read_paths(m, trees, &paths, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        for (size_t i = 0; k >= 0 && paths[i]; i++)
                k = trees ? files_remove_tree(paths[i], error) : files_remove_file(paths[i], error);
        if (k < 0)
                return k;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_replace(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(strv_freep) char **items = NULL; /* path, old, new, ..., NULL */
        size_t n = 0;
        const char *path, *old, *new_text;
        int k;

        k = sd_bus_message_enter_container(m, 'a', "(sss)");
        if (k < 0)
                return k;
        while ((k = sd_bus_message_read(m, "(sss)", &path, &old, &new_text)) > 0) {
                char **grown = realloc(items, (n + 4) * sizeof *items);
                if (!grown)
                        return -ENOMEM;
                items = grown;
                /* Filled in order, so the list is NULL-terminated (and freed) at every return. */
                items[n] = items[n + 1] = items[n + 2] = items[n + 3] = NULL;
                k = files_expand(path, &items[n], error);
                if (k < 0)
                        return k;
                items[n + 1] = strdup(old);
                if (!items[n + 1])
                        return -ENOMEM;
                items[n + 2] = strdup(new_text);
                if (!items[n + 2])
                        return -ENOMEM;
                n += 3;
                if (!*old)
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                                 "old content must not be empty (%s)", path);
        }
        if (k < 0)
                return k;
        k = sd_bus_message_exit_container(m);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        /* Check every entry before touching any file. */
        for (size_t i = 0; i < n; i += 3) {
                struct stat st;
                if (stat(items[i], &st) < 0)
                        return files_error(error, errno, "file not found: %s", items[i]);
                if (S_ISDIR(st.st_mode))
                        return sd_bus_error_setf(error, EXECD_ERROR_IS_DIRECTORY, "path is a directory: %s", items[i]);
                if (!S_ISREG(st.st_mode))
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "not a regular file: %s", items[i]);
                if (st.st_size > FILES_REPLACE_MAX)
                        return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED, "%s is larger than %d MiB",
                                                 items[i], FILES_REPLACE_MAX / (1024 * 1024));
        }
        k = sd_bus_message_new_method_return(m, &reply);
        if (k >= 0)
                k = sd_bus_message_open_container(reply, 'a', "u");
        for (size_t i = 0; k >= 0 && i < n; i += 3) {
                uint32_t count = 0;
                k = files_replace(userdata, sd_bus_message_get_sender(m), items[i], items[i + 1], items[i + 2],
                                  &count, error);
                if (k >= 0)
                        k = sd_bus_message_append(reply, "u", count);
        }
        if (k >= 0)
                k = sd_bus_message_close_container(reply);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int open_for_read(const char *path, int *ret_fd, struct stat *ret_st, sd_bus_error *error) {
        _cleanup_(closep) int fd = -1;

        /* O_NONBLOCK: opening a fifo must not hang the daemon; it is refused below anyway. */
        fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return files_error(error, errno, "open %s", path);
        if (fstat(fd, ret_st) < 0)
                return files_error(error, errno, "fstat %s", path);
        if (S_ISDIR(ret_st->st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_IS_DIRECTORY, "path is a directory: %s", path);
        if (!S_ISREG(ret_st->st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "not a regular file: %s", path);
        if (fcntl(fd, F_SETFL, O_RDONLY) < 0)
                return files_error(error, errno, "fcntl %s", path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int method_open_read(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(freep) char *path = NULL;
        _cleanup_(closep) int fd = -1;
        const char *raw;
        struct stat st;
        int k;

        k = sd_bus_message_read(m, "s", &raw);
        if (k < 0)
                return k;
        k = files_expand(raw, &path, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        k = open_for_read(path, &fd, &st, error);
        if (k < 0)
                return k;
        k = sd_bus_message_new_method_return(m, &reply);
        if (k >= 0)
                k = sd_bus_message_append(reply, "h", fd);
        if (k >= 0)
                k = files_append_info(reply, path, &st);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_read_bytes(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(freep) char *path = NULL, *buf = NULL;
        _cleanup_(closep) int fd = -1;
        const char *raw;
        uint64_t offset, length;
        size_t have = 0;
        struct stat st;
        int k;

        k = sd_bus_message_read(m, "stt", &raw, &offset, &length);
        if (k < 0)
                return k;
        k = files_expand(raw, &path, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        k = open_for_read(path, &fd, &st, error);
        if (k < 0)
                return k;
        /* Past the end is simply nothing; pread would refuse offsets near INT64_MAX. */
        length = MIN(length, (uint64_t) FILES_INLINE_MAX);
        if (offset >= (uint64_t) st.st_size)
                length = 0;
        buf = malloc(length ? length : 1);
        if (!buf)
                return -ENOMEM;
        while (have < length) {
                ssize_t n = pread(fd, buf + have, length - have, (off_t) (offset + have));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return files_error(error, errno, "read %s", path);
                }
                if (n == 0)
                        break;
                have += (size_t) n;
        }
        {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                k = sd_bus_message_new_method_return(m, &reply);
                if (k >= 0)
                        k = sd_bus_message_append_array(reply, 'y', buf, have);
                if (k < 0)
                        return k;
                return sd_bus_send(NULL, reply, NULL);
        }
}

static int read_ownership_args(sd_bus_message *m, uint32_t *mode, Ownership *own, sd_bus_error *error) {
        const char *owner, *group;
        int k;

        k = sd_bus_message_read(m, "uss", mode, &owner, &group);
        if (k < 0)
                return k;
        k = check_mode(*mode, error);
        if (k < 0)
                return k;
        return files_parse_ownership(owner, group, own, error);
}

static int method_open_write(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(freep) char *path = NULL;
        PendingWrite *w;
        const char *raw;
        uint32_t mode;
        Ownership own;
        int k;

        k = sd_bus_message_read(m, "s", &raw);
        if (k < 0)
                return k;
        k = read_ownership_args(m, &mode, &own, error);
        if (k < 0)
                return k;
        k = files_expand(raw, &path, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        k = write_open(userdata, sd_bus_message_get_sender(m), path, mode, &own, &w, error);
        if (k < 0)
                return k;
        w->elevated = caller.elevated;
        k = sd_bus_reply_method_return(m, "hs", w->fd, w->token);
        if (k < 0)
                write_free(w);
        return k;
}

/* fsync of a large file takes as long as the disk needs; in the main loop it would stall
 * every other client. A short-lived thread does it; the rest of the commit comes back here. */
#define FILES_SYNC_THREADS_MAX 16

typedef struct CommitJob {
        Files *files;
        PendingWrite *w;
        sd_bus_message *m;
        sd_event_source *source;
        int fd;        /* the thread's own descriptor of the file */
        int notify[2]; /* the thread writes fsync's errno (or 0) here */
} CommitJob;

static void *sync_thread(void *p) {
        CommitJob *j = p;
        int fd = j->fd, notify = j->notify[1];
        int r = fsync(fd) < 0 ? errno : 0;

        close(fd);
        /* The last touch: after this the main loop owns j again. */
        (void) !write(notify, &r, sizeof r);
        return NULL;
}

static int commit_reply(sd_bus_message *m, Files *f, PendingWrite *w, int sync_errno) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct stat st;
        int k = 0;

        if (sync_errno)
                k = files_error(&error, sync_errno, "fsync %s", w->path);
        else if (!w->elevated)
                k = files_caller_enter(f, m, &caller, &error);
        if (k >= 0)
                k = write_commit_synced(w, &st, &error);
        if (k >= 0)
                k = sd_bus_message_new_method_return(m, &reply);
        if (k >= 0)
                k = files_append_info(reply, w->path, &st);
        write_free(w);
        if (k < 0) {
                if (!sd_bus_error_is_set(&error))
                        sd_bus_error_set_errno(&error, k);
                return sd_bus_reply_method_error(m, &error);
        }
        return sd_bus_send(NULL, reply, NULL);
}

static int on_sync_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CommitJob *j = userdata;
        int r = EIO;

        if (read(fd, &r, sizeof r) != sizeof r)
                r = EIO;
        j->files->n_syncing--;
        (void) commit_reply(j->m, j->files, j->w, r);
        sd_event_source_disable_unref(j->source);
        safe_close(j->notify[0]);
        safe_close(j->notify[1]);
        sd_bus_message_unref(j->m);
        free(j);
        return 0;
}

static int start_sync(Files *f, sd_bus_message *m, PendingWrite *w) {
        CommitJob *j;
        pthread_attr_t attr;
        pthread_t thread;
        int k;

        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        j->notify[0] = j->notify[1] = -1;
        j->fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0 || pipe2(j->notify, O_CLOEXEC) < 0) {
                k = -errno;
                goto fail;
        }
        k = sd_event_add_io(sd_bus_get_event(sd_bus_message_get_bus(m)), &j->source, j->notify[0], EPOLLIN,
                            on_sync_done, j);
        if (k < 0)
                goto fail;
        j->files = f;
        j->w = w;
        j->m = sd_bus_message_ref(m);
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        (void) pthread_attr_setstacksize(&attr, 64 * 1024);
        k = -pthread_create(&thread, &attr, sync_thread, j);
        (void) pthread_attr_destroy(&attr);
        if (k < 0) {
                sd_bus_message_unref(j->m);
                goto fail;
        }
        w->committing = true;
        f->n_syncing++;
        return 0;
fail:
        sd_event_source_disable_unref(j->source);
        safe_close(j->fd);
        safe_close(j->notify[0]);
        safe_close(j->notify[1]);
        free(j);
        return k;
}

static int method_commit_write(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Files *f = userdata;
        PendingWrite *w;
        const char *token;
        int k;

        k = sd_bus_message_read(m, "s", &token);
        if (k < 0)
                return k;
        w = files_find_write(f, token, sd_bus_message_get_sender(m));
        if (!w)
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_FOUND, "no uncommitted write with token %s", token);
        if (f->n_syncing < FILES_SYNC_THREADS_MAX && start_sync(f, m, w) >= 0)
                return 1; /* answered from on_sync_done */
        /* No thread to spare: flush here. */
        return commit_reply(m, f, w, fsync(w->fd) < 0 ? errno : 0);
}

static int method_abort_write(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        PendingWrite *w;
        const char *token;
        int k;

        k = sd_bus_message_read(m, "s", &token);
        if (k < 0)
                return k;
        w = files_find_write(userdata, token, sd_bus_message_get_sender(m));
        if (!w)
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_FOUND, "no uncommitted write with token %s", token);
        write_free(w);
        return sd_bus_reply_method_return(m, NULL);
}

static int method_write_bytes(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(caller_leavep) FileCaller caller = {};
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(freep) char *path = NULL;
        PendingWrite *w = NULL;
        const char *raw;
        const void *data;
        size_t size;
        uint32_t mode;
        Ownership own;
        struct stat st;
        int k;

        k = sd_bus_message_read(m, "s", &raw);
        if (k < 0)
                return k;
        k = sd_bus_message_read_array(m, 'y', &data, &size);
        if (k < 0)
                return k;
        if (size > FILES_INLINE_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "data is larger than %d MiB; use OpenWrite", FILES_INLINE_MAX / (1024 * 1024));
        k = read_ownership_args(m, &mode, &own, error);
        if (k < 0)
                return k;
        k = files_expand(raw, &path, error);
        if (k < 0)
                return k;
        k = files_caller_enter(userdata, m, &caller, error);
        if (k < 0)
                return k;
        k = write_open(userdata, sd_bus_message_get_sender(m), path, mode, &own, &w, error);
        if (k >= 0 && (k = write_all(w->fd, data, size)) < 0)
                k = files_error(error, -k, "write %s", path);
        if (k >= 0)
                k = write_commit(w, &st, error);
        if (k >= 0)
                k = sd_bus_message_new_method_return(m, &reply);
        if (k >= 0)
                k = files_append_info(reply, w->path, &st);
        write_free(w);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

/* A call refused for lack of the caller's own rights asks polkit (org.execd.Execd1.files) for
 * more; on yes the call is dispatched again and runs, whole, with the daemon's rights (on
 * several paths, what the refused attempt already did is done again). */
static int or_escalate(sd_bus_message *m, Files *f, int k, sd_bus_error *error) {
        static const PolkitAction beyond_own_rights = { POLKIT_ACTION_FILES };
        _cleanup_(sd_bus_error_free) sd_bus_error not_asked = SD_BUS_ERROR_NULL;
        bool refused = sd_bus_error_is_set(error) ? sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED)
                                                  : k == -EACCES || k == -EPERM;
        bool as_caller = f->switched_call == m;

        f->switched_call = NULL;
        if (!refused || !as_caller)
                return k;
        /* polkit cannot be asked (too many questions, say): the caller's own refusal stands. */
        if (polkit_authorize(f->manager, m, &beyond_own_rights, 1, &not_asked) != 0)
                return k;
        sd_bus_error_free(error);
        return 1;
}

#define ESCALATING(handler)                                                                        \
        static int handler##_or_escalate(sd_bus_message *m, void *userdata, sd_bus_error *error) { \
                Files *f = userdata;                                                               \
                f->switched_call = NULL;                                                           \
                return or_escalate(m, f, handler(m, userdata, error), error);                      \
        }
ESCALATING(method_stat)
ESCALATING(method_walk)
ESCALATING(method_make_directories)
ESCALATING(method_move)
ESCALATING(method_remove)
ESCALATING(method_set_permissions)
ESCALATING(method_replace)
ESCALATING(method_open_read)
ESCALATING(method_open_write)
ESCALATING(method_read_bytes)
ESCALATING(method_write_bytes)

#define INFO "(sstxxssu)"

const sd_bus_vtable files_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Stat", SD_BUS_ARGS("as", paths), SD_BUS_RESULT("a" INFO, infos), method_stat_or_escalate,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("List", SD_BUS_ARGS("s", path, "u", depth), SD_BUS_RESULT("a" INFO, entries),
                                method_walk_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Search", SD_BUS_ARGS("s", path, "s", pattern), SD_BUS_RESULT("a" INFO, matches),
                                method_walk_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("MakeDirectories", SD_BUS_ARGS("a(suss)", directories), SD_BUS_NO_RESULT,
                                method_make_directories_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Move", SD_BUS_ARGS("a(ss)", moves), SD_BUS_NO_RESULT, method_move_or_escalate,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RemoveFiles", SD_BUS_ARGS("as", paths), SD_BUS_NO_RESULT, method_remove_or_escalate,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RemoveDirectories", SD_BUS_ARGS("as", paths), SD_BUS_NO_RESULT,
                                method_remove_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetPermissions", SD_BUS_ARGS("a(suss)", entries), SD_BUS_NO_RESULT,
                                method_set_permissions_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Replace", SD_BUS_ARGS("a(sss)", entries), SD_BUS_RESULT("au", counts),
                                method_replace_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("OpenRead", SD_BUS_ARGS("s", path), SD_BUS_RESULT("h", fd, INFO, info),
                                method_open_read_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("OpenWrite", SD_BUS_ARGS("s", path, "u", mode, "s", owner, "s", group),
                                SD_BUS_RESULT("h", fd, "s", token), method_open_write_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CommitWrite", SD_BUS_ARGS("s", token), SD_BUS_RESULT(INFO, info),
                                method_commit_write, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AbortWrite", SD_BUS_ARGS("s", token), SD_BUS_NO_RESULT, method_abort_write,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReadBytes", SD_BUS_ARGS("s", path, "t", offset, "t", length),
                                SD_BUS_RESULT("ay", data), method_read_bytes_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("WriteBytes",
                                SD_BUS_ARGS("s", path, "ay", data, "u", mode, "s", owner, "s", group),
                                SD_BUS_RESULT(INFO, info), method_write_bytes_or_escalate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

int files_new(Manager *m, sd_bus *bus, Files **ret) {
        _cleanup_(freep) Files *f = NULL;
        int n, k;

        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->manager = m;
        f->euid = geteuid();
        f->egid = getegid();
        f->umask = umask(0);
        umask(f->umask);
        n = getgroups(0, NULL);
        if (n > 0) {
                f->groups = calloc((size_t) n, sizeof *f->groups);
                if (!f->groups)
                        return -ENOMEM;
                f->n_groups = getgroups(n, f->groups);
                if (f->n_groups < 0)
                        f->n_groups = 0;
        }
        k = sd_bus_add_object_vtable(bus, NULL, EXECD_FILES_PATH, EXECD_FILES_INTERFACE, files_vtable, f);
        if (k < 0) {
                free(f->groups);
                return k;
        }
        *ret = TAKE_PTR(f);
        return 0;
}

Files *files_free(Files *f) {
        if (!f)
                return NULL;
        while (f->writes)
                write_free(f->writes);
        free(f->groups);
        free(f);
        return NULL;
}
