/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <systemd/sd-id128.h>

#include "env.h"
#include "errors.h"
#include "execd.h"
#include "files.h"
#include "glob.h"
#include "log.h"
#include "macro.h"
#include "polkit.h"

/* ---- identity ---- */

/* Raw syscalls: glibc's setgroups() would broadcast to every thread; these change only the
 * calling thread's filesystem credentials, which is all the kernel checks for file access. */
static int set_fs_identity(uid_t uid, gid_t gid, const gid_t *groups, int n_groups) {
        if (syscall(SYS_setgroups, (size_t) n_groups, groups) < 0)
                return -errno;
        (void) syscall(SYS_setfsgid, gid);
        (void) syscall(SYS_setfsuid, uid);
        /* setfs[ug]id report the previous value, never an error: read back to be sure. */
        if ((uid_t) syscall(SYS_setfsuid, (uid_t) -1) != uid || (gid_t) syscall(SYS_setfsgid, (gid_t) -1) != gid)
                return -EPERM;
        return 0;
}

int files_caller_enter(Files *f, sd_bus_message *m, FileCaller *c, sd_bus_error *error) {
        struct passwd pw, *pwp = NULL;
        char buf[16384];
        gid_t groups[256];
        int n = (int) ELEMENTSOF(groups), k;
        uid_t uid;

        *c = (FileCaller) { .files = f };
        k = manager_caller_uid(f->manager, m, &uid);
        if (k < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's uid");
        c->uid = uid;
        if (uid == 0 || uid == f->euid)
                return 0;
        if (f->euid != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "The daemon runs as uid %u and cannot act for uid %u",
                                         (unsigned) f->euid, (unsigned) uid);
        /* polkit let this call beyond the caller's own rights (files-dbus.c): the daemon's identity. */
        k = polkit_take_answer(f->manager, m, error);
        if (k < 0)
                return k;
        if (k > 0) {
                c->elevated = true;
                return 0;
        }

        (void) getpwuid_r(uid, &pw, buf, sizeof buf, &pwp);
        c->gid = pwp ? pwp->pw_gid : (gid_t) uid;
        if (!pwp || getgrouplist(pwp->pw_name, c->gid, groups, &n) < 0)
                n = 0; /* no entry, or more groups than we keep: the primary group only */
        k = set_fs_identity(uid, c->gid, groups, n);
        if (k < 0) {
                if (set_fs_identity(f->euid, f->egid, f->groups, f->n_groups) < 0)
                        abort();
                return sd_bus_error_set_errnof(error, -k, "Cannot take the caller's identity: %m");
        }
        c->switched = true;
        f->switched_call = m;
        return 0;
}

void files_caller_leave(FileCaller *c) {
        Files *f = c->files;

        if (!f || !c->switched)
                return;
        if (set_fs_identity(f->euid, f->egid, f->groups, f->n_groups) < 0)
                /* Running on with a caller's identity would be worse than stopping. */
                abort();
        c->switched = false;
}

/* ---- errors and paths ---- */

int files_error(sd_bus_error *error, int err, const char *format, ...) {
        char text[FILES_PATH_MAX + 512];
        const char *name;
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(text, sizeof text, format, ap);
        va_end(ap);
        switch (err) {
        case ENOENT:
                name = EXECD_ERROR_NOT_FOUND;
                break;
        case EEXIST:
        case ENOTEMPTY:
                name = EXECD_ERROR_ALREADY_EXISTS;
                break;
        case EISDIR:
                name = EXECD_ERROR_IS_DIRECTORY;
                break;
        case ENOTDIR:
                name = EXECD_ERROR_NOT_DIRECTORY;
                break;
        case EACCES:
        case EPERM:
                name = SD_BUS_ERROR_ACCESS_DENIED;
                break;
        case ENAMETOOLONG:
        case ELOOP:
                name = EXECD_ERROR_INVALID_PATH;
                break;
        default:
                /* sd-bus names the rest after the errno: System.Error.EXDEV, ….IOError, … */
                errno = err;
                return sd_bus_error_set_errnof(error, err, "%s: %m", text);
        }
        return sd_bus_error_setf(error, name, "%s: %s", text, strerror(err));
}

int files_expand(const char *in, char **ret, sd_bus_error *error) {
        _cleanup_(freep) char *missing = NULL;
        char *out = NULL;
        int k;

        if (!in || !*in)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH, "path is empty");
        if (strlen(in) > FILES_PATH_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH, "path is longer than %d bytes",
                                         FILES_PATH_MAX);
        k = expand_path(in, environ, &out, &missing);
        if (k == -ENXIO)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH,
                                         "path references undefined environment variables: %s", missing);
        if (k < 0)
                return sd_bus_error_set_errnof(error, -k, "Cannot expand path %s: %m", in);
        path_clean(out);
        if (strlen(out) > FILES_PATH_MAX) {
                free(out);
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH, "path is longer than %d bytes",
                                         FILES_PATH_MAX);
        }
        *ret = out;
        return 0;
}

