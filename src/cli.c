#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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

/* An id on the command line: digits only (strtoll alone would also take " +5"), at least min.
 * Returns 0, or -1 with err naming what. */
static int parse_id(const char *text, int64_t min, const char *what, int64_t *out, char *err,
                    size_t errlen)
{
    char *end;
    errno = 0;
    long long value = text[0] >= '0' && text[0] <= '9' ? strtoll(text, &end, 10) : -1;
    if (value < min || errno != 0 || end == text || *end != '\0') {
        snprintf(err, errlen, "%s: expected an id (%" PRId64 " or more), not '%s'", what, min,
                 text);
        return -1;
    }
    *out = value;
    return 0;
}

/* reset takes exactly one of --to ID and --latest. Returns 0, or -1 with err. */
static int check_reset_options(relay_cli_options *opts, char *err, size_t errlen)
{
    if ((opts->to != NULL) == opts->reset_latest) {
        snprintf(err, errlen, "give either --to ID or --latest");
        return -1;
    }
    if (opts->reset_latest)
        return 0;
    return parse_id(opts->to, 0, "--to", &opts->reset_position, err, errlen);
}

/* replay takes --from A and --to B, A <= B. Returns 0, or -1 with err. */
static int check_replay_options(relay_cli_options *opts, char *err, size_t errlen)
{
    if (!opts->from || !opts->to) {
        snprintf(err, errlen, "give the range as --from ID --to ID");
        return -1;
    }
    if (parse_id(opts->from, 0, "--from", &opts->replay_from, err, errlen) != 0 ||
        parse_id(opts->to, 0, "--to", &opts->replay_to, err, errlen) != 0)
        return -1;
    if (opts->replay_from > opts->replay_to) {
        snprintf(err, errlen, "--from %" PRId64 " is above --to %" PRId64, opts->replay_from,
                 opts->replay_to);
        return -1;
    }
    return 0;
}

