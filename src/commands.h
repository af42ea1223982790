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

/* What `dead-letters` does. */
typedef enum relay_dead_letters_action {
    RELAY_DEAD_LETTERS_LIST,
    RELAY_DEAD_LETTERS_RETRY,
    RELAY_DEAD_LETTERS_DROP,
} relay_dead_letters_action;

/* The command line as parsed. An option of another command is a usage error (`status --to 5`),
 * refused before the command runs. */
typedef struct relay_cli_options {
    const char *command;
    const char *config_path;
    /* --log-level and --log-format, checked by the command line; they override log.level and
     * log.format, and are already applied to the logger. */
    bool has_log_level, has_log_format;
    relay_log_level log_level;
    relay_log_format log_format;
    bool json;              /* status, dead-letters list */
    const char *to;         /* reset, replay: --to as given */
    const char *from;       /* replay: --from as given */
    bool reset_latest;      /* reset: --latest */
    int64_t reset_position; /* reset: --to as checked by the command line, 0 with --latest */
    /* The arguments after the command's name, borrowed from argv (dead-letters). */
    char *const *args;
    size_t n_args;
    relay_dead_letters_action dead_letters_action;
    /* dead-letters retry and drop: the event ids, ascending and distinct; owned by the command
     * line (freed after the command returns). */
    int64_t *ids;
    size_t n_ids;
    int64_t replay_from, replay_to; /* replay: --from and --to as checked, from <= to */
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

/*
 * `dead-letters` (cmd_dead_letters.c): this relay's entries in relay_dead_letters. list prints
 * them (opts->json: one JSON object a line); retry reads the events opts->ids from the table,
 * delivers them through the configured sink marked RELAY_SINK_EVENT_REDELIVERED and, once the sink
 * acknowledged them, removes their dead letters; drop removes them. An id that is not a dead letter
 * of this relay refuses the whole command (RELAY_EXIT_REFUSED) before anything changes.
 */
int relay_cmd_dead_letters(const relay_cli_options *opts, const relay_config *config,
                           const relay_logger *log, FILE *out);

/*
 * `replay` (cmd_replay.c): delivers the events of ids opts->replay_from..replay_to again through
 * the configured sink, marked RELAY_SINK_EVENT_REDELIVERED, in id order and in batches, each
 * acknowledged before the next. Refuses a range that reaches above the stored position. Neither
 * takes the name's lock nor writes the checkpoint: it runs beside the relay.
 */
int relay_cmd_replay(const relay_cli_options *opts, const relay_config *config,
                     const relay_logger *log, FILE *out);

#endif
