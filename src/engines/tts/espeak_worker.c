/* espeak_worker.c - libespeak-ng in a worker process.
 *
 * Protocol, over a Unix stream socket pair: every message is a header
 * (type, payload length; host byte order, both ends are this binary) and
 * its payload.
 *
 *   worker -> parent  HELLO  int32 sample rate (once, after initialising)
 *   parent -> worker  LIST                   -> VOICE... DONE
 *   parent -> worker  SYNTH  int32 wpm, name\0 file\0 text -> PCM... DONE
 *   parent -> worker  PHON   code\0 text     -> DONE
 *   worker -> parent  VOICE  gender byte, identifier\0, languages (see
 *                            at_espeak_listed)
 *   worker -> parent  PCM    int16 samples
 *   worker -> parent  DONE   int32 at_err code, then the error message, or
 *                            the phonemes of PHON
 *
 * The parent waits at most ES_TIMEOUT_MS for each message; a worker that
 * closes its socket, breaks the protocol or is too slow is killed, reaped
 * and forgotten, and the next request starts a new one.  Both ends bound
 * what they accept (ES_REQUEST_MAX, ES_REPLY_MAX).
 *
 * The worker is this program executed again (/proc/self/exe) with
 * ES_ENTRY_ARG as its first argument; es_entry(), a constructor, catches
 * that before main() runs.  A plain fork() is not enough: a child forked
 * from a multi-threaded process inherits every lock another thread held at
 * that moment, and under AddressSanitizer the allocator's locks are not
 * reset, so one fork in a dozen hung in its first malloc. */
#include "engines/tts/espeak_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <espeak-ng/espeak_ng.h>
#include <espeak-ng/speak_lib.h>

#include "core/strbuf.h"

#define ES_BUFFER_MS   100 /* PCM chunk length */
#define ES_TIMEOUT_MS  30000
#define ES_REQUEST_MAX (AT_ESPEAK_WORKER_TEXT_MAX + 1024)
#define ES_REPLY_MAX   (8 * AT_ESPEAK_WORKER_TEXT_MAX)
#define ES_ENTRY_ARG   "--at-espeak-worker"
#define ES_FD          3 /* the worker's end of the socket */

enum { ES_HELLO = 1, ES_LIST, ES_SYNTH, ES_PHON, ES_VOICE, ES_PCM, ES_DONE };

typedef struct es_header {
    uint32_t type;
    uint32_t len;
} es_header;

struct at_espeak_worker {
    pthread_mutex_t mu; /* one request at a time */
    char *data_path;    /* NULL: the library's default */
    pid_t pid;          /* 0: no worker running */
    int fd;             /* our end of its socket, -1 without a worker */
    int sample_rate;
    unsigned char *buf; /* the last reply's payload */
    size_t cap;
};

/* ---- both ends ------------------------------------------------------ */

static int es_send(int fd, uint32_t type, const void *a, size_t na, const void *b, size_t nb)
{
    es_header h = {type, (uint32_t)(na + nb)};
    struct {
        const void *p;
        size_t n;
    } parts[3] = {{&h, sizeof h}, {a, na}, {b, nb}};
    for (int i = 0; i < 3; i++) {
        const char *p = parts[i].p;
        size_t n = parts[i].n;
        while (n > 0) {
            ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) return -1;
            p += k;
            n -= (size_t)k;
        }
    }
    return 0;
}

static int64_t es_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads n bytes; deadline_ms < 0 waits for ever.  0, or -1 on end of file
 * or error, -2 past the deadline. */