static int compare_ids(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* dead-letters takes an action, list or retry|drop ID..., and --json with list only. Sets
 * opts->ids (sorted, distinct; the caller frees it). Returns 0, or -1 with err. */
static int check_dead_letters_options(relay_cli_options *opts, char *err, size_t errlen)
{
    if (opts->n_args == 0) {
        snprintf(err, errlen, "give an action: list, retry ID..., or drop ID...");
        return -1;
    }
    const char *action = opts->args[0];
    if (strcmp(action, "list") == 0) {
        opts->dead_letters_action = RELAY_DEAD_LETTERS_LIST;
        if (opts->n_args > 1) {
            snprintf(err, errlen, "list: unexpected argument '%s'", opts->args[1]);
            return -1;
        }
        return 0;
    }
    if (strcmp(action, "retry") == 0)
        opts->dead_letters_action = RELAY_DEAD_LETTERS_RETRY;
    else if (strcmp(action, "drop") == 0)
        opts->dead_letters_action = RELAY_DEAD_LETTERS_DROP;
    else {
        snprintf(err, errlen, "unknown action '%s': expected list, retry or drop", action);
        return -1;
    }
    if (opts->json) {
        snprintf(err, errlen, "%s: --json is an option of list only", action);
        return -1;
    }
    if (opts->n_args < 2) {
        snprintf(err, errlen, "%s: give the event ids (as list shows them)", action);
        return -1;
    }
    opts->ids = calloc(opts->n_args - 1, sizeof *opts->ids);
    if (!opts->ids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 1; i < opts->n_args; i++) {
        if (parse_id(opts->args[i], 1, action, &opts->ids[opts->n_ids], err, errlen) != 0)
            return -1;
        opts->n_ids++;
    }
    qsort(opts->ids, opts->n_ids, sizeof *opts->ids, compare_ids);
    size_t n = 0;
    for (size_t i = 0; i < opts->n_ids; i++)
        if (n == 0 || opts->ids[n - 1] != opts->ids[i])
            opts->ids[n++] = opts->ids[i];
    opts->n_ids = n;
    return 0;
}

/* The options only some commands take, as bits of cli_command.options. */
enum {
    OPTION_JSON = 1u << 0,
    OPTION_TO = 1u << 1,
    OPTION_LATEST = 1u << 2,
    OPTION_FROM = 1u << 3,
};

static const struct {
    unsigned bit;
    const char *name;
} command_options[] = {
    {OPTION_JSON, "--json"},
    {OPTION_TO, "--to"},
    {OPTION_LATEST, "--latest"},
    {OPTION_FROM, "--from"},
};

typedef struct cli_command {
    const char *name;
    relay_command_fn *function;
    /* Its entry in --help; a line after a '\n' is indented under the first. */
    const char *usage;
    /* `outbox-relay NAME --help`: the usage line and what it does; its own options, those of every
     * command and the exit codes follow. */
    const char *help;
    const char *option_help; /* the lines of its own options, "" for none */
    unsigned options;        /* the OPTION_* bits it takes */
    bool takes_args;         /* arguments after its name (opts->args) */
    /* Checks the options of this command alone before the config is loaded, so that a usage error
     * is one whatever the config; NULL when there are none. Returns 0, or -1 with err. */
    int (*check_options)(relay_cli_options *opts, char *err, size_t errlen);
} cli_command;

/* In the order of --help. */
static const cli_command commands[] = {
    {"run", relay_cmd_run, "relay events in the foreground until SIGTERM/SIGINT",
     "usage: outbox-relay run -c FILE\n"
     "\n"
     "Relays events from the outbox table to the sink until SIGTERM or SIGINT, which finish and\n"
     "commit the batch in hand; logs on stderr. A second relay of the same name stands by.\n",
     "", 0, false, NULL},
    {"migrate", relay_cmd_migrate, "apply the schema migrations not applied yet",
     "usage: outbox-relay migrate -c FILE\n"
     "\n"
     "Applies the schema migrations not applied yet (idempotent), one line each on stdout.\n",
     "", 0, false, NULL},
    {"check", relay_cmd_check,
     "validate the config, the database, the table and the sink, then exit",
     "usage: outbox-relay check -c FILE\n"
     "\n"
     "Validates the config, the database, the table and its columns, the checkpoint and the\n"
     "sink, one line per step on stdout; delivers nothing.\n",
     "", 0, false, NULL},
    {"status", relay_cmd_status,
     "print the position, the table's max id, the lag and the watched gaps",
     "usage: outbox-relay status -c FILE [--json]\n"
     "\n"
     "Prints the position, the table's max id, the lag, the watched gaps, retention and who\n"
     "leads.\n",
     "      --json               one JSON object on one line\n", OPTION_JSON, false, NULL},
    {"reset", relay_cmd_reset,
     "move the position deliberately (after a restore or a truncate):\n"
     "--to ID, or --latest (the table's max id); the relay must be stopped",
     "usage: outbox-relay reset -c FILE --to ID | --latest\n"
     "\n"
     "Moves the position deliberately (after a restore or a truncate), logged at WARN; refused\n"
     "while a relay of that name runs.\n",
     "      --to ID              the new position (0 or more)\n"
     "      --latest             the table's max id as the new position\n",
     OPTION_TO | OPTION_LATEST, false, check_reset_options},
    {"dead-letters", relay_cmd_dead_letters,
     "list, retry ID..., drop ID...: the events the sink refused for good\n"
     "(sink.on_reject: dead_letter)",
     "usage: outbox-relay dead-letters -c FILE list [--json]\n"
     "       outbox-relay dead-letters -c FILE retry EVENT_ID...\n"
     "       outbox-relay dead-letters -c FILE drop EVENT_ID...\n"
     "\n"
     "The events of this relay (the config's name) that the sink refused for good and\n"
     "sink.on_reject: dead_letter recorded in relay_dead_letters. The ids are the events' ids\n"
     "(source.columns.id, as the log names them), not the dead letters' own.\n"
     "\n"
     "  list       the dead letters: their own id, the event id, when, why, whether the event's\n"
     "             row is still in the table\n"
     "  retry      reads the events from the table and delivers them now through the configured\n"
     "             sink, marked redelivered; once the sink acknowledged them, removes their dead\n"
     "             letters (one transaction). An event the sink refuses again keeps its dead\n"
     "             letter (exit 1); one whose row is gone (retention) is named (exit 7) and keeps\n"
     "             it. Runs beside the relay.\n"
     "  drop       gives the events up undelivered: their dead letters are marked dropped, no\n"
     "             longer listed nor retried, and retention may delete the rows (a replay\n"
     "             still leaves the events out)\n"
     "\n"
     "An id that is not a dead letter of this relay refuses the command (exit 7) before anything\n"
     "is delivered or removed.\n",
     "      --json               list: one JSON object a line, as status --json prints one\n",
     OPTION_JSON, true, check_dead_letters_options},
    {"replay", relay_cmd_replay,
     "deliver --from ID --to ID again through the sink (a consumer lost them);\n"
     "the position stays, the relay may run",
     "usage: outbox-relay replay -c FILE --from ID --to ID\n"
     "\n"
     "Delivers the events of ids FROM to TO (inclusive) again through the configured sink,\n"
     "marked redelivered, in id order, in batches of source.batch_size (and batch_bytes), each\n"
     "acknowledged before the next: for a consumer that lost data. Ids missing from the table\n"
     "are skipped, and so are this relay's dead letters (never delivered: see dead-letters\n"
     "retry) and watched gaps (the relay delivers them if they appear). Never moves the\n"
     "position nor takes the relay's lock: it runs beside a running relay. A range above the\n"
     "stored position is refused (exit 7): those events are not delivered yet. Prints one\n"
     "summary line on stdout (on stderr with the stdout sink, whose output stdout is).\n",
     "      --from ID            the first id of the range\n"
     "      --to ID              the last id of the range, at most the position\n",
     OPTION_FROM | OPTION_TO, false, check_replay_options},
};

/* --help pads the command names to this width, after an indent of 2, and aligns continued lines. */
enum { USAGE_NAME_WIDTH = 13 };

static const char usage_head[] =
    "usage: outbox-relay COMMAND -c FILE [options]\n"
    "\n"
    "Carries events from a PostgreSQL outbox table to a sink, at least once, in id order.\n"
    "\n"
    "commands (outbox-relay COMMAND --help for one's own):\n";

static const char common_options[] =
    "  -c, --config FILE        the YAML configuration (see relay.yaml.example)\n"
    "      --log-level LEVEL    debug, info, warn or error (overrides log.level)\n"
    "      --log-format FORMAT  text or json (overrides log.format)\n"
    "  -h, --help               this text\n";

static const char usage_options[] =
    "      --json               status, dead-letters list: JSON\n"
    "      --to ID              reset: the new position; replay: the range's last id\n"
    "      --latest             reset: the table's max id as the new position\n"
    "      --from ID            replay: the range's first id\n"
    "  -V, --version            the version\n";

static const char exit_codes[] =
    "\n"
    "exit codes:\n"
    "  0  success (run: stopped by a signal after committing the batch in hand)\n"
    "  1  the sink failed for good (the position stays before the failed batch; dead-letters\n"
    "     retry, replay: the sink refused or failed, nothing more is removed)\n"
    "  2  usage error\n"
    "  3  configuration error\n"
    "  4  database error: cannot connect, or a table or column is missing\n"
    "  5  sink plugin error: not found, wrong ABI, or init failed\n"
    "  6  run: the checkpoint belongs to another database, or is above the table's ids\n"
    "     (restored or truncated); see `reset`\n"
    "  7  dead-letters, replay: an id is not a dead letter of this relay, an event's row is\n"
    "     gone, or the range lies above the position; nothing changed for those\n"
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
    fputs("\noptions:\n", out);
    fputs(common_options, out);
    fputs(usage_options, out);
    fputs(exit_codes, out);
}

