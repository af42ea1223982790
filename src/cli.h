/* The command line: `outbox-relay COMMAND -c FILE [options]`. */
#ifndef RELAY_CLI_H
#define RELAY_CLI_H

/* Parses argv, runs the command, returns the process exit code (a relay_exit_code). */
int relay_cli_main(int argc, char **argv);

#endif