static int es_recv(int fd, void *buf, size_t n, int64_t deadline_ms)
{
    char *p = buf;
    while (n > 0) {
        if (deadline_ms >= 0) {
            int64_t left = deadline_ms - es_now_ms();
            if (left <= 0) return -2;
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int r = poll(&pfd, 1, (int)left);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) return -1;
            if (r == 0) return -2;
        }
        ssize_t k = recv(fd, p, n, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---- the worker ----------------------------------------------------- */

typedef struct es_child {
    int fd;
    char loaded[272]; /* "synth:<voice>" or "phon:<code>": voice loads leak in 1.51 */
} es_child;

static _Noreturn void es_child_exit(int code) { _exit(code); }

static void es_child_done(es_child *c, int32_t code, const char *text, size_t n)
{
    if (es_send(c->fd, ES_DONE, &code, sizeof code, text, n) != 0) es_child_exit(0);
}

static void es_child_error(es_child *c, int32_t code, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg);
    es_child_done(c, code, msg, strlen(msg));
}

static int es_child_pcm(short *wav, int n, espeak_EVENT *events)
{
    es_child *c = events ? events->user_data : NULL;
    if (c && wav && n > 0 && es_send(c->fd, ES_PCM, wav, (size_t)n * sizeof *wav, NULL, 0) != 0)
        es_child_exit(0); /* the parent is gone or gave up on us */
    return 0;
}

static void es_child_list(es_child *c)
{
    const espeak_VOICE **vl = espeak_ListVoices(NULL);
    for (size_t i = 0; vl && vl[i]; i++) {
        const espeak_VOICE *v = vl[i];
        if (!v->identifier || !v->languages) continue;
        at_espeak_listed l;
        size_t id_len = strlen(v->identifier), n = 0;
        if (id_len >= sizeof l.identifier) continue;
        int fits = 1;
        for (const char *p = v->languages; p[0] && p[1]; p += strlen(p + 1) + 2) {
            size_t k = strlen(p + 1) + 1;
            if (n + k + 1 > sizeof l.languages) {
                fits = 0;
                break;
            }
            memcpy(l.languages + n, p + 1, k);
            n += k;
        }
        if (!fits || n == 0) continue;
        l.languages[n++] = '\0';
        char head[1 + sizeof l.identifier];
        head[0] = (char)v->gender;
        memcpy(head + 1, v->identifier, id_len + 1);
        if (es_send(c->fd, ES_VOICE, head, id_len + 2, l.languages, n) != 0) es_child_exit(0);
    }
    es_child_done(c, 0, NULL, 0);
}

static void es_child_synth(es_child *c, char *p, size_t len)
{
    int32_t wpm;
    if (len < sizeof wpm + 2) es_child_exit(2);
    memcpy(&wpm, p, sizeof wpm);
    const char *name = p + sizeof wpm;
    const char *file = name + strlen(name) + 1;
    if (file >= p + len) es_child_exit(2);
    char *text = (char *)file + strlen(file) + 1;
    if (text > p + len) es_child_exit(2);
    size_t text_len = (size_t)(p + len - text);

    char key[sizeof c->loaded];
    snprintf(key, sizeof key, "synth:%.255s", name);
    if (strcmp(c->loaded, key) != 0) {
        c->loaded[0] = '\0';
        if (!((*file && espeak_ng_SetVoiceByFile(file) == ENS_OK) ||
              espeak_ng_SetVoiceByName(name) == ENS_OK)) {
            es_child_error(c, AT_E_ENGINE, "espeak-ng could not load voice '%s'", name);
            return;
        }
        snprintf(c->loaded, sizeof c->loaded, "%s", key);
    }
    espeak_ng_SetParameter(espeakRATE, wpm, 0);
    espeak_SetSynthCallback(es_child_pcm);
    espeak_ng_STATUS st =
        espeak_ng_Synthesize(text, text_len + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, c);
    if (st != ENS_OK) {
        char hex[16];
        snprintf(hex, sizeof hex, "%#x", (unsigned)st);
        es_child_error(c, AT_E_ENGINE, "espeak-ng synthesis failed (status %s)", hex);
        return;
    }
    es_child_done(c, 0, NULL, 0);
}

/* phonemizer's EspeakWrapper.set_voice(): the first listed voice whose
 * first language is the code, loaded with espeak_SetVoiceByName(its
 * identifier) - unless it is still the loaded one. */
static int es_child_phoneme_voice(es_child *c, const char *code)
{
    char key[sizeof c->loaded];
    snprintf(key, sizeof key, "phon:%.255s", code);
    if (strcmp(c->loaded, key) == 0) return 0;
    const espeak_VOICE **vl = espeak_ListVoices(NULL);
    const char *id = NULL;
    for (size_t i = 0; vl && vl[i] && !id; i++)
        if (vl[i]->languages && vl[i]->languages[0] && strcmp(vl[i]->languages + 1, code) == 0 &&
            vl[i]->identifier)
            id = vl[i]->identifier;
    if (!id) {
        es_child_error(c, AT_E_UNSUPPORTED, "espeak-ng has no voice for language '%s'", code);
        return -1;
    }
    c->loaded[0] = '\0';
    if (espeak_SetVoiceByName(id) != EE_OK) {
        es_child_error(c, AT_E_ENGINE, "espeak-ng could not load voice '%s'", id);
        return -1;
    }
    snprintf(c->loaded, sizeof c->loaded, "%s", key);
    return 0;
}

static void es_child_phonemes(es_child *c, char *p, size_t len)
{
    const char *code = p;
    const char *text = code + strlen(code) + 1;
    if (text > p + len) es_child_exit(2);
    if (es_child_phoneme_voice(c, code) != 0) return;
    at_strbuf out = {0};
    const void *tp = text;
    while (tp) {
        const void *before = tp;
        const char *ph = espeak_TextToPhonemes(&tp, espeakCHARS_UTF8, ('_' << 8) | espeakPHONEMES_IPA);
        if (ph && *ph) {
            if (out.n) at_strbuf_put(&out, " ", 1);
            at_strbuf_str(&out, ph);
        }
        if (tp == before) break; /* no progress: stop rather than spin */
    }
    if (out.oom)
        es_child_error(c, AT_E_NOMEM, "%s", "out of memory");
    else
        es_child_done(c, 0, out.p, out.n);
    at_strbuf_free(&out);
}

static _Noreturn void es_child_main(const char *data_path)
{
    es_child c = {.fd = ES_FD};
    prctl(PR_SET_NAME, "espeak-worker"); /* what ps and top show */
    /* Text that crashes the library may come again and again: no core
     * files.  And die of the signal itself, also where a sanitizer's
     * handler would turn it into an exit status, so the parent can say
     * the library crashed. */
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) signal(fatal[i], SIG_DFL);
    espeak_ng_InitializePath(data_path);
    espeak_ng_STATUS st = espeak_ng_Initialize(NULL);
    if (st == ENS_OK) st = espeak_ng_InitializeOutput(ENOUTPUT_MODE_SYNCHRONOUS, ES_BUFFER_MS, NULL);
    if (st != ENS_OK) {
        char msg[320];
        snprintf(msg, sizeof msg, "espeak-ng failed to initialise (data path %.200s, status %#x)",
                 data_path ? data_path : "(default)", (unsigned)st);
        es_child_done(&c, AT_E_CORRUPT, msg, strlen(msg));
        es_child_exit(0);
    }
    int32_t rate = espeak_ng_GetSampleRate();
    if (es_send(c.fd, ES_HELLO, &rate, sizeof rate, NULL, 0) != 0) es_child_exit(0);
    for (;;) {
        es_header h = {0, 0};
        if (es_recv(c.fd, &h, sizeof h, -1) != 0) es_child_exit(0);
        if (h.len > ES_REQUEST_MAX) es_child_exit(2);
        char *p = malloc((size_t)h.len + 1);
        if (!p) es_child_exit(3);
        if (es_recv(c.fd, p, h.len, -1) != 0) es_child_exit(0);
        p[h.len] = '\0';
        if (h.type == ES_LIST)
            es_child_list(&c);
        else if (h.type == ES_SYNTH)
            es_child_synth(&c, p, h.len);
        else if (h.type == ES_PHON)
            es_child_phonemes(&c, p, h.len);
        else
            es_child_exit(2);
        free(p);
    }
}

