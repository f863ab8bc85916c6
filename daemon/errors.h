/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

#define EXECD_ERROR_INVALID_ARGUMENT "org.execd.Execd1.Error.InvalidArgument"
#define EXECD_ERROR_NOT_FOUND "org.execd.Execd1.Error.NotFound"
#define EXECD_ERROR_NOT_OWNER "org.execd.Execd1.Error.NotOwner"
#define EXECD_ERROR_NOT_RUNNING "org.execd.Execd1.Error.NotRunning"
#define EXECD_ERROR_LIMITS_EXCEEDED "org.execd.Execd1.Error.LimitsExceeded"
#define EXECD_ERROR_START_FAILED "org.execd.Execd1.Error.StartFailed"
#define EXECD_ERROR_BUSY "org.execd.Execd1.Error.Busy"
#define EXECD_ERROR_ALREADY_EXISTS "org.execd.Execd1.Error.AlreadyExists"
#define EXECD_ERROR_IS_DIRECTORY "org.execd.Execd1.Error.IsDirectory"
#define EXECD_ERROR_NOT_DIRECTORY "org.execd.Execd1.Error.NotDirectory"
#define EXECD_ERROR_INVALID_PATH "org.execd.Execd1.Error.InvalidPath"

/* errno values for our named errors, so -errno returns map to them and back. */
extern const sd_bus_error_map execd_error_map[];
