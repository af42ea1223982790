/*
 * The commands of `outbox-relay COMMAND -c FILE [options]`. Every command has an entry point of
 * the one type relay_command_fn, so that the command line dispatches through a table (cli.c) and
 * a command is added in one place.
 */
#ifndef RELAY_COMMANDS_H
#define RELAY_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "log.h"

/* The command line as parsed. A command ignores the options of the others: `status --to 5` is not
 * an error. */
typedef struct relay_cli_options {
    const char *command;
    const char *config_path;
    /* --log-level and --log-format, checked by the command line; they override log.level and
     * log.format, and are already applied to the logger. */
    bool has_log_level, has_log_format;
    relay_log_level log_level;
    relay_log_format log_format;
    bool json;              /* status */
    const char *reset_to;   /* reset: --to as given */
    bool reset_latest;      /* reset: --latest */
    int64_t reset_position; /* reset: --to as checked by the command line, 0 with --latest */
} relay_cli_options;

/*
 * Runs a command with the config loaded and the logger configured. Prints its result to out and
 * its reasons to the log. Returns a relay_exit_code.
 */
typedef int relay_command_fn(const relay_cli_options *opts, const relay_config *config,
                             const relay_logger *log, FILE *out);

/* `run` (cmd_run.c): relays until a stop signal; see relay_run. */
int relay_cmd_run(const relay_cli_options *opts, const relay_config *config,
                  const relay_logger *log, FILE *out);

/* `migrate` (cmd_migrate.c): applies the migrations not applied yet, one line each to out. */
int relay_cmd_migrate(const relay_cli_options *opts, const relay_config *config,
                      const relay_logger *log, FILE *out);

/* `check` (check.c): connects, inspects the table and columns, reads the checkpoint, loads and
 * initialises the sink, printing one line per step to out; delivers nothing. */
int relay_cmd_check(const relay_cli_options *opts, const relay_config *config,
                    const relay_logger *log, FILE *out);

/* `status` (status.c): prints the position against the table, as text or (opts->json) JSON. */
int relay_cmd_status(const relay_cli_options *opts, const relay_config *config,
                     const relay_logger *log, FILE *out);

/*
 * `reset` (reset.c): sets the position of config->name to opts->reset_position, or to the table's
 * max id with opts->reset_latest, records this database's system identifier and forgets the
 * watched gaps. Refuses while a relay of that name runs (it holds the name's lock). Logs the move
 * at WARN and prints it to out.
 */
int relay_cmd_reset(const relay_cli_options *opts, const relay_config *config,
                    const relay_logger *log, FILE *out);

#endif
