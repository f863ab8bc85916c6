/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#define EXECD_FILES_PATH "/org/execd/Execd1/files"
#define EXECD_FILES_INTERFACE "org.execd.Execd1.Files"

/* Inline twins and JSON-sized replies stay far below dbus-daemon's message cap. */
#define FILES_INLINE_MAX (4 * 1024 * 1024)
/* List and Search replies: about 100 bytes an entry keeps them near 10 MiB. */
#define FILES_ENTRIES_MAX 100000
#define FILES_PATH_MAX 4096
/* Replace reads a whole file into memory. */
#define FILES_REPLACE_MAX (64 * 1024 * 1024)
#define FILES_WRITES_PER_CALLER 1024
#define FILES_WRITES_MAX 4096

typedef struct Manager Manager;
typedef struct Files Files;
typedef struct PendingWrite PendingWrite;

/* The caller's filesystem identity while one method call runs. */
typedef struct FileCaller {
        Files *files;
        uid_t uid;
        gid_t gid;
        bool switched;
        bool elevated; /* polkit let the call use the daemon's rights */
} FileCaller;

/* Owner and group to apply; has_* false leaves them. */
typedef struct Ownership {
        bool has_uid, has_gid;
        uid_t uid;
        gid_t gid;
} Ownership;

struct PendingWrite {
        Files *files;
        PendingWrite *prev, *next;
        char token[33];
        char *owner_name;
        char *path;     /* final path, symlinks resolved */
        char *name;     /* its base name, in dir_fd */
        char *tmp_name; /* fallback named temporary; NULL for an O_TMPFILE */
        int dir_fd;
        int fd;
        mode_t mode; /* 0: keep the replaced file's, or the default */
        Ownership own;
        bool committing; /* its fsync runs in a thread; nobody else may touch it */
        bool elevated;   /* opened with polkit's leave: committed with the daemon's rights too */
};

struct Files {
        Manager *manager;
        PendingWrite *writes;
        unsigned n_writes;
        mode_t umask;
        uid_t euid;
        gid_t egid;
        gid_t *groups; /* the daemon's own supplementary groups, restored after each call */
        int n_groups;
        unsigned n_syncing; /* fsync threads running */
        sd_bus_message *switched_call; /* the call now running with its caller's identity */
};

int files_new(Manager *m, sd_bus *bus, Files **ret);
Files *files_free(Files *f);
/* A bus name left: its uncommitted writes are discarded. */
void files_name_gone(Files *f, const char *name);

/* files.c: operations, run with the caller's identity already in place. Each returns 0, or a
 * negative errno with error set. */
int files_caller_enter(Files *f, sd_bus_message *m, FileCaller *c, sd_bus_error *error);
void files_caller_leave(FileCaller *c);
int files_expand(const char *in, char **ret, sd_bus_error *error);
int files_parse_ownership(const char *owner, const char *group, Ownership *ret, sd_bus_error *error);
int files_error(sd_bus_error *error, int err, const char *format, ...) __attribute__((format(printf, 3, 4)));
/* FileInfo (sstxxssu) */
int files_append_info(sd_bus_message *reply, const char *path, const struct stat *st);

int files_stat(sd_bus_message *reply, char **paths, sd_bus_error *error);
int files_list(sd_bus_message *reply, const char *path, uint32_t depth, sd_bus_error *error);
int files_search(sd_bus_message *reply, const char *path, const char *pattern, sd_bus_error *error);
int files_mkdir_p(const char *path, mode_t mode, sd_bus_error *error);
int files_apply(const char *path, mode_t mode, const Ownership *own, sd_bus_error *error);
int files_move(const char *src, const char *dest, sd_bus_error *error);
int files_remove_file(const char *path, sd_bus_error *error);
int files_remove_tree(const char *path, sd_bus_error *error);
int files_replace_count(const char *path, const char *old, size_t *ret, sd_bus_error *error);
int files_replace(Files *f, const char *owner_name, const char *path, const char *old, const char *new_text,
                  uint32_t *ret_count, sd_bus_error *error);

int write_open(Files *f, const char *owner_name, const char *path, mode_t mode, const Ownership *own,
               PendingWrite **ret, sd_bus_error *error);
/* Flush the file to disk, then write_commit_synced(). */
int write_commit(PendingWrite *w, struct stat *ret_st, sd_bus_error *error);
/* Set mode and owner and give the flushed file its name. */
int write_commit_synced(PendingWrite *w, struct stat *ret_st, sd_bus_error *error);
PendingWrite *write_free(PendingWrite *w);
PendingWrite *files_find_write(Files *f, const char *token, const char *owner_name);

int write_all(int fd, const void *buf, size_t size);

/* files-dbus.c */
extern const sd_bus_vtable files_vtable[];
