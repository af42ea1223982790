#include "commands.h"

#include <libpq-fe.h>

#include "db.h"
#include "exit_codes.h"
#include "migrate.h"

int relay_cmd_migrate(const relay_cli_options *opts, const relay_config *config,
                      const relay_logger *log, FILE *out)
{
    (void)opts; /* migrate has no options of its own */
    char err[1024];
    PGconn *conn = relay_db_connect(config, log, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    int applied = 0;
    int rc = relay_migrate(conn, config, out, &applied, err, sizeof err);
    PQfinish(conn);
    if (rc != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    if (applied == 0)
        fprintf(out, "nothing to apply: the schema is up to date\n");
    return RELAY_EXIT_OK;
}
