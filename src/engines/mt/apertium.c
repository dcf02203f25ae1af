/* apertium.c - Apertium language pairs as persistent null-flush pipelines.
 *
 * Framing follows apertium-apy: the programs of a pair's .mode file are
 * started once, each with -z (null flush), piped into each other; a
 * request is written as one deformatted block followed by a NUL, and the
 * pipeline answers with the translated block followed by a NUL.  The
 * deformatter/reformatter (what apertium-destxt/-retxt do) is done here in
 * C: it escapes Apertium's reserved characters and keeps layout (newlines,
 * tabs, runs of spaces) in "superblanks" that pass through untouched.
 *
 * Robustness:
 *   - one mutex per pair serialises requests on its pipeline, so answers
 *     never mix; different pairs run in parallel;
 *   - writing and reading are interleaved with poll() against a deadline,
 *     so a large request cannot deadlock on full pipe buffers and a stuck
 *     pipeline is killed and restarted instead of blocking forever;
 *   - a pipeline whose process died (EOF, EPIPE) is reaped, restarted and
 *     the request retried once;
 *   - the pipeline's stdin is a Unix socket written with MSG_NOSIGNAL, so a
 *     dead reader gives EPIPE instead of a SIGPIPE that would kill the
 *     service; no process-wide signal disposition is touched;
 *   - every descriptor is close-on-exec (pipelines of other pairs must not
 *     inherit them, or EOF would never be seen), and every child is reaped.
 *
 * Unknown words: the generator runs with -n (like `apertium -u`) and any
 * remaining '*', '#', '@' marks are stripped; the same characters typed by
 * the user are escaped or protected in superblanks so they survive. */
#include "engines/mt/apertium.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/lang.h"
#include "core/strbuf.h"

#ifndef AT_APERTIUM_MODES_DIR
#define AT_APERTIUM_MODES_DIR "/usr/share/apertium/modes"
#endif

extern char **environ;

#define AP_MAX_PROCS          32         /* programs in one mode pipeline */
#define AP_MAX_ARGS           32         /* arguments of one program */
#define AP_MAX_MODE_FILE      65536      /* a mode file is a one-line shell pipeline */
#define AP_MAX_TEXT           (1u << 20) /* 1 MiB of input text per request */
#define AP_PIECE              4096       /* text translated per pipeline round trip */
#define AP_DEFAULT_TIMEOUT_MS 30000

typedef struct ap_pair {
    char mode[NAME_MAX + 1]; /* "eng-spa" */
    char mode_path[PATH_MAX];
    pthread_mutex_t mu; /* one request at a time on this pipeline */
    int running;
    pid_t pids[AP_MAX_PROCS];
    int n_pids;
    int in_fd;  /* our end of the first program's stdin */
    int out_fd; /* our end of the last program's stdout */
} ap_pair;

typedef struct ap_engine {
    char modes_dir[PATH_MAX];
    int timeout_ms;
    ap_pair *pairs; /* parallel to pub */
    at_mt_pair *pub;
    size_t n;
} ap_engine;

/* ---- language codes ------------------------------------------------------ */

/* "spa" -> "es", "eng_US" -> "en_US"; codes without a 639-1 form stay. */
static void map_code(const char *in, size_t len, char *out, size_t cap)
{
    size_t base = 0;
    while (base < len && in[base] != '_') base++;
    char code[4];
    const char *mapped = NULL;
    if (base == 3) {
        memcpy(code, in, 3);
        code[3] = '\0';
        mapped = at_lang_iso1(code);
    }
    if (mapped)
        snprintf(out, cap, "%s%.*s", mapped, (int)(len - base), in + base);
    else
        snprintf(out, cap, "%.*s", (int)len, in);
}

/* A language part of a mode name: 2-3 lowercase letters, optionally
 * "_Variant".  Anything else (analysers like "eng-spa-tagger") is not a
 * translation direction. */
static int valid_code(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] >= 'a' && s[i] <= 'z') i++;
    if (i < 2 || i > 3) return 0;
    if (i == len) return 1;
    if (s[i] != '_' || i + 1 == len || len - i > 8) return 0;
    for (i++; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return 0;
    return 1;
}

