/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <syslog.h>

#include "macro.h"

/* Messages go to stderr; when stderr is the journal (JOURNAL_STREAM) they carry <N> priority
 * prefixes so the journal keeps their level. */
void log_setup(int max_level);
void log_set_max_level(int level);
int log_get_max_level(void);
int log_internal(int level, int error, const char *format, ...) _printf_(3, 4);

#define log_full_errno(level, error, ...)                                             \
        ({                                                                          \
                int _e = (error) < 0 ? -(error) : (error);                          \
                (level) <= log_get_max_level() ? log_internal(level, _e, __VA_ARGS__) \
                                               : -_e;                               \
        })
#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
