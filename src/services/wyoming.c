/* wyoming.c - the Wyoming protocol server for asr_streaming and tts. */
#include "services/wyoming.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/audio.h"
#include "core/clock.h"
#include "core/wyoming.h"

#define WY_MAX_PAYLOAD (1024 * 1024) /* one audio chunk: ~30 s of 16 kHz PCM16 */
#define WY_WRITE_MS    30000         /* a peer that stops reading is dropped */
#define WY_MAX_CONN    64

struct at_wyoming {
    at_app *app;
    int kind;
    int lfd;
    pthread_t accept_th;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int fds[WY_MAX_CONN]; /* open connections, -1 = free */
    int active;
};

typedef struct conn {
    at_wyoming *w;
    int fd, slot;
} conn;

static const char *kind_name(int kind) { return kind == AT_APP_ASR ? "wyoming-asr" : "wyoming-tts"; }

static int send_error(int fd, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int send_error(int fd, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "text", msg);
    cJSON_AddStringToObject(d, "code", code);
    at_err err;
    int rc = at_wy_write(fd, "error", d, NULL, 0, WY_WRITE_MS, &err);
    cJSON_Delete(d);
    return rc;
}

static cJSON *attribution(void)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "name", "audio-translator");
    cJSON_AddStringToObject(a, "url", "https://github.com/audio-translator/audio-translator");
    return a;
}

/* describe -> info: this service's engines (asr) or voices (tts). */
static cJSON *info_json(at_wyoming *w)
{
    cJSON *info = cJSON_CreateObject();
    cJSON *prog = cJSON_CreateObject();
    cJSON_AddStringToObject(prog, "name", "audio-translator");
    cJSON_AddItemToObject(prog, "attribution", attribution());
    cJSON_AddBoolToObject(prog, "installed", 1);
    cJSON_AddStringToObject(prog, "version", "0.1.0");
    if (w->kind == AT_APP_ASR) {
        cJSON_AddStringToObject(prog, "description", "speech recognition (Whisper in C, pocketsphinx)");
        cJSON *models = cJSON_AddArrayToObject(prog, "models");
        const char *names = at_app_asr_names(w->app);
        for (const char *p = names; p && *p;) {
            size_t n = strcspn(p, ", ");
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(n < 63 ? n : 63), p);
            at_asr_engine *e = at_app_asr(w->app, name);
            if (e) {
                cJSON *m = cJSON_CreateObject();
                cJSON_AddStringToObject(m, "name", name);
                cJSON_AddItemToObject(m, "attribution", attribution());
                cJSON_AddBoolToObject(m, "installed", 1);
                cJSON_AddStringToObject(m, "description", name);
                cJSON_AddStringToObject(m, "version", "0.1.0");
                cJSON *langs = cJSON_AddArrayToObject(m, "languages");
                const char *const *l = at_asr_engine_languages(e);
                for (; l && *l; l++) cJSON_AddItemToArray(langs, cJSON_CreateString(*l));
                cJSON_AddItemToArray(models, m);
            }
            p += n;
            p += strspn(p, ", ");
        }
        cJSON *arr = cJSON_AddArrayToObject(info, "asr");
        cJSON_AddItemToArray(arr, prog);
    } else {
        cJSON_AddStringToObject(prog, "description", "speech synthesis (espeak-ng, flite)");
        cJSON *voices = cJSON_AddArrayToObject(prog, "voices");
        for (size_t i = 0; i < at_app_tts_count(w->app); i++) {
            at_tts_engine *e = at_app_tts(w->app, i);
            size_t nv;
            const at_tts_voice *v = at_tts_engine_voices(e, &nv);
            for (size_t k = 0; k < nv; k++) {
                cJSON *m = cJSON_CreateObject();
                cJSON_AddStringToObject(m, "name", v[k].name);
                cJSON_AddItemToObject(m, "attribution", attribution());
                cJSON_AddBoolToObject(m, "installed", 1);
                char desc[128];
                snprintf(desc, sizeof desc, "%s %s", at_tts_engine_name(e), v[k].name);
                cJSON_AddStringToObject(m, "description", desc);
                cJSON_AddStringToObject(m, "version", "0.1.0");
                cJSON *langs = cJSON_AddArrayToObject(m, "languages");
                cJSON_AddItemToArray(langs, cJSON_CreateString(v[k].language));
                cJSON_AddItemToArray(voices, m);
            }
        }
        cJSON *arr = cJSON_AddArrayToObject(info, "tts");
        cJSON_AddItemToArray(arr, prog);
    }
    return info;
}