/* ---- process pipeline ---------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kills and reaps every process of the pipeline; closes our ends. */
static void pipeline_stop(ap_pair *p)
{
    if (p->in_fd >= 0) close(p->in_fd);
    if (p->out_fd >= 0) close(p->out_fd);
    p->in_fd = p->out_fd = -1;
    for (int i = 0; i < p->n_pids; i++) kill(p->pids[i], SIGTERM);
    /* Give them a moment to exit on their own (stdin is closed too). */
    int64_t until = now_ms() + 500;
    int left = p->n_pids;
    while (left > 0) {
        left = 0;
        for (int i = 0; i < p->n_pids; i++) {
            if (p->pids[i] <= 0) continue;
            pid_t r = waitpid(p->pids[i], NULL, WNOHANG);
            if (r == p->pids[i] || (r < 0 && errno != EINTR))
                p->pids[i] = 0;
            else
                left++;
        }
        if (left == 0) break;
        if (now_ms() >= until) {
            for (int i = 0; i < p->n_pids; i++)
                if (p->pids[i] > 0) {
                    kill(p->pids[i], SIGKILL);
                    while (waitpid(p->pids[i], NULL, 0) < 0 && errno == EINTR) {}
                    p->pids[i] = 0;
                }
            break;
        }
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    p->n_pids = 0;
    p->running = 0;
}

/* Programs that do not understand -z (apertium-apy's list). */
static int needs_z(const char *prog)
{
    static const char *const no_z[] = {"vislcg3", "cg-mwesplit", "hfst-tokenise", "hfst-tokenize",
                                       "divvun-suggest"};
    const char *base = strrchr(prog, '/');
    base = base ? base + 1 : prog;
    for (size_t i = 0; i < sizeof no_z / sizeof no_z[0]; i++)
        if (strcmp(base, no_z[i]) == 0) return 0;
    return 1;
}

typedef struct {
    char *buf; /* tokens live here */
    char *argv[AP_MAX_PROCS][AP_MAX_ARGS + 2];
    int n;
} ap_cmds;

/* Parses "prog 'arg' $1 | prog2 ..." into argv arrays: quotes removed,
 * $1 -> -n (generation without unknown-word marks), $2 dropped, -z added
 * after each program name.  Only the shell features mode files use. */
static int parse_mode(const char *text, ap_cmds *c, at_err *err)
{
    size_t len = strlen(text);
    c->buf = malloc(len * 2 + 16); /* tokens + NULs + the static strings */
    c->n = 0;
    if (!c->buf) return at_err_set(err, AT_E_NOMEM, "out of memory");
    char *o = c->buf;
    int argc = 0;
    const char *s = text;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
        if (*s == '|' || *s == '\0') {
            if (argc == 0) return at_err_set(err, AT_E_CORRUPT, "empty command in mode file");
            c->argv[c->n][argc] = NULL;
            c->n++;
            argc = 0;
            if (*s == '\0') break;
            if (c->n >= AP_MAX_PROCS) return at_err_set(err, AT_E_CORRUPT, "mode file has too many programs");
            s++;
            continue;
        }
        char *tok = o;
        while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '|') {
            if (*s == '\'' || *s == '"') {
                char q = *s++;
                while (*s && *s != q) *o++ = *s++;
                if (*s != q) return at_err_set(err, AT_E_CORRUPT, "unbalanced quote in mode file");
                s++;
            } else {
                *o++ = *s++;
            }
        }
        *o++ = '\0';
        if (strcmp(tok, "$2") == 0) continue;
        if (strcmp(tok, "$1") == 0) tok = "-n";
        if (argc >= AP_MAX_ARGS)
            return at_err_set(err, AT_E_CORRUPT, "mode file command has too many arguments");
        c->argv[c->n][argc++] = tok;
        if (argc == 1 && needs_z(tok)) c->argv[c->n][argc++] = "-z";
    }
    return 0;
}

