#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <outbox_relay/sink.h>

#include "commands.h"
#include "config.h"
#include "db.h"
#include "exit_codes.h"
#include "permissions.h"
#include "log.h"
#include "relay_build.h"

/* reset takes exactly one of --to ID and --latest. Returns 0, or -1 with err. */
static int check_reset_options(relay_cli_options *opts, char *err, size_t errlen)
{
    if ((opts->reset_to != NULL) == opts->reset_latest) {
        snprintf(err, errlen, "give either --to ID or --latest");
        return -1;
    }
    if (opts->reset_latest)
        return 0;
    char *end;
    errno = 0;
    /* Digits only: strtoll alone would also take " +5". */
    const char *to = opts->reset_to;
    long long value = to[0] >= '0' && to[0] <= '9' ? strtoll(to, &end, 10) : -1;
    if (value < 0 || errno != 0 || end == to || *end != '\0') {
        snprintf(err, errlen, "--to: expected an id (0 or more), not '%s'", opts->reset_to);
        return -1;
    }
    opts->reset_position = value;
    return 0;
}

typedef struct cli_command {
    const char *name;
    relay_command_fn *function;
    /* Its entry in --help; a line after a '\n' is indented under the first. */
    const char *usage;
    /* Checks the options of this command alone before the config is loaded, so that a usage error
     * is one whatever the config; NULL when there are none. Returns 0, or -1 with err. */
    int (*check_options)(relay_cli_options *opts, char *err, size_t errlen);
} cli_command;

/* In the order of --help. */
static const cli_command commands[] = {
    {"run", relay_cmd_run, "relay events in the foreground until SIGTERM/SIGINT", NULL},
    {"migrate", relay_cmd_migrate, "apply the schema migrations not applied yet", NULL},
    {"check", relay_cmd_check,
     "validate the config, the database, the table and the sink, then exit", NULL},
    {"status", relay_cmd_status,
     "print the position, the table's max id, the lag and the watched gaps", NULL},
    {"reset", relay_cmd_reset,
     "move the position deliberately (after a restore or a truncate):\n"
     "--to ID, or --latest (the table's max id); the relay must be stopped",
     check_reset_options},
};

/* --help pads the command names to this width, after an indent of 2, and aligns continued lines. */
enum { USAGE_NAME_WIDTH = 10 };

static const char usage_head[] =
    "usage: outbox-relay COMMAND -c FILE [options]\n"
    "\n"
    "Carries events from a PostgreSQL outbox table to a sink, at least once, in id order.\n"
    "\n"
    "commands:\n";

static const char usage_tail[] =
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

/* The command list comes from the table, so that --help cannot miss or misname a command. */
static void print_usage(FILE *out)
{
    fputs(usage_head, out);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *line = commands[i].usage;
        fprintf(out, "  %-*s", USAGE_NAME_WIDTH, commands[i].name);
        for (const char *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
            fprintf(out, "%.*s\n  %*s", (int)(nl - line), line, USAGE_NAME_WIDTH, "");
        fprintf(out, "%s\n", line);
    }
    fputs(usage_tail, out);
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return &commands[i];
    return NULL;
}

/* Returns -1 to exit with RELAY_EXIT_OK (help, version), 0 to go on, or a usage error code. */
static int parse_options(int argc, char **argv, relay_cli_options *opts)
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
            if (relay_log_level_parse(optarg, &opts->log_level) != 0) {
                fprintf(stderr, "outbox-relay: --log-level: unknown level '%s'\n", optarg);
                return RELAY_EXIT_USAGE;
            }
            opts->has_log_level = true;
            break;
        case OPT_LOG_FORMAT:
            if (relay_log_format_parse(optarg, &opts->log_format) != 0) {
                fprintf(stderr, "outbox-relay: --log-format: unknown format '%s'\n", optarg);
                return RELAY_EXIT_USAGE;
            }
            opts->has_log_format = true;
            break;
        case OPT_TO:
            opts->reset_to = optarg;
            break;
        case OPT_LATEST:
            opts->reset_latest = true;
            break;
        case 'h':
            print_usage(stdout);
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
        print_usage(stderr);
        return RELAY_EXIT_USAGE;
    }
    opts->command = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "outbox-relay: unexpected argument '%s'\n", argv[optind]);
        return RELAY_EXIT_USAGE;
    }
    if (!find_command(opts->command)) {
        fprintf(stderr, "outbox-relay: unknown command '%s'; try 'outbox-relay --help'\n",
                opts->command);
        return RELAY_EXIT_USAGE;
    }
    /* --to and --latest are reset's: elsewhere they would be ignored, and mean nothing. */
    if (strcmp(opts->command, "reset") != 0 && (opts->reset_to || opts->reset_latest)) {
        fprintf(stderr, "outbox-relay %s: --to and --latest are options of reset only\n",
                opts->command);
        return RELAY_EXIT_USAGE;
    }
    if (!opts->config_path) {
        fprintf(stderr, "outbox-relay %s: -c FILE is required\n", opts->command);
        return RELAY_EXIT_USAGE;
    }
    return 0;
}

/* Applies the config's log settings, then the command line's, which win. */
static void configure_logger(const relay_config *config, const relay_cli_options *opts,
                             relay_logger *log)
{
    log->level = opts->has_log_level ? opts->log_level : config->log_level;
    log->format = opts->has_log_format ? opts->log_format : config->log_format;
}

int relay_cli_main(int argc, char **argv)
{
    relay_cli_options opts = {0};
    int rc = parse_options(argc, argv, &opts);
    if (rc != 0)
        return rc < 0 ? RELAY_EXIT_OK : rc;

    const cli_command *command = find_command(opts.command);
    if (!command) {
        fprintf(stderr, "outbox-relay: unknown command '%s'; try 'outbox-relay --help'\n",
                opts.command);
        return RELAY_EXIT_USAGE;
    }
    char err[1024];
    if (command->check_options && command->check_options(&opts, err, sizeof err) != 0) {
        fprintf(stderr, "outbox-relay %s: %s\n", command->name, err);
        return RELAY_EXIT_USAGE;
    }

    /* The command line's log format holds for a config that cannot be read too. */
    relay_logger log = relay_logger_default();
    if (opts.has_log_format)
        log.format = opts.log_format;
    relay_config config;
    if (relay_config_load(opts.config_path, &config, err, sizeof err) != 0) {
        relay_error(&log, "%s", err);
        return RELAY_EXIT_CONFIG;
    }
    configure_logger(&config, &opts, &log);
    if (relay_permissions_refuse_writable(opts.config_path, "config", err, sizeof err) != 0) {
        relay_error(&log, "%s", err);
        rc = RELAY_EXIT_CONFIG;
    }
    if (rc == 0)
        relay_permissions_warn_secrets(&config, &log);
    if (rc == 0 && config.password_file) {
        /* Read now, once, so that an unreadable or empty file is a configuration error and not
         * an outage retried forever; every connection reads it again (it may be rotated). */
        char password[1024];
        if (relay_db_read_password(config.password_file, password, sizeof password, err,
                                   sizeof err) != 0) {
            relay_error(&log, "%s", err);
            rc = RELAY_EXIT_CONFIG;
        }
        explicit_bzero(password, sizeof password);
    }
    if (rc == 0)
        rc = command->function(&opts, &config, &log, stdout);
    relay_config_free(&config);
    return rc;
}