static int parse_id(const char *s, unsigned long *ret) {
        char *end;

        if (!*s || *s < '0' || *s > '9')
                return -EINVAL;
        errno = 0;
        *ret = strtoul(s, &end, 10);
        if (errno || *end || *ret >= (unsigned long) UINT32_MAX)
                return -EINVAL;
        return 0;
}

int files_parse_ownership(const char *owner, const char *group, Ownership *ret, sd_bus_error *error) {
        char buf[16384];
        unsigned long id;
        Ownership o = {};

        if (owner && *owner) {
                struct passwd pw, *pwp = NULL;
                (void) getpwnam_r(owner, &pw, buf, sizeof buf, &pwp);
                if (pwp)
                        o.uid = pwp->pw_uid;
                else if (parse_id(owner, &id) >= 0)
                        o.uid = (uid_t) id;
                else
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "unknown user '%s'", owner);
                o.has_uid = true;
        }
        if (group && *group) {
                struct group gr, *grp = NULL;
                (void) getgrnam_r(group, &gr, buf, sizeof buf, &grp);
                if (grp)
                        o.gid = grp->gr_gid;
                else if (parse_id(group, &id) >= 0)
                        o.gid = (gid_t) id;
                else
                        return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "unknown group '%s'", group);
                o.has_gid = true;
        }
        *ret = o;
        return 0;
}

/* ---- FileInfo ---- */

/* Listings repeat the same few owners; NSS lookups are not free. */
typedef struct NameCache {
        unsigned id[8];
        char name[8][64];
        unsigned n, next;
} NameCache;

static const char *cached_name(NameCache *cache, unsigned id, bool is_group) {
        char buf[16384];
        unsigned slot;
        const char *found = NULL;

        for (unsigned i = 0; i < cache->n; i++)
                if (cache->id[i] == id)
                        return cache->name[i];
        if (is_group) {
                struct group gr, *grp = NULL;
                (void) getgrgid_r((gid_t) id, &gr, buf, sizeof buf, &grp);
                found = grp ? grp->gr_name : NULL;
        } else {
                struct passwd pw, *pwp = NULL;
                (void) getpwuid_r((uid_t) id, &pw, buf, sizeof buf, &pwp);
                found = pwp ? pwp->pw_name : NULL;
        }
        slot = cache->n < ELEMENTSOF(cache->id) ? cache->n++ : cache->next++ % ELEMENTSOF(cache->id);
        cache->id[slot] = id;
        if (found && strlen(found) < sizeof cache->name[slot])
                strcpy(cache->name[slot], found);
        else
                snprintf(cache->name[slot], sizeof cache->name[slot], "%u", id);
        return cache->name[slot];
}

static NameCache user_names, group_names;

static const char *file_type(mode_t mode) {
        if (S_ISREG(mode))
                return "file";
        if (S_ISDIR(mode))
                return "directory";
        if (S_ISLNK(mode))
                return "symlink";
        return "other";
}