static int read_small_file(const char *path, char **out, at_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "re");
    if (!f) return at_err_set(err, AT_E_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(AP_MAX_MODE_FILE + 1);
    if (!buf) {
        fclose(f);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, AP_MAX_MODE_FILE + 1, f);
    fclose(f);
    if (n > AP_MAX_MODE_FILE) {
        free(buf);
        return at_err_set(err, AT_E_CORRUPT, "%s is too large for a mode file", path);
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int pipeline_start(ap_pair *p, at_err *err)
{
    char *text = NULL;
    ap_cmds c = {0};
    int rc = read_small_file(p->mode_path, &text, err);
    if (rc == 0) rc = parse_mode(text, &c, err);
    if (rc) {
        free(text);
        free(c.buf);
        return rc;
    }
    int sv[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        free(text);
        free(c.buf);
        return at_err_set(err, AT_E_IO, "socketpair: %s", strerror(errno));
    }
    p->in_fd = sv[0];
    int prev_read = sv[1]; /* stdin of the next program */
    p->n_pids = 0;

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, dflt;
    sigemptyset(&none);
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigaddset(&dflt, SIGTERM);
    sigaddset(&dflt, SIGINT);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dflt);
    /* Own process group: a Ctrl-C meant for the service's graceful
     * shutdown must not kill the pipelines under in-flight requests. */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    for (int i = 0; i < c.n && rc == 0; i++) {
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0) {
            rc = at_err_set(err, AT_E_IO, "pipe: %s", strerror(errno));
            break;
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, prev_read, 0);
        posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        posix_spawnattr_setpgroup(&attr, p->n_pids ? p->pids[0] : 0);
        pid_t pid;
        /* analyzer: c.buf is freed after the loop on every path
         * NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        int e = posix_spawnp(&pid, c.argv[i][0], &fa, &attr, c.argv[i], environ);
        posix_spawn_file_actions_destroy(&fa);
        close(prev_read);
        close(pfd[1]);
        prev_read = pfd[0];
        if (e != 0) {
            rc = at_err_set(err, AT_E_ENGINE, "cannot start %s for apertium %s: %s", c.argv[i][0], p->mode,
                            strerror(e));
            break;
        }
        p->pids[p->n_pids++] = pid;
    }
    posix_spawnattr_destroy(&attr);
    p->out_fd = prev_read;
    free(text);
    free(c.buf);
    if (rc) {
        pipeline_stop(p);
        return rc;
    }
    fcntl(p->in_fd, F_SETFL, fcntl(p->in_fd, F_GETFL) | O_NONBLOCK);
    fcntl(p->out_fd, F_SETFL, fcntl(p->out_fd, F_GETFL) | O_NONBLOCK);
    p->running = 1;
    return 0;
}

typedef enum { RT_OK = 0, RT_DIED, RT_TIMEOUT, RT_FAIL } rt_status;

/* One round trip: writes req (which ends in NUL) and reads up to the NUL
 * of the answer, interleaved so neither side blocks on a full pipe. */
static rt_status round_trip(ap_pair *p, const char *req, size_t req_len, int timeout_ms, char **out,
                            size_t *out_len, size_t out_cap, at_err *err)
{
    size_t sent = 0, len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return RT_FAIL;
    }
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        struct pollfd fds[2] = {{.fd = p->out_fd, .events = POLLIN}, {.fd = p->in_fd, .events = POLLOUT}};
        nfds_t nfds = sent < req_len ? 2 : 1;
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            free(buf);
            return RT_TIMEOUT;
        }
        int r = poll(fds, nfds, (int)left);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(buf);
            at_err_set(err, AT_E_IO, "poll: %s", strerror(errno));
            return RT_FAIL;
        }
        if (nfds == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = send(p->in_fd, req + sent, req_len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR) {
                free(buf);
                return RT_DIED; /* EPIPE / ECONNRESET: first program gone */
            }
            if (w > 0) sent += (size_t)w;
        }
        if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
            if (cap - len < 4096) {
                if (cap >= out_cap) {
                    free(buf);
                    at_err_set(err, AT_E_ENGINE, "apertium %s produced too much output", p->mode);
                    return RT_FAIL;
                }
                char *nb = realloc(buf, cap * 2);
                if (!nb) {
                    free(buf);
                    at_err_set(err, AT_E_NOMEM, "out of memory");
                    return RT_FAIL;
                }
                buf = nb;
                cap *= 2;
            }
            ssize_t n = read(p->out_fd, buf + len, cap - len);
            if (n == 0) {
                free(buf);
                return RT_DIED;
            }
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                free(buf);
                return RT_DIED;
            }
            char *nul = memchr(buf + len, '\0', (size_t)n);
            len += (size_t)n;
            if (nul) {
                if (sent < req_len || (size_t)(nul - buf) + 1 != len) {
                    /* An answer before our request was fully written, or
                     * bytes after it: the stream is out of step. */
                    free(buf);
                    at_err_set(err, AT_E_ENGINE, "apertium %s answered out of step", p->mode);
                    return RT_FAIL;
                }
                *out = buf;
                *out_len = (size_t)(nul - buf);
                return RT_OK;
            }
        }
    }
}

/* ---- deformat / reformat ------------------------------------------------- */

/* Output is built in at_strbuf (core/strbuf.h): appends never fail one by
 * one, an allocation failure is checked once at the end (oom). */
