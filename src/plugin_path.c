#include "plugin_path.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "relay_build.h"

static int path_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Writes EXEDIR (without a trailing slash; "" for the root) into out. */
static int executable_dir(char *out, size_t outlen, char *err, size_t errlen)
{
    ssize_t n = readlink("/proc/self/exe", out, outlen);
    if (n < 0) {
        snprintf(err, errlen, "cannot find the relay's executable: /proc/self/exe: %s",
                 strerror(errno));
        return -1;
    }
    /* readlink does not NUL-terminate, and a full buffer may mean a truncated path. */
    if ((size_t)n >= outlen) {
        snprintf(err, errlen, "cannot find the relay's executable: its path is too long");
        return -1;
    }
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (slash == NULL) {
        snprintf(err, errlen, "cannot find the relay's executable: '%s' is not absolute", out);
        return -1;
    }
    *slash = '\0';
    return 0;
}

/* Formats a path into out; a path that does not fit is an error, never a truncated candidate. */
__attribute__((format(printf, 5, 6))) static int format_path(char *out, size_t outlen, char *err,
                                                             size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen) {
        snprintf(err, errlen, "sink plugin path too long: %.200s...", out);
        return -1;
    }
    return 0;
}

int relay_plugin_resolve(const char *plugin, const char *plugin_dir, char *out, size_t outlen,
                         char *err, size_t errlen)
{
    if (plugin == NULL || plugin[0] == '\0') {
        snprintf(err, errlen, "no sink plugin named");
        return -1;
    }
    if (strchr(plugin, '/') != NULL)
        return format_path(out, outlen, err, errlen, "%s", plugin);

    if (plugin_dir != NULL) {
        if (format_path(out, outlen, err, errlen, "%s/%s.so", plugin_dir, plugin) != 0)
            return -1;
        if (path_exists(out))
            return 0;
        snprintf(err, errlen, "sink plugin '%s' not found: tried %s", plugin, out);
        return -1;
    }

    char exe_dir[PATH_MAX];
    if (executable_dir(exe_dir, sizeof exe_dir, err, errlen) != 0)
        return -1;

    char in_build_tree[PATH_MAX];
    if (format_path(in_build_tree, sizeof in_build_tree, err, errlen, "%s/plugins/%s/%s.so",
                    exe_dir, plugin, plugin) != 0)
        return -1;
    if (path_exists(in_build_tree))
        return format_path(out, outlen, err, errlen, "%s", in_build_tree);

    /* Meson hands us an absolute directory when bindir or the plugin dir is absolute. */
    const char *installed_dir = RELAY_PLUGINDIR_FROM_BINDIR;
    char installed[PATH_MAX];
    int failed = installed_dir[0] == '/'
                     ? format_path(installed, sizeof installed, err, errlen, "%s/%s.so",
                                   installed_dir, plugin)
                     : format_path(installed, sizeof installed, err, errlen, "%s/%s/%s.so", exe_dir,
                                   installed_dir, plugin);
    if (failed)
        return -1;
    if (path_exists(installed))
        return format_path(out, outlen, err, errlen, "%s", installed);

    snprintf(err, errlen, "sink plugin '%s' not found: tried %s and %s", plugin, in_build_tree,
             installed);
    return -1;
}
