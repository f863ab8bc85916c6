/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

/* Process groups the daemon started (commands, kernels) are marked by empty files
 * "group-PGID-STARTTIME" in its runtime directory while they run. A daemon that dies without
 * cleaning up (kill -9, a crash) leaves its markers behind, and the next daemon kills what
 * they name: nothing keeps running without an owner that could stop it. */

/* A vfork()ed child that leads its own group has been started: wait on report_fd (closed by
 * its exec, or carrying the exec's errno), take a pidfd, and mark the group in mark_dir
 * (*ret_marker is NULL when marking fails, which is only logged). On failure the child is
 * killed and reaped and a negative errno returned. */
int group_spawned(pid_t pid, int report_fd, const char *mark_dir, int *ret_pidfd, char **ret_marker);
/* Mark pgid (a group leader we just started) in dir; *ret_path is NULL on failure, which is
 * logged and otherwise ignored. */
void group_mark(const char *dir, pid_t pgid, char **ret_path);
/* The group is done with: remove its marker and free the path. */
void group_unmark(char **path);
/* SIGKILL every group marked in dir whose leader is still the process that was marked (same
 * start time), or that lives on without its leader. */
void groups_kill_marked(const char *dir);
