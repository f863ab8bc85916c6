/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "groups.h"
#include "log.h"

#define MARKER_PREFIX "group-"

/* Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. Together
 * with the pid it names one process, never a later one that got the same pid. */
static int start_time(pid_t pid, unsigned long long *ret) {
        char path[64], buf[1024];
        const char *p;
        ssize_t n;
        int fd;

        (void) snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
                return -EIO;
        buf[n] = 0;
        p = strrchr(buf, ')'); /* the command name may hold anything, even spaces and ')' */
        if (!p)
                return -EIO;
        p++; /* the space before field 3 */
        for (int field = 3; field < 22 && p; field++)
                p = strchr(p + 1, ' ');
        if (!p || sscanf(p, " %llu", ret) != 1)
                return -EIO;
        return 0;
}

void group_mark(const char *dir, pid_t pgid, char **ret_path) {
        unsigned long long start;
        int fd;

        *ret_path = NULL;
        if (!dir || start_time(pgid, &start) < 0)
                return;
        if (asprintf(ret_path, "%s/" MARKER_PREFIX "%d-%llu", dir, (int) pgid, start) < 0) {
                *ret_path = NULL;
                return;
        }
        fd = open(*ret_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                log_debug_errno(errno, "Cannot mark process group %d: %m", (int) pgid);
                free(*ret_path);
                *ret_path = NULL;
                return;
        }
        close(fd);
}

int group_spawned(pid_t pid, int report_fd, const char *mark_dir, int *ret_pidfd, char **ret_marker) {
        ssize_t n;
        int e = 0;

        *ret_marker = NULL;
        do
                n = read(report_fd, &e, sizeof e);
        while (n < 0 && errno == EINTR);
        if (n == sizeof e) {
                (void) waitpid(pid, NULL, 0);
                return -(e ? e : EIO);
        }
        *ret_pidfd = pidfd_open(pid, 0);
        if (*ret_pidfd < 0) {
                e = errno;
                (void) kill(-pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                return -e;
        }
        group_mark(mark_dir, pid, ret_marker);
        return 0;
}

void group_unmark(char **path) {
        if (!*path)
                return;
        (void) unlink(*path);
        free(*path);
        *path = NULL;
}

static void kill_marked(const char *name) {
        unsigned long long marked, now;
        int pgid;
        char end;

        if (sscanf(name, MARKER_PREFIX "%d-%llu%c", &pgid, &marked, &end) != 2 || pgid <= 1)
                return;
        if (start_time(pgid, &now) == 0) {
                if (now != marked)
                        return; /* the pid is another process's now: its group is not ours */
        } else if (kill(-pgid, 0) < 0)
                return; /* neither the leader nor anyone of the group is left */
        /* Either the leader we started, or members of its group living on without it (a pid
         * cannot be reused while a group of that id exists). */
        if (kill(-pgid, SIGKILL) == 0)
                log_info("killed process group %d, left running by a daemon that is gone", pgid);
}

void groups_kill_marked(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, MARKER_PREFIX, strlen(MARKER_PREFIX)) == 0)
                        kill_marked(de->d_name);
        closedir(d);
}
