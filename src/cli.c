#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <outbox_relay/sink.h>

#include "check.h"
#include "config.h"
#include "db.h"
#include "exit_codes.h"
#include "log.h"
#include "migrate.h"
#include "relay.h"
#include "relay_build.h"
#include "reset.h"
#include "status.h"

static const char usage_text[] =
    "usage: outbox-relay COMMAND -c FILE [options]\n"
    "\n"
    "Carries events from a PostgreSQL outbox table to a sink, at least once, in id order.\n"
    "\n"
    "commands:\n"
    "  run       relay events in the foreground until SIGTERM/SIGINT\n"
    "  migrate   apply the schema migrations not applied yet\n"
    "  check     validate the config, the database, the table and the sink, then exit\n"
    "  status    print the position, the table's max id, the lag and the watched gaps\n"
    "  reset     move the position deliberately (after a restore or a truncate):\n"
    "            --to ID, or --latest (the table's max id); the relay must be stopped\n"
    "\n"
    "options:\n"
    "  -c, --config FILE        the YAML configuration (see relay.yaml.example)\n"
    "      --json               status: print one JSON object\n"
    "      --to ID              reset: the new position\n"
    "      --latest             reset: the table's max id as the new position\n"
    "      --log-level LEVEL    debug, info, warn or error (overrides log.level)\n"
    "      --log-format FORMAT  text or json (overrides log.format)\n"
    "  -h, --help               this text\n"
    "  -V, --version            the version\n"
    "\n"
    "exit codes:\n"
    "  0  success (run: stopped by a signal after committing the batch in hand)\n"
    "  1  the sink failed for good (the position stays before the failed batch)\n"
    "  2  usage error\n"
    "  3  configuration error\n"
    "  4  database error: cannot connect, or a table or column is missing\n"
    "  5  sink plugin error: not found, wrong ABI, or init failed\n"
    "  6  run: the checkpoint belongs to another database, or is above the table's ids\n"
    "     (restored or truncated); see `reset`\n"
    "  128+N  run: a second signal N while stopping\n";

typedef struct cli_options {
    const char *command;
    const char *config_path;
    const char *log_level;
    const char *log_format;
    bool json;
    const char *reset_to;
    bool reset_latest;
} cli_options;

/* Returns -1 to exit with RELAY_EXIT_OK (help, version), 0 to go on, or a usage error code. */
static int parse_options(int argc, char **argv, cli_options *opts)
{
    enum { OPT_JSON = 256, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_TO, OPT_LATEST };
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, OPT_JSON},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"to", required_argument, NULL, OPT_TO},
        {"latest", no_argument, NULL, OPT_LATEST},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            opts->config_path = optarg;
            break;
        case OPT_JSON:
            opts->json = true;
            break;
        case OPT_LOG_LEVEL:
            opts->log_level = optarg;
            break;
        case OPT_LOG_FORMAT:
            opts->log_format = optarg;
            break;
        case OPT_TO:
            opts->reset_to = optarg;
            break;
        case OPT_LATEST:
            opts->reset_latest = true;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return -1;
        case 'V':
            printf("outbox-relay %s (sink ABI %u)\n", RELAY_VERSION, RELAY_SINK_ABI_VERSION);
            return -1;
        default:
            fputs("try 'outbox-relay --help'\n", stderr);
            return RELAY_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(usage_text, stderr);
        return RELAY_EXIT_USAGE;
    }
    opts->command = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "outbox-relay: unexpected argument '%s'\n", argv[optind]);
        return RELAY_EXIT_USAGE;
    }
    if (!opts->config_path) {
        fprintf(stderr, "outbox-relay %s: -c FILE is required\n", opts->command);
        return RELAY_EXIT_USAGE;
    }
    return 0;
}