static int64_t timespec_ns(const struct timespec *ts) {
        return (int64_t) ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_sequence(const unsigned char *s) {
        unsigned char c = s[0];
        size_t n;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
                n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
                n = 4, cp = c & 0x07;
        else
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        return n;
}

/* D-Bus strings must be UTF-8; a name that is not is shown with U+FFFD for each bad byte, as
 * the reference's JSON does. Returns NULL when s is valid as it is. */
static char *utf8_sanitize(const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        char *out, *o;
        bool valid = true;

        for (size_t n; *p; p += n)
                if (!(n = utf8_sequence(p))) {
                        valid = false;
                        break;
                }
        if (valid)
                return NULL;
        out = o = malloc(strlen(s) * 3 + 1);
        if (!out)
                return NULL;
        for (p = (const unsigned char *) s; *p;) {
                size_t n = utf8_sequence(p);
                if (n) {
                        memcpy(o, p, n);
                        o += n;
                        p += n;
                } else {
                        memcpy(o, "\xef\xbf\xbd", 3);
                        o += 3;
                        p++;
                }
        }
        *o = 0;
        return out;
}

int files_append_info(sd_bus_message *reply, const char *path, const struct stat *st) {
        _cleanup_(freep) char *shown = utf8_sanitize(path);

        /* Names may change between calls; the cache lives for one reply at most. */
        return sd_bus_message_append(reply, "(sstxxssu)", shown ? shown : path, file_type(st->st_mode), (uint64_t) st->st_size,
                                     timespec_ns(&st->st_mtim), timespec_ns(&st->st_ctim),
                                     cached_name(&user_names, st->st_uid, false),
                                     cached_name(&group_names, st->st_gid, true), (uint32_t) (st->st_mode & 07777));
}

static void names_forget(void) {
        user_names.n = group_names.n = 0;
}

int files_stat(sd_bus_message *reply, char **paths, sd_bus_error *error) {
        int k;

        names_forget();
        k = sd_bus_message_open_container(reply, 'a', "(sstxxssu)");
        if (k < 0)
                return k;
        for (size_t i = 0; paths[i]; i++) {
                struct stat st;
                if (lstat(paths[i], &st) < 0)
                        return files_error(error, errno, "lstat %s", paths[i]);
                k = files_append_info(reply, paths[i], &st);
                if (k < 0)
                        return k;
        }
        return sd_bus_message_close_container(reply);
}

/* ---- walking ---- */

static int name_compare(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names in a directory, sorted byte-wise; the directory is closed before the caller
 * descends, so deep trees do not hold one descriptor per level. */
static int read_names(const char *path, char ***ret, size_t *ret_n) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;
        int fd;

        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }
        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de)
                        break;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (n + 2 > cap) {
                        char **grown;
                        cap = cap ? cap * 2 : 32;
                        grown = realloc(names, cap * sizeof *names);
                        if (!grown) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        names = grown;
                }
                names[n] = strdup(de->d_name);
                if (!names[n]) {
                        closedir(d);
                        return -ENOMEM;
                }
                names[++n] = NULL;
        }
        if (errno) {
                int e = errno;
                closedir(d);
                return -e;
        }
        closedir(d);
        if (n)
                qsort(names, n, sizeof *names, name_compare);
        *ret = TAKE_PTR(names);
        *ret_n = n;
        return 0;
}

typedef struct Walk {
        sd_bus_message *reply;
        sd_bus_error *error;
        const char *pattern; /* search: NULL for listing */
        uint32_t depth;      /* listing */
        size_t n_entries;
        const char *root;
} Walk;

static char *join(const char *dir, const char *name) {
        char *s;

        if (asprintf(&s, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name) < 0)
                return NULL;
        return s;
}

static int walk_emit(Walk *w, const char *path, const struct stat *st) {
        if (++w->n_entries > FILES_ENTRIES_MAX)
                return sd_bus_error_setf(w->error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "more than %d entries under %s; narrow the request", FILES_ENTRIES_MAX,
                                         w->root);
        return files_append_info(w->reply, path, st);
}

