/* config.c - flags and environment variables into typed targets.
 *
 * Order of application: default, then environment, then flags, so the
 * last writer wins and precedence is flag > env > default.  Every value
 * goes through the same parser, so a bad default is caught like a bad
 * flag (a programming error shows up on first start, not in production). */
#include "core/config.h"

#include "core/strbuf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Applies text `val` to the option; `src` names where it came from
 * ("--port", "AT_PORT", "default of --port") for the error message. */
static int apply(const at_option *o, const char *val, const char *src, at_err *err)
{
    if (!o->target) return 0;
    switch (o->type) {
    case AT_OPT_STRING: {
        char *copy = strdup(val);
        if (!copy) return at_err_set(err, AT_E_NOMEM, "out of memory");
        char **t = o->target;
        free(*t);
        *t = copy;
        return 0;
    }
    case AT_OPT_INT: {
        char *e = NULL;
        errno = 0;
        long v = strtol(val, &e, 10);
        if (!*val || *e || e == val)
            return at_err_set(err, AT_E_INVALID, "%s: not an integer: '%s'", src, val);
        if (errno == ERANGE) return at_err_set(err, AT_E_INVALID, "%s: integer out of range: '%s'", src, val);
        if (o->min < o->max && ((double)v < o->min || (double)v > o->max))
            return at_err_set(err, AT_E_INVALID, "%s: %ld is out of range [%.15g, %.15g]", src, v, o->min,
                              o->max);
        *(long *)o->target = v;
        return 0;
    }
    case AT_OPT_DOUBLE: {
        char *e = NULL;
        errno = 0;
        double v = strtod(val, &e);
        if (!*val || *e || e == val || !isfinite(v))
            return at_err_set(err, AT_E_INVALID, "%s: not a number: '%s'", src, val);
        if (o->min < o->max && (v < o->min || v > o->max))
            return at_err_set(err, AT_E_INVALID, "%s: %g is out of range [%.15g, %.15g]", src, v, o->min,
                              o->max);
        *(double *)o->target = v;
        return 0;
    }
    case AT_OPT_BOOL: {
        int b;
        if (parse_bool(val, &b))
            return at_err_set(err, AT_E_INVALID, "%s: expected 1/true/yes/on or 0/false/no/off, got '%s'",
                              src, val);
        *(int *)o->target = b;
        return 0;
    }
    }
    return at_err_set(err, AT_E_INVALID, "%s: unknown option type", src);
}

static const at_option *find_opt(const at_option *opts, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].flag && strlen(opts[i].flag) == len && !strncmp(opts[i].flag, name, len)) return &opts[i];
    return NULL;
}

int at_config_parse(const at_option *opts, size_t n_opts, int argc, char **argv, int first,
                    const char *usage_line, const char **positional, size_t max_pos, size_t *n_pos,
                    at_err *err)
{
    char src[160];
    size_t np = 0;
    if (n_pos) *n_pos = 0;
    /* String targets are owned from here on so at_config_free is safe. */
    for (size_t i = 0; i < n_opts; i++)
        if (opts[i].type == AT_OPT_STRING && opts[i].target) *(char **)opts[i].target = NULL;
    for (size_t i = 0; i < n_opts; i++) {
        const at_option *o = &opts[i];
        if (o->def) {
            snprintf(src, sizeof src, "default of --%s", o->flag);
            int rc = apply(o, o->def, src, err);
            if (rc) return rc;
        }
        const char *ev = o->env ? getenv(o->env) : NULL;
        if (ev && *ev) { /* VAR= (empty) counts as unset, as compose files produce it */
            int rc = apply(o, ev, o->env, err);
            if (rc) return rc;
        }
    }
    int only_pos = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!a) continue;
        if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
            if (np >= max_pos || !positional)
                return at_err_set(err, AT_E_INVALID, "unexpected argument '%s'", a);
            positional[np++] = a;
            if (n_pos) *n_pos = np;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            at_config_print_help(opts, n_opts, usage_line);
            return 1;
        }
        if (a[1] != '-') return at_err_set(err, AT_E_INVALID, "unknown flag '%s' (flags are --name)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const at_option *o = find_opt(opts, n_opts, name, nlen);
        int negated = 0;
        if (!o && !eq && nlen > 3 && !strncmp(name, "no-", 3)) {
            o = find_opt(opts, n_opts, name + 3, nlen - 3); /* --no-json-logs */
            if (o && o->type == AT_OPT_BOOL)
                negated = 1;
            else
                o = NULL;
        }
        if (!o) return at_err_set(err, AT_E_INVALID, "unknown flag '--%.*s'", (int)nlen, name);
        snprintf(src, sizeof src, "--%s", o->flag);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else if (o->type == AT_OPT_BOOL) {
            val = negated ? "0" : "1"; /* bools take no separate value */
        } else {
            /* The next word is the value unless it is another --flag (a
             * forgotten value), so "--offset -5" still works. */
            if (i + 1 >= argc || !argv[i + 1] || !strncmp(argv[i + 1], "--", 2))
                return at_err_set(err, AT_E_INVALID, "--%s: missing value", o->flag);
            val = argv[++i];
        }
        int rc = apply(o, val, src, err);
        if (rc) return rc;
    }
    return 0;
}

static const char *placeholder(at_opt_type t)
{
    switch (t) {
    case AT_OPT_STRING: return " <str>";
    case AT_OPT_INT: return " <int>";
    case AT_OPT_DOUBLE: return " <num>";
    default: return "";
    }
}

char *at_config_help(const at_option *opts, size_t n_opts, const char *usage_line)
{
    at_strbuf b = {0};
    at_strbuf_printf(&b, "usage: %s\n\noptions:\n", usage_line ? usage_line : "");
    size_t w = strlen("-h, --help");
    for (size_t i = 0; i < n_opts; i++) {
        size_t l = 2 + strlen(opts[i].flag ? opts[i].flag : "") + strlen(placeholder(opts[i].type));
        if (l > w) w = l;
    }
    for (size_t i = 0; i < n_opts; i++) {
        const at_option *o = &opts[i];
        char left[256];
        snprintf(left, sizeof left, "--%s%s", o->flag ? o->flag : "", placeholder(o->type));
        at_strbuf_printf(&b, "  %-*s  %s", (int)w, left, o->help ? o->help : "");
        if (o->min < o->max && (o->type == AT_OPT_INT || o->type == AT_OPT_DOUBLE))
            at_strbuf_printf(&b, " (%.15g..%.15g)", o->min, o->max);
        if (o->env) at_strbuf_printf(&b, " [env: %s]", o->env);
        if (o->def && *o->def) at_strbuf_printf(&b, " [default: %s]", o->def);
        at_strbuf_printf(&b, "\n");
    }
    at_strbuf_printf(&b, "  %-*s  %s\n", (int)w, "-h, --help", "show this help and exit");
    return at_strbuf_take(&b);
}

void at_config_print_help(const at_option *opts, size_t n_opts, const char *usage_line)
{
    char *h = at_config_help(opts, n_opts, usage_line);
    if (h) {
        fputs(h, stdout);
        fflush(stdout);
    }
    free(h);
}

void at_config_free(const at_option *opts, size_t n_opts)
{
    for (size_t i = 0; opts && i < n_opts; i++) {
        if (opts[i].type == AT_OPT_STRING && opts[i].target) {
            char **t = opts[i].target;
            free(*t);
            *t = NULL;
        }
    }
}
