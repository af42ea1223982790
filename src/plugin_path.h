/* Where a sink plugin's file is: by name beside the executable or in plugin_dir, or a path. */
#ifndef RELAY_PLUGIN_PATH_H
#define RELAY_PLUGIN_PATH_H

#include <stddef.h>

/*
 * Resolves the plugin file for `plugin` (a name, or a path when it contains '/'): a name is
 * looked up as plugin_dir/NAME.so when plugin_dir is set, otherwise beside the executable:
 * EXEDIR/plugins/NAME/NAME.so (the build tree), then EXEDIR/RELAY_PLUGINDIR_FROM_BINDIR/NAME.so
 * (an install). Returns 0 with the path in out, or -1 with the places tried in err.
 */
int relay_plugin_resolve(const char *plugin, const char *plugin_dir, char *out, size_t outlen,
                         char *err, size_t errlen);

#endif
