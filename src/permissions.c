#include "permissions.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conninfo.h"

int relay_permissions_refuse_writable(const char *path, const char *what, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        snprintf(err, errlen,
                 "%s %s is writable by %s (mode %04o): whoever can write it chooses the code the "
                 "relay runs; chmod go-w it",
                 what, path, st.st_mode & S_IWOTH ? "anyone" : "its group",
                 (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* Whether path lies in the directory of credentials systemd made for the unit. Its mode says
 * nothing there: systemd grants the unit's user read access by an ACL, whose mask stat shows as
 * the group's bits (0440), and the directory itself is the user's alone. */
bool relay_permissions_is_credential(const char *path)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    char real_dir[PATH_MAX], real_path[PATH_MAX];
    if (!dir || !realpath(dir, real_dir) || !realpath(path, real_path))
        return false;
    size_t n = strlen(real_dir);
    return strncmp(real_path, real_dir, n) == 0 && real_path[n] == '/';
}

static void warn_if_readable(const char *path, const char *what, const relay_logger *log)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)) &&
        !relay_permissions_is_credential(path))
        relay_warn(log, "%s %s can be read by %s (mode %04o): chmod go-r it", what, path,
                   st.st_mode & S_IROTH ? "anyone" : "its group", (unsigned)(st.st_mode & 07777));
}

void relay_permissions_warn_secrets(const relay_config *config, const relay_logger *log)
{
    if (config->password_file)
        warn_if_readable(config->password_file, "database.password_file", log);
    if (config->conninfo && relay_conninfo_has_password(config->conninfo))
        warn_if_readable(config->path, "the config, whose conninfo holds a password,", log);
}
