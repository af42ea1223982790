/* Text from the database (a relay's name, a sink's reason) printed for an operator to read. */
#ifndef RELAY_JSON_TEXT_H
#define RELAY_JSON_TEXT_H

#include <stdio.h>

/* Prints text (UTF-8, as the session's client_encoding makes it) as a JSON string. Cannot fail
 * in a way the caller could act on: a write error shows on out. */
void relay_json_print_string(FILE *out, const char *text);

/* Prints text with its control characters escaped (\n, \t, \xNN), so that one value stays on its
 * line of a table. Cannot fail, as above. */
void relay_text_print_escaped(FILE *out, const char *text);

#endif
