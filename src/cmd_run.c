#include "commands.h"

#include "relay.h"

/* The loop keeps its own narrower entry point: it neither reads options nor prints a result, and
 * relay.c stays free of the command line. */
int relay_cmd_run(const relay_cli_options *opts, const relay_config *config,
                  const relay_logger *log, FILE *out)
{
    (void)out;
    return relay_run(config, log, opts->has_log_level);
}