/* Runs before main() in every program that links this module: glibc hands
 * constructors the program's arguments.  Only es_start() passes
 * ES_ENTRY_ARG, with the data path ("" for the default) after it. */
__attribute__((constructor)) static void es_entry(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc == 3 && strcmp(argv[1], ES_ENTRY_ARG) == 0) es_child_main(argv[2][0] ? argv[2] : NULL);
}

/* ---- the parent ----------------------------------------------------- */

static void es_stop(at_espeak_worker *w)
{
    if (w->fd >= 0) close(w->fd);
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    w->fd = -1;
    w->pid = 0;
}

/* The worker failed us (rc of es_recv or es_send, or -3 for a bad
 * message): says how, stops it, returns AT_E_ENGINE. */
static int es_lost(at_espeak_worker *w, int how, at_err *err)
{
    int status = 0;
    pid_t r = -1;
    if (how == -1 && w->pid > 0) { /* it closed the socket: it is exiting */
        close(w->fd);
        w->fd = -1;
        while ((r = waitpid(w->pid, &status, 0)) < 0 && errno == EINTR) {}
        if (r == w->pid) w->pid = 0;
    }
    es_stop(w);
    if (r > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return at_err_set(err, AT_E_ENGINE, "espeak-ng's worker was killed during this request; it restarts");
    if (r > 0 && WIFSIGNALED(status))
        return at_err_set(err, AT_E_ENGINE,
                          "espeak-ng crashed on this text (signal %d, %s); its worker restarts",
                          WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (r > 0 && WIFEXITED(status))
        return at_err_set(err, AT_E_ENGINE, "espeak-ng's worker exited (status %d); it restarts",
                          WEXITSTATUS(status));
    if (how == -2)
        return at_err_set(err, AT_E_ENGINE, "espeak-ng did not answer within %d s; its worker was stopped",
                          ES_TIMEOUT_MS / 1000);
    return at_err_set(err, AT_E_ENGINE, "espeak-ng's worker broke the protocol; it was stopped");
}

/* Reads one message into w->buf: 0 and *h, or an es_lost() error. */
static int es_reply(at_espeak_worker *w, es_header *h, at_err *err)
{
    int64_t deadline = es_now_ms() + ES_TIMEOUT_MS;
    int r = es_recv(w->fd, h, sizeof *h, deadline);
    if (r != 0) return es_lost(w, r, err);
    if (h->len > ES_REPLY_MAX) return es_lost(w, -3, err);
    if ((size_t)h->len + 1 > w->cap) {
        unsigned char *nb = realloc(w->buf, (size_t)h->len + 1);
        if (!nb) {
            es_stop(w);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        w->buf = nb;
        w->cap = (size_t)h->len + 1;
    }
    r = es_recv(w->fd, w->buf, h->len, deadline);
    if (r != 0) return es_lost(w, r, err);
    w->buf[h->len] = '\0';
    return 0;
}

/* A DONE message's code; its text is w->buf + 4. */
static int es_done(at_espeak_worker *w, const es_header *h, at_err *err)
{
    int32_t code;
    if (h->len < sizeof code) return es_lost(w, -3, err);
    memcpy(&code, w->buf, sizeof code);
    if (code > 0 || code < AT_E_CORRUPT) return es_lost(w, -3, err);
    if (code != 0) return at_err_set(err, code, "%s", (const char *)w->buf + sizeof code);
    return 0;
}

/* The next message of a reply: 1 and *h for one of the given type (its
 * payload in w->buf), 0 once a DONE says the request succeeded, else the
 * error (the worker's, or es_lost's for anything unexpected). */
static int es_next(at_espeak_worker *w, uint32_t type, es_header *h, at_err *err)
{
    int rc = es_reply(w, h, err);
    if (rc) return rc;
    if (h->type == ES_DONE) return es_done(w, h, err);
    if (h->type != type) return es_lost(w, -3, err);
    return 1;
}

/* Executes the worker with its socket as descriptor ES_FD, /dev/null as
 * standard input and output, stderr shared, no other descriptor, default
 * signal actions and nothing blocked.  posix_spawn() runs nothing of ours
 * between its fork and the exec. */
static int es_spawn(int fd, const char *data_path, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    char *argv[] = {"espeak-worker", ES_ENTRY_ARG, (char *)(data_path ? data_path : ""), NULL};
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc) return rc;
    rc = posix_spawnattr_init(&at);
    if (rc) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    rc = posix_spawn_file_actions_adddup2(&fa, fd, ES_FD);
    if (!rc) rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc) rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (!rc) rc = posix_spawn_file_actions_addclosefrom_np(&fa, ES_FD + 1);
    if (!rc) rc = posix_spawnattr_setsigdefault(&at, &all);
    if (!rc) rc = posix_spawnattr_setsigmask(&at, &none);
    if (!rc) rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    if (!rc) rc = posix_spawn(pid, "/proc/self/exe", &fa, &at, argv, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

static int es_start(at_espeak_worker *w, at_err *err)
{
    if (w->pid > 0) return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return at_err_set(err, AT_E_IO, "espeak-ng: socketpair: %s", strerror(errno));
    /* dup2 onto itself would leave close-on-exec set */
    if (sv[1] == ES_FD) {
        int moved = fcntl(sv[1], F_DUPFD_CLOEXEC, ES_FD + 1);
        close(sv[1]);
        sv[1] = moved;
    }
    pid_t pid = 0;
    int rc = sv[1] < 0 ? errno : es_spawn(sv[1], w->data_path, &pid);
    if (rc) {
        close(sv[0]);
        if (sv[1] >= 0) close(sv[1]);
        return at_err_set(err, AT_E_IO, "espeak-ng: cannot start its worker: %s", strerror(rc));
    }
    close(sv[1]);
    w->pid = pid;
    w->fd = sv[0];
    es_header h = {0, 0};
    rc = es_reply(w, &h, err);
    if (rc) return rc;
    if (h.type == ES_DONE) {
        rc = es_done(w, &h, err);
        es_stop(w);
        return rc ? rc : at_err_set(err, AT_E_ENGINE, "espeak-ng's worker did not start");
    }
    int32_t rate;
    if (h.type != ES_HELLO || h.len != sizeof rate) return es_lost(w, -3, err);
    memcpy(&rate, w->buf, sizeof rate);
    if (rate <= 0) return es_lost(w, -3, err);
    w->sample_rate = rate;
    return 0;
}

static int es_request(at_espeak_worker *w, uint32_t type, const void *a, size_t na, const void *b, size_t nb,
                      at_err *err)
{
    /* Between requests the worker says nothing: a readable socket means it
     * died while idle (killed from outside), which is no fault of this
     * request's text, so it gets a new worker. */
    struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
    if (w->pid > 0 && poll(&pfd, 1, 0) != 0) es_stop(w);
    int rc = es_start(w, err);
    if (rc) return rc;
    if (es_send(w->fd, type, a, na, b, nb) != 0) return es_lost(w, -1, err);
    return 0;
}

at_espeak_worker *at_espeak_worker_new(const char *data_path, at_err *err)
{
    at_espeak_worker *w = calloc(1, sizeof *w);
    if (!w || (data_path && *data_path && !(w->data_path = strdup(data_path)))) {
        free(w);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    w->fd = -1;
    if (es_start(w, err) != 0) {
        at_espeak_worker_free(w);
        return NULL;
    }
    return w;
}

void at_espeak_worker_free(at_espeak_worker *w)
{
    if (!w) return;
    es_stop(w);
    pthread_mutex_destroy(&w->mu);
    free(w->data_path);
    free(w->buf);
    free(w);
}

int at_espeak_worker_list(at_espeak_worker *w, at_espeak_listed **out, size_t *n, int *sample_rate,
                          at_err *err)
{
    *out = NULL;
    *n = 0;
    at_espeak_listed *v = NULL;
    size_t nv = 0, cap = 0;
    pthread_mutex_lock(&w->mu);
    int rc = es_request(w, ES_LIST, NULL, 0, NULL, 0, err);
    es_header h = {0, 0};
    while (rc == 0 && (rc = es_next(w, ES_VOICE, &h, err)) == 1) {
        rc = 0;
        if (h.len < 2) {
            rc = es_lost(w, -3, err);
            break;
        }
        if (nv == cap) {
            cap = cap ? 2 * cap : 64;
            at_espeak_listed *nb = cap < 65536 ? realloc(v, cap * sizeof *v) : NULL;
            if (!nb) {
                es_stop(w);
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
                break;
            }
            v = nb;
        }
        /* gender, identifier\0, names\0...\0: both bounded by the fields */
        const char *p = (const char *)w->buf + 1, *end = (const char *)w->buf + h.len;
        size_t id_len = strnlen(p, (size_t)(end - p));
        size_t names = (size_t)(end - p) - id_len - 1;
        if (p + id_len >= end || id_len >= sizeof v->identifier || names < 2 || names > sizeof v->languages ||
            end[-1] != '\0' || end[-2] != '\0') {
            rc = es_lost(w, -3, err);
            break;
        }
        at_espeak_listed *l = &v[nv++];
        l->gender = w->buf[0];
        memcpy(l->identifier, p, id_len + 1);
        memcpy(l->languages, p + id_len + 1, names);
    }
    if (rc == 0) *sample_rate = w->sample_rate;
    pthread_mutex_unlock(&w->mu);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}

int at_espeak_worker_synth(at_espeak_worker *w, const char *name, const char *file, int wpm, const char *text,
                           size_t len, at_tts_chunk_cb cb, void *user, at_err *err)
{
    if (!file) file = "";
    size_t nn = strlen(name), nf = strlen(file);
    if (len > AT_ESPEAK_WORKER_TEXT_MAX || nn > 255 || nf > 255)
        return at_err_set(err, AT_E_TOO_LARGE, "espeak-ng takes at most %u bytes of text at a time",
                          AT_ESPEAK_WORKER_TEXT_MAX);
    char head[4 + 2 * 256];
    int32_t rate = wpm;
    memcpy(head, &rate, sizeof rate);
    memcpy(head + 4, name, nn + 1);
    memcpy(head + 4 + nn + 1, file, nf + 1);
    pthread_mutex_lock(&w->mu);
    int rc = es_request(w, ES_SYNTH, head, 4 + nn + 1 + nf + 1, text, len, err);
    es_header h = {0, 0};
    while (rc == 0 && (rc = es_next(w, ES_PCM, &h, err)) == 1) {
        rc = 0;
        if (h.len % 2) {
            rc = es_lost(w, -3, err);
            break;
        }
        if (h.len && cb && cb(user, (const int16_t *)w->buf, h.len / 2) != 0) {
            /* Stopping the worker is the quickest way to stop the library. */
            es_stop(w);
            rc = at_err_set(err, AT_E_CANCELLED, "synthesis cancelled by the caller");
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int at_espeak_worker_phonemes(at_espeak_worker *w, const char *code, const char *text, size_t len, char **out,
                              at_err *err)
{
    *out = NULL;
    size_t nc = strlen(code);
    if (len > AT_ESPEAK_WORKER_TEXT_MAX || nc > 255)
        return at_err_set(err, AT_E_TOO_LARGE, "espeak-ng takes at most %u bytes of text at a time",
                          AT_ESPEAK_WORKER_TEXT_MAX);
    pthread_mutex_lock(&w->mu);
    int rc = es_request(w, ES_PHON, code, nc + 1, text, len, err);
    es_header h = {0, 0};
    if (rc == 0) rc = es_next(w, ES_DONE, &h, err); /* only DONE: 0 or an error */
    if (rc == 0 && !(*out = strdup((const char *)w->buf + sizeof(int32_t))))
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    pthread_mutex_unlock(&w->mu);
    return rc;
}
