/*
 * What the relay's files let others do. A config or plugin file that others may write lets them
 * choose the code the relay runs (sink.plugin), so the relay refuses it, as ssh and sudo refuse
 * such files; a secret that others may read is a warning, since an operator may mean it (a group
 * of the relay's own).
 */
#ifndef RELAY_PERMISSIONS_H
#define RELAY_PERMISSIONS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "log.h"

/* Refuses a file (what: "config", "sink plugin") writable by its group or by others. A file that
 * is not there passes: opening it says so. Returns 0, or -1 with err naming the file and its
 * mode. */
int relay_permissions_refuse_writable(const char *path, const char *what, char *err, size_t errlen);

/* Whether path lies in the directory of credentials systemd made for the unit
 * ($CREDENTIALS_DIRECTORY), both resolved. Cannot fail: false when in doubt. */
bool relay_permissions_is_credential(const char *path);

/* Warns when the password_file, or a config whose conninfo holds a password, can be read by
 * its group or by others, unless it is one of the unit's systemd credentials
 * ($CREDENTIALS_DIRECTORY). Cannot fail. */
void relay_permissions_warn_secrets(const relay_config *config, const relay_logger *log);

#endif
