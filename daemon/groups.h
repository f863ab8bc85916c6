/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

/* Process groups the daemon started (commands, kernels) are marked by empty files
 * "group-PGID-STARTTIME" in its runtime directory while they run. A daemon that dies without
 * cleaning up (kill -9, a crash) leaves its markers behind, and the next daemon kills what
 * they name: nothing keeps running without an owner that could stop it. */

/* Mark pgid (a group leader we just started) in dir; *ret_path is NULL on failure, which is
 * logged and otherwise ignored. */
void group_mark(const char *dir, pid_t pgid, char **ret_path);
/* The group is done with: remove its marker and free the path. */
void group_unmark(char **path);
/* SIGKILL every group marked in dir whose leader is still the process that was marked (same
 * start time), or that lives on without its leader. */
void groups_kill_marked(const char *dir);