/* Applies the config's log settings, then the command line's, which win. */
static int configure_logger(const relay_config *config, const cli_options *opts, relay_logger *log)
{
    log->level = config->log_level;
    log->format = config->log_format;
    if (opts->log_level && relay_log_level_parse(opts->log_level, &log->level) != 0) {
        fprintf(stderr, "outbox-relay: --log-level: unknown level '%s'\n", opts->log_level);
        return RELAY_EXIT_USAGE;
    }
    if (opts->log_format && relay_log_format_parse(opts->log_format, &log->format) != 0) {
        fprintf(stderr, "outbox-relay: --log-format: unknown format '%s'\n", opts->log_format);
        return RELAY_EXIT_USAGE;
    }
    return 0;
}

static int command_migrate(const relay_config *config, const relay_logger *log)
{
    char err[1024];
    PGconn *conn = relay_db_connect(config, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    int applied = 0;
    int rc = relay_migrate(conn, stdout, &applied, err, sizeof err);
    PQfinish(conn);
    if (rc != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    if (applied == 0)
        printf("nothing to apply: all %zu migrations are applied\n", relay_migrations_count);
    return RELAY_EXIT_OK;
}

static int command_status(const relay_config *config, const relay_logger *log, bool json)
{
    char err[1024];
    PGconn *conn = relay_db_connect(config, err, sizeof err);
    if (!conn) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    relay_status_info status;
    int missing = 0;
    int rc = relay_status_read(conn, config, &status, &missing, err, sizeof err);
    PQfinish(conn);
    if (rc != 0) {
        relay_error(log, "%s", err);
        return RELAY_EXIT_DATABASE;
    }
    relay_status_print(stdout, config, &status, json);
    return RELAY_EXIT_OK;
}

/* reset takes exactly one of --to ID and --latest. Returns 0, or -1 after a message. */
static int parse_reset(const cli_options *opts, int64_t *position)
{
    if ((opts->reset_to != NULL) == opts->reset_latest) {
        fprintf(stderr, "outbox-relay reset: give either --to ID or --latest\n");
        return -1;
    }
    if (opts->reset_latest)
        return 0;
    char *end;
    errno = 0;
    long long value = strtoll(opts->reset_to, &end, 10);
    if (errno != 0 || end == opts->reset_to || *end != '\0' || value < 0) {
        fprintf(stderr, "outbox-relay reset: --to: expected an id (0 or more), not '%s'\n",
                opts->reset_to);
        return -1;
    }
    *position = value;
    return 0;
}

int relay_cli_main(int argc, char **argv)
{
    cli_options opts = {0};
    int rc = parse_options(argc, argv, &opts);
    if (rc != 0)
        return rc < 0 ? RELAY_EXIT_OK : rc;

    static const char *const commands[] = {"run", "migrate", "check", "status", "reset"};
    bool known = false;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        known = known || strcmp(opts.command, commands[i]) == 0;
    if (!known) {
        fprintf(stderr, "outbox-relay: unknown command '%s'; try 'outbox-relay --help'\n",
                opts.command);
        return RELAY_EXIT_USAGE;
    }

    int64_t reset_position = 0;
    if (strcmp(opts.command, "reset") == 0 && parse_reset(&opts, &reset_position) != 0)
        return RELAY_EXIT_USAGE;

    relay_logger log = relay_logger_default();
    relay_config config;
    char err[1024];
    if (relay_config_load(opts.config_path, &config, err, sizeof err) != 0) {
        relay_error(&log, "%s", err);
        return RELAY_EXIT_CONFIG;
    }
    rc = configure_logger(&config, &opts, &log);
    if (rc == 0) {
        if (strcmp(opts.command, "run") == 0)
            rc = relay_run(&config, &log);
        else if (strcmp(opts.command, "migrate") == 0)
            rc = command_migrate(&config, &log);
        else if (strcmp(opts.command, "check") == 0)
            rc = relay_check(&config, &log, stdout);
        else if (strcmp(opts.command, "reset") == 0)
            rc = relay_reset(&config, &log, reset_position, opts.reset_latest, stdout);
        else
            rc = command_status(&config, &log, opts.json);
    }
    relay_config_free(&config);
    return rc;
}