static void sb_putc(at_strbuf *b, char c) { at_strbuf_put(b, &c, 1); }

/* Length of a valid UTF-8 sequence at s (max n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t l;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        l = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        l = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        l = 4;
        cp = c & 0x07;
    } else
        return 0;
    if (l > n) return 0;
    for (size_t i = 1; i < l; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return l;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Stands for '^' inside our superblanks (deformat). */
#define CARET_MARK "\x01"

/* What apertium-destxt does, plus input hygiene: invalid UTF-8 becomes
 * U+FFFD and control characters become spaces (either could wedge or
 * crash a pipeline program, taking every later request with it). */
static int deformat(const char *text, size_t len, at_strbuf *o)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len && !o->oom) {
        unsigned char c = s[i];
        if (is_ws((char)c) || (c < 0x20) || c == 0x7F) {
            size_t j = i;
            while (j < len && (is_ws((char)s[j]) || s[j] < 0x20 || s[j] == 0x7F)) j++;
            if (j - i == 1 && c == ' ') {
                sb_putc(o, ' ');
            } else { /* layout kept verbatim in a superblank */
                sb_putc(o, '[');
                for (size_t k = i; k < j; k++) sb_putc(o, is_ws((char)s[k]) ? (char)s[k] : ' ');
                sb_putc(o, ']');
            }
            i = j;
            continue;
        }
        if (c == '^') {
            /* Escaped, a '^' after the last word wedges lrx-proc at the
             * flush (`apertium eng-spa` fails on "big^" with "Malformed
             * input stream"): it travels as a superblank holding a
             * control character the user cannot send (see above). */
            at_strbuf_put(o, "[" CARET_MARK "]", 3);
            i++;
        } else if (strchr("\\[]$/<>@{}", c)) {
            char e[2] = {'\\', (char)c};
            at_strbuf_put(o, e, 2);
            i++;
        } else if (c == '~' || c == '#' || c == '*') {
            /* Generator marks: protect the user's own in a superblank. */
            char e[3] = {'[', (char)c, ']'};
            at_strbuf_put(o, e, 3);
            i++;
        } else {
            size_t l = utf8_len(s + i, len - i);
            if (l == 0) {
                at_strbuf_put(o, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                at_strbuf_put(o, text + i, l);
                i += l;
            }
        }
    }
    /* A trailing blank lets the analyser finish the last word at the NUL. */
    at_strbuf_put(o, "[]", 3); /* includes the NUL terminator */
    return o->oom ? -1 : 0;
}

/* What apertium-retxt does, plus stripping unknown-word marks. */
static int reformat(const char *s, size_t n, at_strbuf *o)
{
    for (size_t i = 0; i < n && !o->oom; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            sb_putc(o, s[++i]);
        } else if (c == '[') {
            for (i++; i < n && s[i] != ']'; i++) {
                if (s[i] == '\\' && i + 1 < n) i++;
                sb_putc(o, s[i] == CARET_MARK[0] ? '^' : s[i]);
            }
        } else if ((c == '*' || c == '#' || c == '@') && i + 1 < n && !is_ws(s[i + 1])) {
            /* unknown / untranslatable word mark: drop it, keep the word */
        } else {
            sb_putc(o, c);
        }
    }
    if (!o->p) at_strbuf_put(o, "", 0);
    return o->oom ? -1 : 0;
}

/* ---- requests ------------------------------------------------------------ */

static int translate_piece(ap_engine *e, ap_pair *p, const char *text, size_t len, at_strbuf *out,
                           at_err *err)
{
    at_strbuf req = {0};
    if (deformat(text, len, &req) < 0) {
        at_strbuf_free(&req);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    char *ans = NULL;
    size_t ans_len = 0;
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!p->running && (rc = pipeline_start(p, err)) != 0) break;
        rt_status st =
            round_trip(p, req.p, req.n, e->timeout_ms, &ans, &ans_len, (size_t)64 * 1024 + req.n * 16, err);
        if (st == RT_OK) {
            rc = 0;
            break;
        }
        pipeline_stop(p); /* never reuse a pipeline in an unknown state */
        if (st == RT_TIMEOUT) {
            rc = at_err_set(err, AT_E_ENGINE, "apertium %s did not answer within %d ms; pipeline restarted",
                            p->mode, e->timeout_ms);
            break;
        }
        if (st == RT_FAIL) {
            rc = err ? err->code : AT_E_ENGINE;
            break;
        }
        rc = at_err_set(err, AT_E_ENGINE, "apertium %s pipeline died%s", p->mode, attempt ? " twice" : "");
    }
    pthread_mutex_unlock(&p->mu);
    at_strbuf_free(&req);
    if (rc) return rc;

    at_strbuf tmp = {0};
    if (reformat(ans, ans_len, &tmp) < 0) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    free(ans);
    if (rc == 0) {
        /* Apertium adds/removes blanks at the edges; follow the input. */
        const char *a = tmp.p;
        size_t an = tmp.n;
        if (len && !is_ws(text[0]))
            while (an && is_ws(*a)) a++, an--;
        if (len && !is_ws(text[len - 1]))
            while (an && is_ws(a[an - 1])) an--;
        at_strbuf_put(out, a, an);
        if (out->oom) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    at_strbuf_free(&tmp);
    return rc;
}