/* ---- speech to text ---- */

/* An utterance is kept as 16 kHz mono, converted chunk by chunk as it
 * comes: an hour of 48 kHz stereo held as sent took 691 MB, and as much
 * again in floats at its end, before it was resampled. */
typedef struct asr_state {
    int started; /* between audio-start and audio-stop */
    char model[64], language[16];
    int rate, width, channels;
    at_resampler *rs;          /* the client's rate to 16 kHz */
    float *pcm;                /* the utterance so far, 16 kHz mono */
    size_t len, cap;           /* samples */
    float *out;                /* the resampler's output for one chunk */
    size_t out_cap;            /* samples */
    size_t frames, max_frames; /* frames received; --max-audio-seconds of them */
} asr_state;

/* Drops the utterance: a connection between utterances holds no audio. */
static void asr_state_clear(asr_state *st)
{
    at_resampler_free(st->rs);
    free(st->pcm);
    free(st->out);
    st->rs = NULL;
    st->pcm = st->out = NULL;
    st->len = st->cap = st->out_cap = st->frames = 0;
    st->started = 0;
}

/* Resamples n mono samples (NULL and last=1 to flush) onto the
 * utterance. */
static int asr_state_add(asr_state *st, const float *x, size_t n, int last, at_err *err)
{
    size_t got = 0;
    int rc = at_resampler_process(st->rs, x, n, last, &st->out, &st->out_cap, &got, err);
    if (rc != 0) return rc;
    if (st->len + got > st->cap) {
        size_t cap = st->cap ? st->cap : 16000;
        while (cap < st->len + got) cap *= 2;
        float *nb = realloc(st->pcm, cap * sizeof *nb);
        if (!nb) return at_err_set(err, AT_E_NOMEM, "out of memory");
        st->pcm = nb;
        st->cap = cap;
    }
    if (got) memcpy(st->pcm + st->len, st->out, got * sizeof *st->pcm);
    st->len += got;
    return 0;
}

static int audio_format(const cJSON *d, int *rate, int *width, int *channels)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "rate"),
                *w = cJSON_GetObjectItemCaseSensitive(d, "width"),
                *c = cJSON_GetObjectItemCaseSensitive(d, "channels");
    if (!cJSON_IsNumber(r) || !cJSON_IsNumber(w) || !cJSON_IsNumber(c)) return -1;
    *rate = r->valueint;
    *width = w->valueint;
    *channels = c->valueint;
    return 0;
}

/* The peer reset the connection or hung up both ways.  One that only
 * shut its sending side after audio-stop (`nc -N`, a script's
 * half-close) still waits for its transcript, which Wyoming's Python
 * servers give it; a peer that closed outright is found when the answer
 * cannot be written. */
static int cancelled_fd(void *user)
{
    struct pollfd pf = {*(int *)user, 0, 0};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLHUP | POLLERR | POLLNVAL));
}

static void transcribe(at_wyoming *w, int fd, asr_state *st)
{
    at_err err;
    if (asr_state_add(st, NULL, 0, 1, &err) != 0) {
        send_error(fd, "bad_audio", "%s", err.msg);
        return;
    }
    if (st->len == 0) {
        send_error(fd, "bad_audio", "no audio between audio-start and audio-stop");
        return;
    }
    at_asr_engine *eng = at_app_asr(w->app, st->model[0] ? st->model : NULL);
    if (!eng) {
        send_error(fd, "unknown_model", "unknown model '%s'; available: %s", st->model,
                   at_app_asr_names(w->app));
        return;
    }
    at_asr_options opt = {0};
    opt.language = st->language[0] ? st->language : NULL;
    opt.cancelled = cancelled_fd;
    opt.cancel_user = &fd;
    at_asr_result res;
    double t0 = at_now_s();
    int rc = at_asr_transcribe(eng, st->pcm, st->len, &opt, &res, &err);
    at_app_observe(w->app, "asr_transcribe", at_now_s() - t0);
    if (rc != 0) {
        if (rc != AT_E_CANCELLED) send_error(fd, "transcription_failed", "%s", err.msg);
        return;
    }
    at_app_count_audio(w->app, "asr", res.duration);
    char *text = at_asr_result_text(&res);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "text", text ? text : "");
    if (res.language[0]) cJSON_AddStringToObject(d, "language", res.language);
    at_wy_write(fd, "transcript", d, NULL, 0, WY_WRITE_MS, &err);
    cJSON_Delete(d);
    free(text);
    at_asr_result_free(&res);
}

