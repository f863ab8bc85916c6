/* SPDX-License-Identifier: Apache-2.0 */
#include <signal.h>
#include <string.h>

#include "errors.h"
#include "execd.h"
#include "log.h"
#include "macro.h"

static const char *const stream_names[] = { "stdout", "stderr" };

static int method_signal(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        int32_t sig;
        int k;

        k = sd_bus_message_read(msg, "i", &sig);
        if (k < 0)
                return k;
        if (sig < 1 || sig > SIGRTMAX)
                return sd_bus_error_setf(error, EXECD_ERROR_INVALID_ARGUMENT, "Bad signal number %" PRIi32, sig);

        k = command_signal(c, sig);
        if (k == -ESRCH)
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_RUNNING, "Command %s is not running", c->id);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Failed to signal command: %m");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_interrupt(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        int k;

        k = command_interrupt(c);
        if (k == -ESRCH)
                return sd_bus_error_setf(error, EXECD_ERROR_NOT_RUNNING, "Command %s is not running", c->id);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "Failed to interrupt command: %m");
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_read_output(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Command *c = userdata;
        uint64_t from_seq, next_seq;
        size_t i, bytes = 0;
        int k;

        k = sd_bus_message_read(msg, "t", &from_seq);
        if (k < 0)
                return k;

        k = sd_bus_message_new_method_return(msg, &reply);
        if (k < 0)
                return k;
        k = sd_bus_message_open_container(reply, 'a', "(tsay)");
        if (k < 0)
                return k;
        next_seq = MAX(from_seq, c->ring.count ? ring_at(&c->ring, 0)->seq : c->ring.next_seq);
        for (i = ring_index_by_seq(&c->ring, from_seq); i < c->ring.count; i++) {
                const RingChunk *chunk = ring_at(&c->ring, i);

                if (bytes > 0 && bytes + chunk->size > READ_REPLY_MAX)
                        break;
                k = sd_bus_message_open_container(reply, 'r', "tsay");
                if (k >= 0)
                        k = sd_bus_message_append(reply, "ts", chunk->seq, stream_names[chunk->stream]);
                if (k >= 0)
                        k = sd_bus_message_append_array(reply, 'y', chunk->data, chunk->size);
                if (k >= 0)
                        k = sd_bus_message_close_container(reply);
                if (k < 0)
                        return k;
                bytes += chunk->size;
                next_seq = chunk->seq + 1;
        }
        k = sd_bus_message_close_container(reply);
        if (k >= 0)
                k = sd_bus_message_append(reply, "t", MIN(next_seq, c->ring.next_seq));
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_read_log(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Command *c = userdata;
        uint64_t offset, end;
        uint32_t max_bytes;
        void *p;
        int k;

        k = sd_bus_message_read(msg, "tu", &offset, &max_bytes);
        if (k < 0)
                return k;
        if (max_bytes == 0 || max_bytes > READ_REPLY_MAX)
                max_bytes = READ_REPLY_MAX;

        offset = MAX(offset, ring_first_offset(&c->ring));
        offset = MIN(offset, c->ring.total_bytes);
        end = MIN(c->ring.total_bytes, offset + max_bytes);

        k = sd_bus_message_new_method_return(msg, &reply);
        if (k < 0)
                return k;
        /* Reserve the array in place and copy the chunks straight into the message. */
        k = sd_bus_message_append_array_space(reply, 'y', (size_t) (end - offset), &p);
        if (k < 0)
                return k;
        for (size_t i = ring_index_by_offset(&c->ring, offset); i < c->ring.count; i++) {
                const RingChunk *chunk = ring_at(&c->ring, i);
                uint64_t from = MAX(offset, chunk->offset), to = MIN(end, chunk->offset + chunk->size);

                if (from >= end)
                        break;
                memcpy((uint8_t *) p + (from - offset), chunk->data + (from - chunk->offset), (size_t) (to - from));
        }
        k = sd_bus_message_append(reply, "t", end);
        if (k < 0)
                return k;
        return sd_bus_send(NULL, reply, NULL);
}

static int method_ack(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        uint64_t seq;
        int k;

        k = sd_bus_message_read(msg, "t", &seq);
        if (k < 0)
                return k;
        command_ack(c, seq);
        return sd_bus_reply_method_return(msg, NULL);
}

static int property_get_error(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        return sd_bus_message_append(reply, "s", c->error ? c->error : "");
}

static int property_get_bytes_out(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        return sd_bus_message_append(reply, "t", c->ring.total_bytes);
}

static int property_get_truncated(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        return sd_bus_message_append(reply, "b", c->ring.truncated);
}

static int property_get_id(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        return sd_bus_message_append(reply, "s", c->id);
}

static int property_get_pid(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Command *c = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) c->pid);
}

static int property_get_bool(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "b", *(bool *) userdata);
}

static int property_get_string_ptr(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", *(char **) userdata);
}