/* End of the next piece: at most AP_PIECE bytes, preferably after a
 * newline, a sentence end or a space, never inside a UTF-8 sequence. */
static size_t piece_end(const char *s, size_t len)
{
    if (len <= AP_PIECE) return len;
    size_t best = 0;
    for (size_t i = AP_PIECE / 2; i < AP_PIECE; i++)
        if (s[i] == '\n') best = i + 1;
    if (!best)
        for (size_t i = AP_PIECE / 2; i + 1 < AP_PIECE; i++)
            if (strchr(".!?", s[i]) && s[i + 1] == ' ') best = i + 2;
    if (!best)
        for (size_t i = AP_PIECE / 2; i < AP_PIECE; i++)
            if (s[i] == ' ') best = i + 1;
    if (!best) {
        /* back to a character's start; a longer run of continuation bytes
         * than UTF-8 has is not text (the deformatter makes each U+FFFD),
         * and is cut anywhere: stepping back over all of it gave 0 */
        best = AP_PIECE;
        while (best > AP_PIECE - 3 && ((unsigned char)s[best] & 0xC0) == 0x80) best--;
        if (((unsigned char)s[best] & 0xC0) == 0x80) best = AP_PIECE;
    }
    return best;
}

static ap_pair *find_pair(ap_engine *e, const char *source, const char *target)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->pub[i].source, source) == 0 && strcmp(e->pub[i].target, target) == 0)
            return &e->pairs[i];
    return NULL;
}

static int ap_translate(void *impl, const char *source, const char *target, const char *text, char **out,
                        at_err *err)
{
    ap_engine *e = impl;
    *out = NULL;
    ap_pair *p = find_pair(e, source, target);
    if (!p) return at_err_set(err, AT_E_UNSUPPORTED, "apertium has no pair %s-%s", source, target);
    size_t len = strlen(text);
    if (len > AP_MAX_TEXT)
        return at_err_set(err, AT_E_TOO_LARGE, "text is %zu bytes; apertium takes at most %u", len,
                          AP_MAX_TEXT);
    at_strbuf res = {0};
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = piece_end(text + off, len - off);
        rc = translate_piece(e, p, text + off, n, &res, err);
        off += n;
    }
    if (rc) {
        at_strbuf_free(&res);
        return rc;
    }
    if (!(*out = at_strbuf_take(&res))) return at_err_set(err, AT_E_NOMEM, "out of memory");
    return 0;
}

static const at_mt_pair *ap_pairs(void *impl, size_t *n)
{
    ap_engine *e = impl;
    *n = e->n;
    return e->pub;
}

static void ap_destroy(void *impl)
{
    ap_engine *e = impl;
    if (!e) return;
    for (size_t i = 0; i < e->n; i++) {
        pipeline_stop(&e->pairs[i]);
        pthread_mutex_destroy(&e->pairs[i].mu);
    }
    free(e->pairs);
    free(e->pub);
    free(e);
}

static const at_mt_ops ap_ops = {
    .name = "apertium",
    .destroy = ap_destroy,
    .translate = ap_translate,
    .pairs = ap_pairs,
};

/* ---- discovery ----------------------------------------------------------- */

static int mode_filter(const struct dirent *d)
{
    size_t l = strlen(d->d_name);
    return l > 5 && strcmp(d->d_name + l - 5, ".mode") == 0;
}