static void print_command_help(FILE *out, const cli_command *command)
{
    fputs(command->help, out);
    fputs("\noptions:\n", out);
    fputs(command->option_help, out);
    fputs(common_options, out);
    fputs(exit_codes, out);
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
    enum { OPT_JSON = 256, OPT_LOG_LEVEL, OPT_LOG_FORMAT, OPT_TO, OPT_LATEST, OPT_FROM };
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, OPT_JSON},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"to", required_argument, NULL, OPT_TO},
        {"latest", no_argument, NULL, OPT_LATEST},
        {"from", required_argument, NULL, OPT_FROM},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    unsigned given = 0;
    bool help = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            opts->config_path = optarg;
            break;
        case OPT_JSON:
            opts->json = true;
            given |= OPTION_JSON;
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
            opts->to = optarg;
            given |= OPTION_TO;
            break;
        case OPT_LATEST:
            opts->reset_latest = true;
            given |= OPTION_LATEST;
            break;
        case OPT_FROM:
            opts->from = optarg;
            given |= OPTION_FROM;
            break;
        case 'h':
            /* Answered once the command is known: `outbox-relay replay --help` is replay's. */
            help = true;
            break;
        case 'V':
            printf("outbox-relay %s (sink ABI %u)\n", RELAY_VERSION, RELAY_SINK_ABI_VERSION);
            return -1;
        default:
            fputs("try 'outbox-relay --help'\n", stderr);
            return RELAY_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        print_usage(help ? stdout : stderr);
        return help ? -1 : RELAY_EXIT_USAGE;
    }
    opts->command = argv[optind++];
    const cli_command *command = find_command(opts->command);
    if (!command) {
        fprintf(stderr, "outbox-relay: unknown command '%s'; try 'outbox-relay --help'\n",
                opts->command);
        return RELAY_EXIT_USAGE;
    }
    if (help) {
        print_command_help(stdout, command);
        return -1;
    }
    if (optind < argc && !command->takes_args) {
        fprintf(stderr, "outbox-relay %s: unexpected argument '%s'\n", opts->command, argv[optind]);
        return RELAY_EXIT_USAGE;
    }
    opts->args = argv + optind;
    opts->n_args = (size_t)(argc - optind);
    /* Another command's option would be ignored here, and mean nothing. */
    for (size_t i = 0; i < sizeof command_options / sizeof command_options[0]; i++) {
        if ((given & command_options[i].bit) && !(command->options & command_options[i].bit)) {
            fprintf(stderr,
                    "outbox-relay %s: %s is not an option of %s; try 'outbox-relay %s --help'\n",
                    opts->command, command_options[i].name, opts->command, opts->command);
            return RELAY_EXIT_USAGE;
        }
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
        fprintf(stderr, "outbox-relay %s: %s; try 'outbox-relay %s --help'\n", command->name, err,
                command->name);
        free(opts.ids);
        return RELAY_EXIT_USAGE;
    }

    /* The command line's log format holds for a config that cannot be read too. */
    relay_logger log = relay_logger_default();
    if (opts.has_log_format)
        log.format = opts.log_format;
    relay_config config;
    if (relay_config_load(opts.config_path, &config, err, sizeof err) != 0) {
        relay_error(&log, "%s", err);
        free(opts.ids);
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
    free(opts.ids);
    return rc;
}
