/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>

/* Dispatches an sd-bus connection from the GLib main context. on_disconnect runs once when
 * the connection is lost; the source then stops. */
GSource *eb_bus_source_new(sd_bus *bus, GSourceFunc on_disconnect, gpointer user_data);