static int add_pair(ap_engine *e, size_t cap, const char *src, const char *tgt, const char *mode)
{
    if (find_pair(e, src, tgt) || e->n >= cap) return 0;
    ap_pair *p = &e->pairs[e->n];
    at_mt_pair *q = &e->pub[e->n];
    snprintf(q->source, sizeof q->source, "%s", src);
    snprintf(q->target, sizeof q->target, "%s", tgt);
    snprintf(p->mode, sizeof p->mode, "%s", mode);
    int w = snprintf(p->mode_path, sizeof p->mode_path, "%s/%s.mode", e->modes_dir, mode);
    if (w < 0 || (size_t)w >= sizeof p->mode_path) return 0;
    p->in_fd = p->out_fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    e->n++;
    return 0;
}

static int discover(ap_engine *e, at_err *err)
{
    struct dirent **list = NULL;
    int n = scandir(e->modes_dir, &list, mode_filter, alphasort);
    if (n < 0)
        return at_err_set(err, AT_E_IO, "cannot read apertium modes folder %s: %s", e->modes_dir,
                          strerror(errno));
    size_t cap = (size_t)n * 2; /* each mode, plus a plain twin of a variant */
    e->pairs = calloc(cap ? cap : 1, sizeof *e->pairs);
    e->pub = calloc(cap ? cap : 1, sizeof *e->pub);
    int rc = (!e->pairs || !e->pub) ? at_err_set(err, AT_E_NOMEM, "out of memory") : 0;
    /* Two passes: exact names first, so "spa-eng" (not "spa-eng_US")
     * serves es->en; then plain twins for variant-only directions. */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (int i = 0; i < n; i++) {
            char mode[NAME_MAX + 1];
            snprintf(mode, sizeof mode, "%s", list[i]->d_name);
            mode[strlen(mode) - 5] = '\0';
            char *dash = strchr(mode, '-');
            if (!dash || strchr(dash + 1, '-')) continue;
            size_t sl = (size_t)(dash - mode), tl = strlen(dash + 1);
            if (!valid_code(mode, sl) || !valid_code(dash + 1, tl)) continue;
            char src[16], tgt[16];
            map_code(mode, sl, src, sizeof src);
            map_code(dash + 1, tl, tgt, sizeof tgt);
            if (pass == 0) {
                add_pair(e, cap, src, tgt, mode);
            } else {
                src[strcspn(src, "_")] = '\0';
                tgt[strcspn(tgt, "_")] = '\0';
                add_pair(e, cap, src, tgt, mode);
            }
        }
    }
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
    return rc;
}

at_mt_engine *at_mt_apertium_new_ex(const char *modes_dir, int timeout_ms, at_mt_apertium **handle,
                                    at_err *err)
{
    if (handle) *handle = NULL;
    if (!modes_dir || !*modes_dir) modes_dir = AT_APERTIUM_MODES_DIR;
    ap_engine *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    e->timeout_ms = timeout_ms > 0 ? timeout_ms : AP_DEFAULT_TIMEOUT_MS;
    int w = snprintf(e->modes_dir, sizeof e->modes_dir, "%s", modes_dir);
    if (w < 0 || (size_t)w >= sizeof e->modes_dir) {
        at_err_set(err, AT_E_INVALID, "apertium modes path too long");
        free(e);
        return NULL;
    }
    if (discover(e, err) != 0) {
        ap_destroy(e);
        return NULL;
    }
    if (handle) *handle = (at_mt_apertium *)e;
    return at_mt_engine_new(&ap_ops, e, err);
}

at_mt_engine *at_mt_apertium_new(const char *modes_dir, int timeout_ms, at_err *err)
{
    return at_mt_apertium_new_ex(modes_dir, timeout_ms, NULL, err);
}

int at_mt_apertium_debug_kill(at_mt_apertium *a, const char *source, const char *target)
{
    ap_engine *e = (ap_engine *)a;
    ap_pair *p = e ? find_pair(e, source, target) : NULL;
    if (!p) return AT_E_UNSUPPORTED;
    pthread_mutex_lock(&p->mu);
    int killed = 0;
    if (p->running)
        for (int i = 0; i < p->n_pids; i++)
            if (p->pids[i] > 0 && kill(p->pids[i], SIGKILL) == 0) killed++;
    pthread_mutex_unlock(&p->mu);
    return killed; /* left unreaped: the next request must notice and recover */
}

int at_mt_apertium_running(at_mt_apertium *a, const char *source, const char *target)
{
    ap_engine *e = (ap_engine *)a;
    ap_pair *p = e ? find_pair(e, source, target) : NULL;
    if (!p) return 0;
    pthread_mutex_lock(&p->mu);
    int n = p->running ? p->n_pids : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}
