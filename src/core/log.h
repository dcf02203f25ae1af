/* log.h - structured logs: one line per event, key=value (logfmt) or JSON.
 *
 * The logger is an explicit object passed to whoever logs; it writes whole
 * lines with a single write() so lines from threads never interleave. */
#ifndef AT_CORE_LOG_H
#define AT_CORE_LOG_H

typedef enum { AT_LOG_DEBUG, AT_LOG_INFO, AT_LOG_WARN, AT_LOG_ERROR } at_log_level;

typedef struct at_log at_log;

/* fd: where lines go (2 = stderr).  json=1: {"ts":..,"level":..,"msg":..,...} */
at_log *at_log_new(int fd, at_log_level min_level, int json);
void at_log_free(at_log *l);
/* "debug" | "info" | "warn" | "error" -> level; -1 if unknown. */
int at_log_level_parse(const char *s);

/* msg, then alternating key/value string pairs terminated by NULL:
 *   at_log_write(l, AT_LOG_INFO, "request", "method", "POST", "path", p, NULL);
 * Values are quoted/escaped as needed.  l may be NULL (no-op). */
/* Notes (added): logfmt always quotes msg; other values are bare unless
 * they hold spaces, '=', quotes, backslashes, control or non-ASCII bytes.
 * Invalid UTF-8 becomes \ufffd; values over 4096 bytes are cut ("...").
 * A NULL value is logged as "" and ends the list. */
void at_log_write(at_log *l, at_log_level level, const char *msg, ...) __attribute__((sentinel));

#endif