/* 0 to go on, -1 to close the connection. */
static int asr_event(at_wyoming *w, int fd, asr_state *st, const at_wy_event *ev)
{
    const char *t = ev->type;
    if (strcmp(t, "transcribe") == 0) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev->data, "name");
        const cJSON *lang = cJSON_GetObjectItemCaseSensitive(ev->data, "language");
        if ((name && !cJSON_IsString(name) && !cJSON_IsNull(name)) ||
            (lang && !cJSON_IsString(lang) && !cJSON_IsNull(lang)))
            return send_error(fd, "bad_request", "'name' and 'language' must be strings"), 0;
        const char *lv = cJSON_IsString(lang) ? lang->valuestring : "";
        const char *nv = cJSON_IsString(name) ? name->valuestring : "";
        at_asr_engine *eng = at_app_asr(w->app, nv[0] ? nv : NULL);
        if (!eng)
            return send_error(fd, "unknown_model", "unknown model '%s'; available: %s", nv,
                              at_app_asr_names(w->app)),
                   0;
        if (lv[0] && !at_asr_engine_supports_language(eng, lv))
            return send_error(fd, "unsupported_language", "language '%s' is not supported by %s", lv,
                              at_asr_engine_name(eng)),
                   0;
        snprintf(st->model, sizeof st->model, "%s", nv);
        snprintf(st->language, sizeof st->language, "%s", lv);
        return 0;
    }
    if (strcmp(t, "audio-start") == 0) {
        int rate, width, channels;
        if (audio_format(ev->data, &rate, &width, &channels) != 0)
            return send_error(fd, "bad_audio_format", "audio-start needs rate, width and channels"), 0;
        if (width != 2 || channels < 1 || channels > 8 || rate < 8000 || rate > 192000)
            return send_error(fd, "bad_audio_format",
                              "unsupported audio: %d Hz, %d bytes, %d channels (16-bit PCM, 8-192 kHz, 1-8 "
                              "channels)",
                              rate, width, channels),
                   0;
        asr_state_clear(st);
        at_err err;
        if (!(st->rs = at_resampler_new(rate, 16000, &err)))
            return send_error(fd, "bad_audio_format", "%s", err.msg), 0;
        st->started = 1;
        st->rate = rate;
        st->width = width;
        st->channels = channels;
        st->max_frames = (size_t)(at_app_cfg(w->app)->max_audio_seconds * rate);
        return 0;
    }
    if (strcmp(t, "audio-chunk") == 0) {
        if (!st->started) return send_error(fd, "bad_order", "audio-chunk before audio-start"), 0;
        int rate, width, channels;
        if (audio_format(ev->data, &rate, &width, &channels) == 0 &&
            (rate != st->rate || width != st->width || channels != st->channels))
            return send_error(fd, "bad_audio_format", "audio-chunk's format differs from audio-start's"), 0;
        if (ev->payload_len % (size_t)(st->width * st->channels))
            return send_error(fd, "bad_audio", "an audio chunk must hold whole samples"), 0;
        size_t frames = ev->payload_len / (size_t)(st->width * st->channels);
        if (st->frames + frames > st->max_frames) {
            asr_state_clear(st);
            return send_error(fd, "audio_too_long", "the audio exceeds %.0f s; it was dropped",
                              at_app_cfg(w->app)->max_audio_seconds),
                   0;
        }
        if (!frames) return 0;
        at_err err;
        at_audio a;
        int rc = at_audio_from_pcm16(ev->payload, ev->payload_len, st->rate, st->channels, &a, &err);
        if (rc == 0) rc = asr_state_add(st, a.samples, a.n, 0, &err);
        at_audio_free(&a);
        if (rc != 0) {
            asr_state_clear(st);
            return send_error(fd, rc == AT_E_NOMEM ? "out_of_memory" : "bad_audio", "%s", err.msg),
                   rc == AT_E_NOMEM ? -1 : 0;
        }
        st->frames += frames;
        return 0;
    }
    if (strcmp(t, "audio-stop") == 0) {
        if (!st->started) return send_error(fd, "bad_order", "audio-stop before audio-start"), 0;
        transcribe(w, fd, st);
        asr_state_clear(st);
        st->model[0] = st->language[0] = '\0';
        return 0;
    }
    return send_error(fd, "unknown_event", "unexpected event '%s' for speech recognition", t), 0;
}

/* ---- text to speech ---- */