const sd_bus_vtable command_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("CommandLine", "s", property_get_string_ptr, offsetof(Command, command_line), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Background", "b", property_get_bool, offsetof(Command, background), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("OwnerUid", "u", NULL, offsetof(Command, owner_uid), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Pid", "u", property_get_pid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Running", "b", property_get_bool, offsetof(Command, running), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ExitCode", "i", NULL, offsetof(Command, exit_code), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Signal", "i", NULL, offsetof(Command, signal), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TimedOut", "b", property_get_bool, offsetof(Command, timed_out), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Error", "s", property_get_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StartedAt", "t", NULL, offsetof(Command, started_at), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("FinishedAt", "t", NULL, offsetof(Command, finished_at), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesOut", "t", property_get_bytes_out, 0, 0),
        SD_BUS_PROPERTY("Truncated", "b", property_get_truncated, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Signal", SD_BUS_ARGS("i", signo), SD_BUS_NO_RESULT, method_signal, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Interrupt", NULL, NULL, method_interrupt, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReadOutput", SD_BUS_ARGS("t", from_seq), SD_BUS_RESULT("a(tsay)", chunks, "t", next_seq),
                                method_read_output, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReadLog", SD_BUS_ARGS("t", offset, "u", max_bytes), SD_BUS_RESULT("ay", data, "t", next_offset),
                                method_read_log, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Ack", SD_BUS_ARGS("t", seq), SD_BUS_NO_RESULT, method_ack, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Output", SD_BUS_ARGS("t", seq, "s", stream, "ay", data), 0),
        SD_BUS_SIGNAL_WITH_ARGS("Exited", SD_BUS_ARGS("i", exit_code, "i", signal, "b", timed_out), 0),
        SD_BUS_VTABLE_END
};

int command_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                        void **found, sd_bus_error *error) {
        Manager *m = userdata;
        const char *id;
        Command *c;

        if (strncmp(path, EXECD_COMMAND_PREFIX "/", strlen(EXECD_COMMAND_PREFIX "/")) != 0)
                return 0;
        id = path + strlen(EXECD_COMMAND_PREFIX "/");
        c = manager_find_command(m, id);
        if (!c)
                return 0;
        /* The single place where access to a command object is decided. */
        if (!manager_caller_may_access(m, c->owner_uid, error))
                return -EACCES;
        *found = c;
        return 1;
}

int command_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                            sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(strv_freep) char **l = NULL;
        size_t n = 0, k = 0;

        for (Command *c = m->commands_head; c; c = c->next)
                n++;
        l = calloc(n + 1, sizeof *l);
        if (!l)
                return -ENOMEM;
        for (Command *c = m->commands_head; c; c = c->next) {
                bool visible = manager_caller_sees(m, c->owner_uid);
                if (!visible)
                        continue;
                l[k] = strdup(c->path);
                if (!l[k])
                        return -ENOMEM;
                k++;
        }
        *nodes = TAKE_PTR(l);
        return 1;
}

/* Output, Exited and PropertiesChanged go to the owner's unique name only: other bus clients
 * must not see a command's output or outcome. */
static int command_new_signal(Command *c, const char *interface, const char *member, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int k;

        k = sd_bus_message_new_signal(c->manager->bus, &s, c->path, interface, member);
        if (k < 0)
                return k;
        k = sd_bus_message_set_destination(s, c->owner_name);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(s);
        return 0;
}

void command_send_output(Command *c, uint64_t seq, uint8_t stream, const void *data, size_t size) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int k;

        if (c->owner_gone)
                return;
        k = command_new_signal(c, EXECD_COMMAND_INTERFACE, "Output", &s);
        if (k >= 0)
                k = sd_bus_message_append(s, "ts", seq, stream_names[stream]);
        if (k >= 0)
                k = sd_bus_message_append_array(s, 'y', data, size);
        if (k >= 0)
                k = sd_bus_send(c->manager->bus, s, NULL);
        if (k < 0)
                log_warning_errno(k, "command %s: failed to send output: %m", c->id);
        else
                owner_sent(c->owner, size);
}

static int append_changed_bool(sd_bus_message *s, const char *name, bool b) {
        return sd_bus_message_append(s, "{sv}", name, "b", (int) b);
}

static void command_send_properties_changed(Command *c, bool finished) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int k;

        k = command_new_signal(c, "org.freedesktop.DBus.Properties", "PropertiesChanged", &s);
        if (k >= 0)
                k = sd_bus_message_append(s, "s", EXECD_COMMAND_INTERFACE);
        if (k >= 0)
                k = sd_bus_message_open_container(s, 'a', "{sv}");
        if (k >= 0 && finished) {
                k = append_changed_bool(s, "Running", c->running);
                if (k >= 0)
                        k = sd_bus_message_append(s, "{sv}{sv}", "ExitCode", "i", c->exit_code, "Signal", "i", c->signal);
                if (k >= 0)
                        k = append_changed_bool(s, "TimedOut", c->timed_out);
                if (k >= 0)
                        k = sd_bus_message_append(s, "{sv}{sv}", "Error", "s", c->error ? c->error : "",
                                                  "FinishedAt", "t", c->finished_at);
        }
        if (k >= 0)
                k = append_changed_bool(s, "Truncated", c->ring.truncated);
        if (k >= 0)
                k = sd_bus_message_close_container(s);
        if (k >= 0)
                k = sd_bus_message_append(s, "as", 0);
        if (k >= 0)
                k = sd_bus_send(c->manager->bus, s, NULL);
        if (k < 0)
                log_warning_errno(k, "command %s: failed to send PropertiesChanged: %m", c->id);
}

void command_send_truncated(Command *c) {
        if (!c->owner_gone)
                command_send_properties_changed(c, false);
}

void command_send_exited(Command *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int k;

        if (c->owner_gone)
                return;
        k = command_new_signal(c, EXECD_COMMAND_INTERFACE, "Exited", &s);
        if (k >= 0)
                k = sd_bus_message_append(s, "iib", c->exit_code, c->signal, (int) c->timed_out);
        if (k >= 0)
                k = sd_bus_send(c->manager->bus, s, NULL);
        if (k < 0)
                log_warning_errno(k, "command %s: failed to send Exited: %m", c->id);
        command_send_properties_changed(c, true);
}