static int walk_dir(Walk *w, const char *dir, uint32_t level) {
        _cleanup_(strv_freep) char **names = NULL;
        size_t n = 0;
        int k;

        k = read_names(dir, &names, &n);
        if (k == -ENOENT && level > 1)
                return 0; /* vanished during the walk */
        if (k < 0) {
                if (w->pattern)
                        return files_error(w->error, -k, "error searching files. error accessing path %s", dir);
                return files_error(w->error, -k, "error listing directory %s", dir);
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_(freep) char *path = join(dir, names[i]);
                struct stat st;
                bool descend;

                if (!path)
                        return -ENOMEM;
                if (lstat(path, &st) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return files_error(w->error, errno, "lstat %s", path);
                }
                if (w->pattern) {
                        descend = S_ISDIR(st.st_mode);
                        if (!descend && glob_match(w->pattern, names[i]) > 0) {
                                k = walk_emit(w, path, &st);
                                if (k < 0)
                                        return k;
                        }
                } else {
                        k = walk_emit(w, path, &st);
                        if (k < 0)
                                return k;
                        descend = S_ISDIR(st.st_mode) && level < w->depth;
                }
                if (descend) {
                        k = walk_dir(w, path, level + 1);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

int files_list(sd_bus_message *reply, const char *path, uint32_t depth, sd_bus_error *error) {
        Walk w = { .reply = reply, .error = error, .depth = depth, .root = path };
        struct stat st;
        int k;

        names_forget();
        if (lstat(path, &st) < 0)
                return files_error(error, errno, "lstat %s", path);
        if (S_ISLNK(st.st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "path is a symbolic link, refusing to traverse: %s", path);
        if (!S_ISDIR(st.st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_DIRECTORY, "path is not a directory: %s", path);
        k = sd_bus_message_open_container(reply, 'a', "(sstxxssu)");
        if (k < 0)
                return k;
        if (depth > 0) {
                k = walk_dir(&w, path, 1);
                if (k < 0)
                        return k;
        }
        return sd_bus_message_close_container(reply);
}

int files_search(sd_bus_message *reply, const char *path, const char *pattern, sd_bus_error *error) {
        Walk w = { .reply = reply, .error = error, .root = path };
        const char *base;
        struct stat st;
        int k;

        names_forget();
        if (!pattern || !*pattern)
                pattern = "**";
        if (glob_validate(pattern) < 0)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT,
                                         "invalid pattern %s: syntax error in pattern", pattern);
        w.pattern = pattern;
        if (stat(path, &st) < 0)
                return files_error(error, errno, "stat %s", path);
        if (lstat(path, &st) < 0)
                return files_error(error, errno, "lstat %s", path);
        k = sd_bus_message_open_container(reply, 'a', "(sstxxssu)");
        if (k < 0)
                return k;
        if (S_ISDIR(st.st_mode))
                k = walk_dir(&w, path, 1);
        else {
                base = strrchr(path, '/');
                base = base && base[1] ? base + 1 : path;
                k = glob_match(pattern, base) > 0 ? walk_emit(&w, path, &st) : 0;
        }
        if (k < 0)
                return k;
        return sd_bus_message_close_container(reply);
}

/* ---- changing things ---- */

int files_mkdir_p(const char *path, mode_t mode, sd_bus_error *error) {
        _cleanup_(freep) char *p = strdup(path);
        struct stat st;

        if (!p)
                return -ENOMEM;
        for (char *slash = p + 1;; slash++) {
                bool last = *slash == 0;

                if (*slash != '/' && !last)
                        continue;
                *slash = 0;
                if (mkdir(p, mode) < 0) {
                        if (errno != EEXIST)
                                return files_error(error, errno, "mkdir %s", p);
                        if (stat(p, &st) < 0)
                                return files_error(error, errno, "stat %s", p);
                        if (!S_ISDIR(st.st_mode))
                                return files_error(error, ENOTDIR, "mkdir %s", p);
                }
                if (last)
                        break;
                *slash = '/';
        }
        return 0;
}

int files_apply(const char *path, mode_t mode, const Ownership *own, sd_bus_error *error) {
        if (mode && chmod(path, mode & 07777) < 0)
                return files_error(error, errno, "chmod %s", path);
        if ((own->has_uid || own->has_gid) &&
            chown(path, own->has_uid ? own->uid : (uid_t) -1, own->has_gid ? own->gid : (gid_t) -1) < 0)
                return files_error(error, errno, "chown %s", path);
        /* chown clears setuid/setgid: put them back when they were asked for. */
        if (mode & 06000 && (own->has_uid || own->has_gid) && chmod(path, mode & 07777) < 0)
                return files_error(error, errno, "chmod %s", path);
        return 0;
}

static char *dir_of(const char *path) {
        const char *slash = strrchr(path, '/');

        if (!slash || slash == path)
                return strdup("/");
        return strndup(path, (size_t) (slash - path));
}

int files_move(const char *src, const char *dest, sd_bus_error *error) {
        _cleanup_(freep) char *parent = NULL;
        struct stat st;
        int k;

        if (lstat(src, &st) < 0)
                return files_error(error, errno, "source path not found: %s", src);
        if (lstat(dest, &st) == 0)
                return sd_bus_error_setf(error, EXECD_ERROR_ALREADY_EXISTS, "destination path already exists: %s", dest);
        parent = dir_of(dest);
        if (!parent)
                return -ENOMEM;
        k = files_mkdir_p(parent, 0755, error);
        if (k < 0)
                return k;
        /* NOREPLACE closes the window between the check above and the rename. */
        if (renameat2(AT_FDCWD, src, AT_FDCWD, dest, RENAME_NOREPLACE) < 0) {
                if (errno == EEXIST)
                        return sd_bus_error_setf(error, EXECD_ERROR_ALREADY_EXISTS,
                                                 "destination path already exists: %s", dest);
                if (errno != EINVAL || rename(src, dest) < 0)
                        return files_error(error, errno, "rename %s to %s", src, dest);
        }
        return 0;
}

int files_remove_file(const char *path, sd_bus_error *error) {
        struct stat st;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return files_error(error, errno, "error removing file %s", path);
        }
        if (S_ISDIR(st.st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_IS_DIRECTORY, "error removing file %s. path is a directory",
                                         path);
        if (unlink(path) < 0 && errno != ENOENT)
                return files_error(error, errno, "error removing file %s", path);
        return 0;
}

/* rm -rf below an open directory; never follows symlinks. */
static int remove_children(int dir_fd, const char *path, sd_bus_error *error) {
        DIR *d;
        struct dirent *de;
        int fd, k = 0;

        fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return files_error(error, errno, "error removing directory %s", path);
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return files_error(error, errno, "error removing directory %s", path);
        }
        while (k >= 0 && (de = readdir(d))) {
                int child;

                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT)
                        continue;
                if (errno != EISDIR && errno != EPERM) {
                        k = files_error(error, errno, "error removing directory %s/%s", path, de->d_name);
                        break;
                }
                child = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0) {
                        k = files_error(error, errno, "error removing directory %s/%s", path, de->d_name);
                        break;
                }
                {
                        _cleanup_(freep) char *sub = join(path, de->d_name);
                        k = sub ? remove_children(child, sub, error) : -ENOMEM;
                        safe_close(child);
                        if (k >= 0 && unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                                k = files_error(error, errno, "error removing directory %s", sub);
                }
        }
        closedir(d);
        return k;
}

int files_remove_tree(const char *path, sd_bus_error *error) {
        struct stat st;
        int fd, k;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return files_error(error, errno, "error removing directory %s", path);
        }
        if (!S_ISDIR(st.st_mode)) {
                if (unlink(path) < 0 && errno != ENOENT)
                        return files_error(error, errno, "error removing directory %s", path);
                return 0;
        }
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return files_error(error, errno, "error removing directory %s", path);
        k = remove_children(fd, path, error);
        safe_close(fd);
        if (k < 0)
                return k;
        if (rmdir(path) < 0 && errno != ENOENT)
                return files_error(error, errno, "error removing directory %s", path);
        return 0;
}

/* ---- atomic writes ---- */

/* Where a write to path lands: the final target of a symlink chain (which need not exist). */
static int resolve_target(const char *path, char **ret, sd_bus_error *error) {
        _cleanup_(freep) char *cur = strdup(path);

        if (!cur)
                return -ENOMEM;
        for (int hops = 0;; hops++) {
                char target[PATH_MAX];
                struct stat st;
                ssize_t n;
                char *next;

                if (lstat(cur, &st) < 0 || !S_ISLNK(st.st_mode))
                        break;
                if (hops >= 40)
                        return files_error(error, ELOOP, "resolve %s", path);
                n = readlink(cur, target, sizeof target - 1);
                if (n < 0)
                        return files_error(error, errno, "readlink %s", cur);
                target[n] = 0;
                if (target[0] == '/')
                        next = strdup(target);
                else {
                        _cleanup_(freep) char *parent = dir_of(cur);
                        next = parent ? join(parent, target) : NULL;
                }
                if (!next)
                        return -ENOMEM;
                path_clean(next);
                free(cur);
                cur = next;
        }
        *ret = TAKE_PTR(cur);
        return 0;
}

static void random_token(char out[33]) {
        sd_id128_t id;

        if (sd_id128_randomize(&id) < 0)
                memset(&id, 0, sizeof id);
        sd_id128_to_string(id, out);
}

static int open_named_temp(int dir_fd, const char *name, char **ret_name) {
        for (int tries = 0; tries < 16; tries++) {
                char suffix[33];
                char *tmp;
                int fd;

                random_token(suffix);
                suffix[12] = 0;
                if (asprintf(&tmp, ".%.200s.execd-%s", name, suffix) < 0)
                        return -ENOMEM;
                fd = openat(dir_fd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        *ret_name = tmp;
                        return fd;
                }
                free(tmp);
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

PendingWrite *write_free(PendingWrite *w) {
        Files *f;

        if (!w)
                return NULL;
        f = w->files;
        if (f) {
                if (w->prev)
                        w->prev->next = w->next;
                else if (f->writes == w)
                        f->writes = w->next;
                if (w->next)
                        w->next->prev = w->prev;
                f->n_writes--;
        }
        if (w->tmp_name && w->dir_fd >= 0)
                (void) unlinkat(w->dir_fd, w->tmp_name, 0);
        safe_close(w->fd);
        safe_close(w->dir_fd);
        free(w->tmp_name);
        free(w->name);
        free(w->path);
        free(w->owner_name);
        free(w);
        return NULL;
}

static void write_freep(PendingWrite **w) {
        write_free(*w);
}

int write_open(Files *f, const char *owner_name, const char *path, mode_t mode, const Ownership *own,
               PendingWrite **ret, sd_bus_error *error) {
        _cleanup_(write_freep) PendingWrite *w = NULL;
        _cleanup_(freep) char *parent = NULL;
        const char *slash;
        unsigned mine = 0;
        struct stat st;
        int k;

        for (PendingWrite *p = f->writes; p; p = p->next)
                if (strcmp(p->owner_name, owner_name) == 0)
                        mine++;
        if (mine >= FILES_WRITES_PER_CALLER || f->n_writes >= FILES_WRITES_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED,
                                         "too many uncommitted writes (limit %d per caller, %d in all)",
                                         FILES_WRITES_PER_CALLER, FILES_WRITES_MAX);

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->fd = w->dir_fd = -1;
        w->mode = mode;
        w->own = *own;
        w->owner_name = strdup(owner_name);
        if (!w->owner_name)
                return -ENOMEM;
        k = resolve_target(path, &w->path, error);
        if (k < 0)
                return k;
        if (stat(w->path, &st) == 0 && S_ISDIR(st.st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_IS_DIRECTORY, "path is a directory: %s", w->path);
        slash = strrchr(w->path, '/');
        if (!slash || !slash[1])
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_PATH, "not a file path: %s", path);
        w->name = strdup(slash + 1);
        parent = dir_of(w->path);
        if (!w->name || !parent)
                return -ENOMEM;
        k = files_mkdir_p(parent, 0777, error);
        if (k < 0)
                return k;
        w->dir_fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w->dir_fd < 0)
                return files_error(error, errno, "open %s", parent);

        /* An O_TMPFILE has no name until committed: nothing to clean up after any crash. */
        w->fd = openat(w->dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (w->fd < 0) {
                if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
                        return files_error(error, errno, "open %s", w->path);
                w->fd = open_named_temp(w->dir_fd, w->name, &w->tmp_name);
                if (w->fd < 0)
                        return files_error(error, -w->fd, "open %s", w->path);
        }

        random_token(w->token);
        w->files = f;
        w->next = f->writes;
        if (f->writes)
                f->writes->prev = w;
        f->writes = w;
        f->n_writes++;
        *ret = TAKE_PTR(w);
        return 0;
}

/* Give an O_TMPFILE a name in its directory. */
static int link_tmpfile(PendingWrite *w, const char *name) {
        char proc[64];

        snprintf(proc, sizeof proc, "/proc/self/fd/%d", w->fd);
        if (linkat(AT_FDCWD, proc, w->dir_fd, name, AT_SYMLINK_FOLLOW) == 0)
                return 0;
        if (errno == EEXIST)
                return -errno;
        /* No /proc: AT_EMPTY_PATH works where we hold CAP_DAC_READ_SEARCH. */
        if (linkat(w->fd, "", w->dir_fd, name, AT_EMPTY_PATH) == 0)
                return 0;
        return -errno;
}

int write_commit(PendingWrite *w, struct stat *ret_st, sd_bus_error *error) {
        if (fsync(w->fd) < 0)
                return files_error(error, errno, "fsync %s", w->path);
        return write_commit_synced(w, ret_st, error);
}

int write_commit_synced(PendingWrite *w, struct stat *ret_st, sd_bus_error *error) {
        Files *f = w->files;
        struct stat old, st;
        bool replacing;
        mode_t mode;
        uid_t uid = (uid_t) -1;
        gid_t gid = (gid_t) -1;
        int k;

        replacing = fstatat(w->dir_fd, w->name, &old, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(old.st_mode);
        mode = w->mode ? w->mode : replacing ? old.st_mode & 07777 : 0777 & ~f->umask;
        if (w->own.has_uid)
                uid = w->own.uid;
        else if (replacing)
                uid = old.st_uid;
        if (w->own.has_gid)
                gid = w->own.gid;
        else if (replacing)
                gid = old.st_gid;
        if (fstat(w->fd, &st) < 0)
                return files_error(error, errno, "fstat %s", w->path);
        if ((uid != (uid_t) -1 && uid != st.st_uid) || (gid != (gid_t) -1 && gid != st.st_gid)) {
                /* Keeping a replaced file's owner is best effort (only root may give files away);
                 * an owner that was asked for must be honoured. */
                if (fchown(w->fd, uid, gid) < 0 && (w->own.has_uid || w->own.has_gid))
                        return files_error(error, errno, "error chowning file %s", w->path);
        }
        if (fchmod(w->fd, mode) < 0)
                return files_error(error, errno, "error chmoding file %s", w->path);

        if (w->tmp_name) {
                if (renameat(w->dir_fd, w->tmp_name, w->dir_fd, w->name) < 0)
                        return files_error(error, errno, "rename into %s", w->path);
                w->tmp_name = mfree(w->tmp_name);
        } else {
                k = link_tmpfile(w, w->name);
                if (k == -EEXIST) {
                        /* The target exists: link under a temporary name, then rename over it in one step. */
                        _cleanup_(freep) char *tmp = NULL;
                        for (int tries = 0; tries < 16; tries++) {
                                char suffix[33];
                                random_token(suffix);
                                suffix[12] = 0;
                                free(tmp);
                                if (asprintf(&tmp, ".%.200s.execd-%s", w->name, suffix) < 0)
                                        return -ENOMEM;
                                k = link_tmpfile(w, tmp);
                                if (k != -EEXIST)
                                        break;
                        }
                        if (k >= 0 && renameat(w->dir_fd, tmp, w->dir_fd, w->name) < 0) {
                                k = -errno;
                                (void) unlinkat(w->dir_fd, tmp, 0);
                        }
                }
                if (k < 0)
                        return files_error(error, -k, "error writing file %s", w->path);
        }
        (void) fsync(w->dir_fd);
        if (ret_st && fstat(w->fd, ret_st) < 0)
                return files_error(error, errno, "fstat %s", w->path);
        return 0;
}

PendingWrite *files_find_write(Files *f, const char *token, const char *owner_name) {
        for (PendingWrite *w = f->writes; w; w = w->next)
                if (!w->committing && strcmp(w->token, token) == 0 && strcmp(w->owner_name, owner_name) == 0)
                        return w;
        return NULL;
}

void files_name_gone(Files *f, const char *name) {
        PendingWrite *w = f->writes, *next;

        for (; w; w = next) {
                next = w->next;
                /* A write being committed was asked for: it completes without its caller. */
                if (!w->committing && strcmp(w->owner_name, name) == 0)
                        write_free(w);
        }
}

/* ---- replace ---- */

static int read_whole(const char *path, char **ret, size_t *ret_size, sd_bus_error *error) {
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *buf = NULL;
        struct stat st;
        size_t have = 0;

        /* O_NONBLOCK: a fifo swapped in after the checks must not hang the daemon. */
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return files_error(error, errno, "open %s", path);
        if (fstat(fd, &st) < 0)
                return files_error(error, errno, "fstat %s", path);
        if (S_ISDIR(st.st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_IS_DIRECTORY, "path is a directory: %s", path);
        if (!S_ISREG(st.st_mode))
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "not a regular file: %s", path);
        if (st.st_size > FILES_REPLACE_MAX)
                return sd_bus_error_setf(error, EXECD_ERROR_LIMITS_EXCEEDED, "%s is larger than %d MiB", path,
                                         FILES_REPLACE_MAX / (1024 * 1024));
        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        while (have < (size_t) st.st_size) {
                ssize_t n = read(fd, buf + have, (size_t) st.st_size - have);
                if (n < 0)
                        return files_error(error, errno, "read %s", path);
                if (n == 0)
                        break;
                have += (size_t) n;
        }
        buf[have] = 0;
        *ret = TAKE_PTR(buf);
        *ret_size = have;
        return 0;
}

int write_all(int fd, const void *buf, size_t size) {
        const char *data = buf;

        while (size > 0) {
                ssize_t n = write(fd, data, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                data += n;
                size -= (size_t) n;
        }
        return 0;
}

static size_t count_occurrences(const char *text, size_t size, const char *old, size_t old_len) {
        size_t count = 0;
        const char *p = text, *end = text + size;

        while ((size_t) (end - p) >= old_len) {
                const char *hit = memmem(p, (size_t) (end - p), old, old_len);
                if (!hit)
                        break;
                count++;
                p = hit + old_len;
        }
        return count;
}

int files_replace_count(const char *path, const char *old, size_t *ret, sd_bus_error *error) {
        _cleanup_(freep) char *text = NULL;
        size_t size;
        int k;

        k = read_whole(path, &text, &size, error);
        if (k < 0)
                return k;
        *ret = count_occurrences(text, size, old, strlen(old));
        return 0;
}

int files_replace(Files *f, const char *owner_name, const char *path, const char *old, const char *new_text,
                  uint32_t *ret_count, sd_bus_error *error) {
        _cleanup_(freep) char *text = NULL;
        _cleanup_(write_freep) PendingWrite *w = NULL;
        size_t size, count, old_len = strlen(old), new_len = strlen(new_text);
        const char *p, *end;
        Ownership keep = {};
        int k;

        k = read_whole(path, &text, &size, error);
        if (k < 0)
                return k;
        count = count_occurrences(text, size, old, old_len);
        *ret_count = (uint32_t) MIN(count, (size_t) UINT32_MAX);
        if (count == 0)
                return 0;

        /* Mode 0 and no ownership: the commit keeps the replaced file's. */
        k = write_open(f, owner_name, path, 0, &keep, &w, error);
        if (k < 0)
                return k;
        p = text;
        end = text + size;
        while (p < end) {
                const char *hit = (size_t) (end - p) >= old_len ? memmem(p, (size_t) (end - p), old, old_len) : NULL;
                const char *stop = hit ? hit : end;

                k = write_all(w->fd, p, (size_t) (stop - p));
                if (k >= 0 && hit)
                        k = write_all(w->fd, new_text, new_len);
                if (k < 0)
                        return files_error(error, -k, "write %s", path);
                p = hit ? hit + old_len : end;
        }
        return write_commit(w, NULL, error);
}
