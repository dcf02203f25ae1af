/* config.h - options from command-line flags and environment variables.
 *
 * Each option has a long flag (--port), an environment variable
 * (AT_PORT), a default and a help line.  Precedence: flag > environment >
 * default.  --help prints the generated usage. */
#ifndef AT_CORE_CONFIG_H
#define AT_CORE_CONFIG_H

#include <stddef.h>

#include "core/error.h"

typedef enum { AT_OPT_STRING, AT_OPT_INT, AT_OPT_DOUBLE, AT_OPT_BOOL } at_opt_type;

typedef struct at_option {
    const char *flag; /* "port" => --port VALUE / --port=VALUE */
    const char *env;  /* "AT_PORT", or NULL */
    at_opt_type type;
    const char *def; /* default as text, or NULL */
    const char *help;
    void *target;    /* char ** (malloc'd copy) | long * | double * | int * */
    double min, max; /* range for INT/DOUBLE when min < max */
} at_option;

/* Parses argv[first..argc) (flags anywhere; non-flag words collected into
 * positional[], at most max_pos).  Returns 0, 1 if --help was given (usage
 * already printed to stdout), or AT_E_INVALID with a message naming the
 * flag (unknown flag, missing value, not a number, out of range). */
int at_config_parse(const at_option *opts, size_t n_opts, int argc, char **argv, int first,
                    const char *usage_line, const char **positional, size_t max_pos, size_t *n_pos,
                    at_err *err);
void at_config_print_help(const at_option *opts, size_t n_opts, const char *usage_line);
/* The same usage text as a malloc'd string (NULL on allocation failure).
 * Added so tests and services can embed it. */
char *at_config_help(const at_option *opts, size_t n_opts, const char *usage_line);
/* Notes on at_config_parse (added): AT_OPT_STRING targets are set to NULL
 * on entry and then own malloc'd copies, so call at_config_free after any
 * return, error included.  An empty environment value counts as unset.
 * "--" ends the flags; "-h" equals --help; "--no-FLAG" clears a bool; a
 * bool flag also accepts "--flag=false".  A flag's value is the next word
 * unless that word starts with "--" (then: missing value). */
/* Frees the strings allocated into AT_OPT_STRING targets. */
void at_config_free(const at_option *opts, size_t n_opts);

#endif