typedef struct tts_ctx {
    int fd, rate, started, failed;
} tts_ctx;

static int tts_chunk(void *user, const int16_t *pcm, size_t n)
{
    tts_ctx *c = user;
    at_err err;
    if (n == 0) return cancelled_fd(&c->fd);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "rate", c->rate);
    cJSON_AddNumberToObject(d, "width", 2);
    cJSON_AddNumberToObject(d, "channels", 1);
    int rc = 0;
    if (!c->started) {
        rc = at_wy_write(c->fd, "audio-start", d, NULL, 0, WY_WRITE_MS, &err);
        c->started = 1;
    }
    /* PCM16 little-endian; this host is little-endian */
    if (!rc) rc = at_wy_write(c->fd, "audio-chunk", d, pcm, n * sizeof *pcm, WY_WRITE_MS, &err);
    cJSON_Delete(d);
    if (rc) c->failed = 1;
    return rc != 0;
}

static int tts_event(at_wyoming *w, int fd, const at_wy_event *ev)
{
    if (strcmp(ev->type, "synthesize") != 0)
        return send_error(fd, "unknown_event", "unexpected event '%s' for speech synthesis", ev->type), 0;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(ev->data, "text");
    const cJSON *voice = cJSON_GetObjectItemCaseSensitive(ev->data, "voice");
    if (!cJSON_IsString(text) || !text->valuestring[strspn(text->valuestring, " \t\r\n")])
        return send_error(fd, "bad_request", "synthesize needs a non-empty 'text'"), 0;
    if (strlen(text->valuestring) > at_app_cfg(w->app)->max_text_chars)
        return send_error(fd, "text_too_long", "text of %zu characters exceeds the limit of %zu",
                          strlen(text->valuestring), at_app_cfg(w->app)->max_text_chars),
               0;
    if (voice && !cJSON_IsObject(voice) && !cJSON_IsNull(voice))
        return send_error(fd, "bad_request", "'voice' must be an object {name, language, speaker}"), 0;
    const cJSON *vn = cJSON_GetObjectItemCaseSensitive(voice, "name");
    const cJSON *vl = cJSON_GetObjectItemCaseSensitive(voice, "language");
    const char *want = cJSON_IsString(vn) ? vn->valuestring : cJSON_IsString(vl) ? vl->valuestring : NULL;
    at_tts_engine *eng = NULL;
    const at_tts_voice *v = at_app_find_voice(w->app, want, &eng);
    if (!v) return send_error(fd, "unknown_voice", "unknown voice '%s'; 'describe' lists them", want), 0;
    tts_ctx c = {fd, v->sample_rate, 0, 0};
    at_err err;
    at_err_clear(&err);
    int rc = at_tts_synthesize(eng, v, text->valuestring, 1.0f, tts_chunk, &c, &err);
    if (c.failed) return -1; /* the peer is gone */
    if (rc != 0 && rc != AT_E_CANCELLED) {
        if (!c.started) return send_error(fd, "synthesis_failed", "%s", err.msg), 0;
        send_error(fd, "synthesis_failed", "%s", err.msg);
    }
    if (!c.started) return send_error(fd, "no_speech", "the text produced no speech"), 0;
    return at_wy_write(fd, "audio-stop", NULL, NULL, 0, WY_WRITE_MS, &err) ? -1 : 0;
}

/* ---- connections ---- */

static void *conn_main(void *arg)
{
    conn *c = arg;
    at_wyoming *w = c->w;
    at_wy_reader *rd = at_wy_reader_new(c->fd, WY_MAX_PAYLOAD);
    asr_state st = {0};
    int idle_ms = at_app_cfg(w->app)->stream_idle_s * 1000;
    while (rd && !atomic_load(&w->stopping)) {
        at_wy_event ev;
        at_err err;
        int rc = at_wy_read(rd, &ev, idle_ms > 0 ? idle_ms : 30000, &err);
        if (rc == 0) break; /* closed */
        if (rc < 0) {
            if (rc == AT_E_INVALID)
                send_error(c->fd, "bad_event", "%s", err.msg);
            else if (rc == AT_E_CANCELLED)
                send_error(c->fd, "timeout", "no event for %d s", idle_ms / 1000);
            break;
        }
        at_err rerr;
        int ready = at_app_ready(w->app, &rerr);
        if (strcmp(ev.type, "describe") == 0) {
            if (ready != 1) {
                send_error(c->fd, "not_ready", "%s", ready < 0 ? rerr.msg : "engines are loading");
            } else {
                cJSON *info = info_json(w);
                rc = at_wy_write(c->fd, "info", info, NULL, 0, WY_WRITE_MS, &err);
                cJSON_Delete(info);
            }
            rc = rc < 0 ? -1 : 0;
        } else if (strcmp(ev.type, "ping") == 0) {
            rc = at_wy_write(c->fd, "pong", ev.data, NULL, 0, WY_WRITE_MS, &err) ? -1 : 0;
        } else if (ready != 1) {
            send_error(c->fd, "not_ready", "%s",
                       ready < 0 ? rerr.msg : "engines are loading; retry in a moment");
            rc = 0;
        } else {
            rc = w->kind == AT_APP_ASR ? asr_event(w, c->fd, &st, &ev) : tts_event(w, c->fd, &ev);
        }
        at_wy_event_free(&ev);
        if (rc < 0) break;
    }
    asr_state_clear(&st);
    at_wy_reader_free(rd);
    pthread_mutex_lock(&w->mu);
    w->fds[c->slot] = -1;
    w->active--;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    at_wyoming *w = arg;
    int limit = at_app_cfg(w->app)->max_streams;
    if (limit < 1 || limit > WY_MAX_CONN) limit = limit < 1 ? 1 : WY_MAX_CONN;
    while (!atomic_load(&w->stopping)) {
        struct pollfd pf = {w->lfd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0) continue;
        int fd = accept(w->lfd, NULL, NULL);
        if (fd < 0) {
            /* out of descriptors: the connection stays queued, and polling
             * again at once would spin */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                struct timespec pause = {0, 100 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
            continue;
        }
        pthread_mutex_lock(&w->mu);
        int slot = -1;
        if (w->active < limit)
            for (int i = 0; i < WY_MAX_CONN && slot < 0; i++)
                if (w->fds[i] < 0) slot = i;
        if (slot >= 0) {
            w->fds[slot] = fd;
            w->active++;
        }
        pthread_mutex_unlock(&w->mu);
        if (slot < 0) {
            send_error(fd, "busy", "too many Wyoming connections (limit %d); retry later", limit);
            close(fd);
            continue;
        }
        conn *c = malloc(sizeof *c);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (c) *c = (conn){w, fd, slot};
        if (!c || pthread_create(&th, &attr, conn_main, c) != 0) {
            free(c);
            pthread_mutex_lock(&w->mu);
            w->fds[slot] = -1;
            w->active--;
            pthread_mutex_unlock(&w->mu);
            close(fd);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

at_wyoming *at_wyoming_start(at_app *app, int kind, const char *iface, int port, int *bound, at_err *err)
{
    at_wyoming *w = calloc(1, sizeof *w);
    if (!w) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    w->app = app;
    w->kind = kind;
    for (int i = 0; i < WY_MAX_CONN; i++) w->fds[i] = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (!iface || inet_pton(AF_INET, iface, &a.sin_addr) != 1) a.sin_addr.s_addr = htonl(INADDR_ANY);
    w->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (w->lfd >= 0) setsockopt(w->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (w->lfd < 0 || bind(w->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(w->lfd, 16) != 0) {
        at_err_set(err, AT_E_IO, "%s: cannot listen on %s:%d (%s)", kind_name(kind), iface ? iface : "*",
                   port, strerror(errno));
        if (w->lfd >= 0) close(w->lfd);
        free(w);
        return NULL;
    }
    socklen_t al = sizeof a;
    getsockname(w->lfd, (struct sockaddr *)&a, &al);
    if (bound) *bound = ntohs(a.sin_port);
    if (pthread_create(&w->accept_th, NULL, accept_main, w) != 0) {
        at_err_set(err, AT_E_IO, "cannot start the %s thread", kind_name(kind));
        close(w->lfd);
        free(w);
        return NULL;
    }
    return w;
}

void at_wyoming_stop(at_wyoming *w, int grace_ms)
{
    if (!w) return;
    atomic_store(&w->stopping, 1);
    pthread_join(w->accept_th, NULL);
    close(w->lfd);
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < WY_MAX_CONN; i++)
        if (w->fds[i] >= 0) shutdown(w->fds[i], SHUT_RDWR); /* their reads and writes end now */
    struct timespec until;
    at_deadline_ms(&until, grace_ms);
    while (w->active > 0 && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {}
    int left = w->active;
    pthread_mutex_unlock(&w->mu);
    if (left) return; /* threads still hold w: the process is exiting */
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}
