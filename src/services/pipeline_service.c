/* pipeline_service.c - the speech-to-speech front door (port 8000).
 *
 *   WS   /v1/pipeline   JSON config, binary PCM16; answers partial/final
 *                       captions, a translation per final, and its speech
 *   GET  /              the live web page (embedded at build time)
 *   GET  /v1/config     languages, pairs and voices for the page's pickers
 *
 * The pipeline only sees the at_asr/at_mt/at_tts interfaces, so the same
 * code drives local engines (`serve`) and remote services (`pipeline`).
 *
 * Per session, three threads and two bounded queues:
 *
 *   session thread --audio queue--> ASR thread --finals queue--> worker
 *   (at_ws_recv)    (max_backlog_s)  (partial,    (max_pending)  (translate,
 *                                     final)                      speak)
 *
 * ASR never waits for translation or synthesis; the worker handles finals
 * strictly in order, so segments are neither reordered nor dropped.  A
 * queue that overflows (audio faster than it can be recognised, finals
 * faster than they can be spoken) ends the session with an "overflow"
 * error and close code 1013 instead of growing memory.  Every outgoing
 * message goes through at_ws_send_*, which is bounded too: a client that
 * stops reading is dropped after the idle timeout. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/audio.h"
#include "core/clock.h"
#include "services/app.h"
#include "services/web_assets.h"

/* ---- the page and its configuration ---- */

static void h_asset(at_http_req *req, void *user)
{
    (void)user;
    const char *path = at_http_req_path(req);
    if (strcmp(path, "/") == 0) path = "/index.html";
    size_t len;
    const char *ctype;
    const unsigned char *data = at_web_asset(path + 1, &len, &ctype);
    if (!data) {
        at_http_error(req, 404, "invalid_request_error", "no such page");
        return;
    }
    at_http_add_header(req, "cache-control", "no-cache");
    at_http_respond(req, 200, ctype, data, len);
}

static void h_config(at_http_req *req, void *user)
{
    at_app *app = user;
    if (!at_service_require_ready(app, req)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON *src = cJSON_AddArrayToObject(o, "source_languages");
    at_asr_engine *asr = at_app_asr(app, NULL);
    for (const char *const *l = asr ? at_asr_engine_languages(asr) : NULL; l && *l; l++)
        cJSON_AddItemToArray(src, cJSON_CreateString(*l));
    cJSON *pairs = cJSON_AddArrayToObject(o, "pairs");
    size_t n = 0;
    const at_mt_pair *p = at_app_mt(app) ? at_mt_engine_pairs(at_app_mt(app), &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *po = cJSON_CreateObject();
        cJSON_AddStringToObject(po, "source", p[i].source);
        cJSON_AddStringToObject(po, "target", p[i].target);
        cJSON_AddItemToArray(pairs, po);
    }
    cJSON_AddItemToObject(o, "voices", at_app_voices_json(app));
    cJSON *lim = cJSON_AddObjectToObject(o, "limits");
    cJSON_AddNumberToObject(lim, "max_pending", at_app_cfg(app)->pipeline_max_pending);
    cJSON_AddNumberToObject(lim, "max_backlog_s", at_app_cfg(app)->pipeline_max_backlog_s);
    at_http_respond_json(req, 200, o);
    cJSON_Delete(o);
}

/* ---- a session ---- */

typedef struct pl_chunk {
    struct pl_chunk *next;
    size_t n;
    float pcm[];
} pl_chunk;

typedef struct pl_seg {
    struct pl_seg *next;
    int id;
    double start, end;
    char text[];
} pl_seg;

typedef struct pl_session {
    at_ws *ws;
    at_app *app;
    at_asr_stream *asr;
    at_mt_engine *mt;
    at_tts_engine *tts;
    const at_tts_voice *voice;
    char source[16], target[16];
    int speak;
    float speed;

    pthread_mutex_t mu; /* queues and flags */
    pthread_cond_t cv;
    pthread_mutex_t send_mu; /* keeps an audio header next to its frame */
    pl_chunk *a_head, *a_tail;
    size_t a_samples, a_max; /* 16 kHz samples queued / allowed */
    int a_eof;
    pl_seg *s_head, *s_tail;
    size_t s_n, s_max;
    int s_eof;
    int stop;               /* client gone or fatal error: everyone quits */
    int asr_lost;           /* the recogniser went away: finish the queued finals, then close */
    char asr_lost_msg[512]; /* at_err.msg */
    int n_segments;         /* ids given to finals (ASR thread) */
    int n_errors;           /* per-segment errors (worker) */
} pl_session;

static void pl_stop(pl_session *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int pl_stopped(pl_session *s)
{
    pthread_mutex_lock(&s->mu);
    int st = s->stop;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* A failed send means the client is gone (or stopped reading): stop. */
static int pl_send(pl_session *s, const cJSON *o)
{
    pthread_mutex_lock(&s->send_mu);
    int rc = at_ws_send_json(s->ws, o);
    pthread_mutex_unlock(&s->send_mu);
    if (rc) pl_stop(s);
    return rc;
}

static void send_error(at_ws *ws, pthread_mutex_t *send_mu, int segment, const char *code, const char *fmt,
                       va_list ap)
{
    char msg[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    cJSON_AddStringToObject(o, "code", code);
    if (segment >= 0) cJSON_AddNumberToObject(o, "segment", segment);
    cJSON_AddStringToObject(o, "message", msg);
    if (send_mu) pthread_mutex_lock(send_mu);
    at_ws_send_json(ws, o);
    if (send_mu) pthread_mutex_unlock(send_mu);
    cJSON_Delete(o);
}

/* Ends the session: an error event, then close_code.  Only the first
 * fatal error is reported. */
static void pl_fatal(pl_session *s, int close_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pl_fatal(pl_session *s, int close_code, const char *code, const char *fmt, ...)
{
    pthread_mutex_lock(&s->mu);
    int first = !s->stop;
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (!first) return;
    va_list ap;
    va_start(ap, fmt);
    send_error(s->ws, &s->send_mu, -1, code, fmt, ap);
    va_end(ap);
    at_ws_set_close(s->ws, close_code, code);
}

/* A failure of one segment: reported, and the stream goes on. */
static void pl_seg_error(pl_session *s, int segment, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pl_seg_error(pl_session *s, int segment, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_error(s->ws, &s->send_mu, segment, code, fmt, ap);
    va_end(ap);
    s->n_errors++;
}

static int ws_gone(void *ws) { return at_ws_closed(ws); }

/* Errors before the session starts (no threads yet). */
static void early_error(at_ws *ws, int close_code, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void early_error(at_ws *ws, int close_code, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    send_error(ws, NULL, -1, code, fmt, ap);
    va_end(ap);
    at_ws_set_close(ws, close_code, code);
}

/* A recognition error.  A remote recogniser that went away (its replica
 * drained or died) is not the session's fault: the finals it already gave
 * are still translated and spoken, then the client is told to reconnect,
 * which opens a stream on a healthy replica. */
static void pl_asr_failed(pl_session *s, const at_err *err)
{
    if (err->code == AT_E_CANCELLED) {
        pl_stop(s);
        return;
    }
    if (err->code != AT_E_BUSY && err->code != AT_E_IO) {
        pl_fatal(s, 1011, "asr_failed", "recognition failed: %s", err->msg);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->asr_lost) snprintf(s->asr_lost_msg, sizeof s->asr_lost_msg, "%s", err->msg);
    s->asr_lost = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static int pl_asr_lost(pl_session *s)
{
    pthread_mutex_lock(&s->mu);
    int lost = s->asr_lost;
    pthread_mutex_unlock(&s->mu);
    return lost;
}

/* ---- ASR thread ---- */

static int is_blank(const char *t)
{
    for (; *t; t++)
        if (!isspace((unsigned char)*t)) return 0;
    return 1;
}

static int on_asr_event(void *user, const at_asr_event *ev)
{
    pl_session *s = user;
    if (pl_stopped(s)) return 1;
    /* A final without words is silence, not a segment. */
    if (ev->is_final && is_blank(ev->text)) return 0;
    int id = ev->is_final ? s->n_segments : -1;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", ev->is_final ? "final" : "partial");
    if (ev->is_final) cJSON_AddNumberToObject(o, "segment", id);
    cJSON_AddStringToObject(o, "text", ev->text);
    cJSON_AddNumberToObject(o, "start", ev->start);
    cJSON_AddNumberToObject(o, "end", ev->end);
    if (ev->language) cJSON_AddStringToObject(o, "language", ev->language);
    int rc = pl_send(s, o);
    cJSON_Delete(o);
    if (rc || !ev->is_final) return rc != 0;
    s->n_segments++;
    size_t len = strlen(ev->text);
    pl_seg *seg = malloc(sizeof *seg + len + 1);
    if (!seg) {
        pl_fatal(s, 1011, "server_error", "out of memory");
        return 1;
    }
    seg->next = NULL;
    seg->id = id;
    seg->start = ev->start;
    seg->end = ev->end;
    memcpy(seg->text, ev->text, len + 1);
    pthread_mutex_lock(&s->mu);
    int full = s->s_n >= s->s_max;
    if (!full) {
        if (s->s_tail)
            s->s_tail->next = seg;
        else
            s->s_head = seg;
        s->s_tail = seg;
        s->s_n++;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (full) {
        free(seg);
        pl_fatal(s, 1013, "overflow",
                 "more than %zu segments are waiting for translation and speech; the server "
                 "cannot keep up with this stream",
                 s->s_max);
        return 1;
    }
    return 0;
}

static void *asr_main(void *arg)
{
    pl_session *s = arg;
    at_err err;
    at_err_clear(&err);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int idle = 0;
        while (!s->a_head && !s->a_eof && !s->stop && !idle) {
            /* a client may pause without ending: every 100 ms without audio,
             * collect the events the recogniser has ready (a remote one
             * only reads its socket when fed) */
            struct timespec t;
            at_deadline_ms(&t, 100);
            idle = pthread_cond_timedwait(&s->cv, &s->mu, &t) == ETIMEDOUT;
        }
        if (idle && !s->a_head && !s->a_eof && !s->stop) {
            pthread_mutex_unlock(&s->mu);
            if (at_asr_stream_feed(s->asr, NULL, 0, on_asr_event, s, &err) != 0) {
                pl_asr_failed(s, &err);
                break;
            }
            continue;
        }
        pl_chunk *c = s->stop ? NULL : s->a_head;
        int eof = s->a_eof;
        if (c) {
            s->a_head = c->next;
            if (!s->a_head) s->a_tail = NULL;
            s->a_samples -= c->n;
        }
        pthread_mutex_unlock(&s->mu);
        if (!c) {
            if (eof && !pl_stopped(s) && at_asr_stream_finish(s->asr, on_asr_event, s, &err) != 0)
                pl_asr_failed(s, &err);
            break;
        }
        int rc = at_asr_stream_feed(s->asr, c->pcm, c->n, on_asr_event, s, &err);
        free(c);
        if (rc != 0) {
            pl_asr_failed(s, &err);
            break;
        }
    }
    pthread_mutex_lock(&s->mu);
    s->s_eof = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- worker: translate, then speak, one segment at a time ---- */

typedef struct speak_ctx {
    pl_session *s;
    int segment;
    size_t samples;
} speak_ctx;

static int on_tts_chunk(void *user, const int16_t *pcm, size_t n)
{
    speak_ctx *c = user;
    pl_session *s = c->s;
    if (pl_stopped(s)) return 1;
    if (!n) return 0;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "audio");
    cJSON_AddNumberToObject(o, "segment", c->segment);
    cJSON_AddNumberToObject(o, "sample_rate", s->voice->sample_rate);
    cJSON_AddStringToObject(o, "encoding", "pcm16");
    cJSON_AddNumberToObject(o, "channels", 1);
    cJSON_AddNumberToObject(o, "bytes", (double)(n * 2));
    /* The header and its frame leave together: no other binary frame can
     * come between them. */
    pthread_mutex_lock(&s->send_mu);
    int rc = at_ws_send_json(s->ws, o);
    if (!rc) rc = at_ws_send_binary(s->ws, pcm, n * sizeof *pcm);
    pthread_mutex_unlock(&s->send_mu);
    cJSON_Delete(o);
    if (rc) {
        pl_stop(s);
        return 1;
    }
    c->samples += n;
    return 0;
}

static void work_segment(pl_session *s, const pl_seg *seg)
{
    at_err err;
    at_err_clear(&err);
    char *out = NULL;
    double t0 = at_now_s();
    int rc = strcmp(s->source, s->target) == 0
                 ? ((out = strdup(seg->text)) ? 0 : at_err_set(&err, AT_E_NOMEM, "out of memory"))
                 : at_mt_translate(s->mt, s->source, s->target, seg->text, &out, &err);
    at_app_observe(s->app, "pipeline_translate", at_now_s() - t0);
    if (rc != 0) {
        pl_seg_error(s, seg->id, "translation_failed", "translation failed: %s", err.msg);
        free(out);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "translation");
    cJSON_AddNumberToObject(o, "segment", seg->id);
    cJSON_AddStringToObject(o, "source_language", s->source);
    cJSON_AddStringToObject(o, "target_language", s->target);
    cJSON_AddStringToObject(o, "source_text", seg->text);
    cJSON_AddStringToObject(o, "translated_text", out);
    cJSON_AddNumberToObject(o, "start", seg->start);
    cJSON_AddNumberToObject(o, "end", seg->end);
    rc = pl_send(s, o);
    cJSON_Delete(o);
    if (rc || !s->speak) {
        free(out);
        return;
    }
    if (is_blank(out)) {
        free(out);
        pl_seg_error(s, seg->id, "synthesis_failed", "the translation is empty: nothing to say");
        return;
    }
    speak_ctx c = {s, seg->id, 0};
    t0 = at_now_s();
    rc = at_tts_synthesize(s->tts, s->voice, out, s->speed, on_tts_chunk, &c, &err);
    at_app_observe(s->app, "pipeline_synthesize", at_now_s() - t0);
    free(out);
    if (pl_stopped(s)) return;
    if (rc != 0 || c.samples == 0) {
        pl_seg_error(s, seg->id, "synthesis_failed", "speech synthesis failed: %s",
                     rc ? err.msg : "no audio produced");
        return;
    }
    at_app_count_audio(s->app, "pipeline_tts", (double)c.samples / s->voice->sample_rate);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "audio_end");
    cJSON_AddNumberToObject(o, "segment", seg->id);
    cJSON_AddNumberToObject(o, "samples", (double)c.samples);
    cJSON_AddNumberToObject(o, "duration", (double)c.samples / s->voice->sample_rate);
    pl_send(s, o);
    cJSON_Delete(o);
}

static void *worker_main(void *arg)
{
    pl_session *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->s_head && !s->s_eof && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        pl_seg *seg = s->stop ? NULL : s->s_head;
        if (seg) {
            s->s_head = seg->next;
            if (!s->s_head) s->s_tail = NULL;
            s->s_n--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!seg) break;
        work_segment(s, seg);
        free(seg);
    }
    return NULL;
}

/* ---- the session thread: configuration, then audio into the queue ---- */

typedef struct pl_config {
    char source[16], target[16], voice[64], model[64];
    int speak, rate;
    double speed;
    long max_pending;
    double max_backlog_s;
} pl_config;

/* Reads and validates the configuration message; 0 or -1 (already
 * reported to the client). */
static int read_config(at_ws *ws, at_app *app, pl_config *pc)
{
    const at_app_config *ac = at_app_cfg(app);
    at_ws_msg m;
    int rc = at_ws_recv(ws, &m, ac->stream_idle_s * 1000);
    if (rc == 0) {
        early_error(ws, 1008, "bad_config", "no configuration received within %d s", ac->stream_idle_s);
        return -1;
    }
    if (rc < 0) return -1;
    if (m.kind != AT_WS_TEXT) {
        free(m.data);
        early_error(ws, 1008, "bad_config",
                    "audio before configuration: send a JSON text frame first, e.g. "
                    "{\"type\":\"config\",\"source\":\"en\",\"target\":\"es\",\"voice\":\"es\"}");
        return -1;
    }
    cJSON *o = cJSON_ParseWithLength((const char *)m.data, m.len);
    free(m.data);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        early_error(ws, 1008, "bad_config", "configuration is not a JSON object");
        return -1;
    }
    memset(pc, 0, sizeof *pc);
    snprintf(pc->source, sizeof pc->source, "en");
    pc->speak = 1;
    pc->rate = 16000;
    pc->speed = 1.0;
    pc->max_pending = ac->pipeline_max_pending;
    pc->max_backlog_s = ac->pipeline_max_backlog_s;
    const char *bad = NULL;
    const cJSON *it;
    struct {
        const char *key;
        char *dst;
        size_t cap;
    } strs[] = {{"source", pc->source, sizeof pc->source},
                {"target", pc->target, sizeof pc->target},
                {"voice", pc->voice, sizeof pc->voice},
                {"model", pc->model, sizeof pc->model}};
    for (size_t i = 0; i < 4 && !bad; i++) {
        it = cJSON_GetObjectItemCaseSensitive(o, strs[i].key);
        if (!it) continue;
        if (!cJSON_IsString(it) || strlen(it->valuestring) >= strs[i].cap)
            bad = "source, target, voice and model must be short strings";
        else
            snprintf(strs[i].dst, strs[i].cap, "%s", it->valuestring);
    }
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "type")) &&
        (!cJSON_IsString(it) || strcmp(it->valuestring, "config") != 0))
        bad = "the first message must be {\"type\":\"config\", ...}";
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "speak"))) {
        if (!cJSON_IsBool(it))
            bad = "speak must be true or false";
        else
            pc->speak = cJSON_IsTrue(it);
    }
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "sample_rate"))) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 8000 || it->valuedouble > 48000)
            bad = "sample_rate must be a number from 8000 to 48000";
        else
            pc->rate = (int)it->valuedouble;
    }
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "encoding")) &&
        (!cJSON_IsString(it) ||
         (strcmp(it->valuestring, "pcm16") != 0 && strcmp(it->valuestring, "s16le") != 0)))
        bad = "unsupported encoding; use \"pcm16\" (signed 16-bit little-endian mono)";
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "channels")) &&
        (!cJSON_IsNumber(it) || it->valueint != 1))
        bad = "channels must be 1 (mono)";
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "speed"))) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0.25 || it->valuedouble > 4.0)
            bad = "speed must be a number from 0.25 to 4.0";
        else
            pc->speed = it->valuedouble;
    }
    /* A client may tighten the server's limits, never loosen them. */
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "max_pending"))) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 1)
            bad = "max_pending must be a number >= 1";
        else if (it->valuedouble < pc->max_pending)
            pc->max_pending = (long)it->valuedouble;
    }
    if (!bad && (it = cJSON_GetObjectItemCaseSensitive(o, "max_backlog_s"))) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0.1)
            bad = "max_backlog_s must be a number >= 0.1";
        else if (it->valuedouble < pc->max_backlog_s)
            pc->max_backlog_s = it->valuedouble;
    }
    if (!bad && !pc->target[0]) bad = "target is required (the language to translate into)";
    cJSON_Delete(o);
    if (bad) {
        early_error(ws, 1008, "bad_config", "bad configuration: %s", bad);
        return -1;
    }
    return 0;
}

/* Appends one binary message (PCM16 at pc->rate) to the audio queue;
 * *carry holds an odd trailing byte.  -1 when the session must end. */
static int queue_audio(pl_session *s, at_ws_msg *m, at_resampler *rs, int rate, unsigned char *carry,
                       size_t *n_carry, float **res, size_t *res_cap, double *seconds_in)
{
    at_err err;
    at_err_clear(&err);
    size_t total = *n_carry + m->len;
    size_t usable = total & ~(size_t)1;
    if (usable == 0) {
        if (m->len) {
            *carry = m->data[0];
            *n_carry = 1;
        }
        return 0;
    }
    unsigned char *buf = m->data;
    unsigned char *joined = NULL;
    if (*n_carry) {
        joined = malloc(total);
        if (!joined) {
            pl_fatal(s, 1011, "server_error", "out of memory");
            return -1;
        }
        joined[0] = *carry;
        memcpy(joined + 1, m->data, m->len);
        buf = joined;
    }
    *n_carry = total - usable;
    if (*n_carry) *carry = buf[usable];
    at_audio a = {0};
    int rc = at_audio_from_pcm16(buf, usable, rate, 1, &a, &err);
    free(joined);
    if (rc != 0) {
        pl_fatal(s, 1011, "server_error", "cannot convert audio: %s", err.msg);
        return -1;
    }
    *seconds_in += (double)a.n / rate;
    const float *feed = a.samples;
    size_t n = a.n;
    if (rs) {
        if (at_resampler_process(rs, a.samples, a.n, 0, res, res_cap, &n, &err) != 0) {
            at_audio_free(&a);
            pl_fatal(s, 1011, "server_error", "resampling failed: %s", err.msg);
            return -1;
        }
        feed = *res;
    }
    pl_chunk *c = n ? malloc(sizeof *c + n * sizeof(float)) : NULL;
    if (n && !c) {
        at_audio_free(&a);
        pl_fatal(s, 1011, "server_error", "out of memory");
        return -1;
    }
    if (c) {
        c->next = NULL;
        c->n = n;
        memcpy(c->pcm, feed, n * sizeof(float));
    }
    at_audio_free(&a);
    if (!c) return 0;
    pthread_mutex_lock(&s->mu);
    int full = s->a_samples + n > s->a_max;
    if (!full) {
        if (s->a_tail)
            s->a_tail->next = c;
        else
            s->a_head = c;
        s->a_tail = c;
        s->a_samples += n;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (full) {
        free(c);
        pl_fatal(s, 1013, "overflow",
                 "audio is arriving faster than it can be recognised: more than %.1f s are "
                 "waiting; send audio in real time",
                 (double)s->a_max / AT_ASR_SAMPLE_RATE);
        return -1;
    }
    return 0;
}

static void h_pipeline(at_ws *ws, void *user)
{
    at_app *app = user;
    const at_app_config *ac = at_app_cfg(app);
    at_err err;
    at_err_clear(&err);
    int st = at_app_ready(app, &err);
    if (st != 1) {
        early_error(ws, 1013, "not_ready",
                    st == 0 ? "engines are still loading; retry shortly" : "engines failed to load: %s",
                    err.msg);
        return;
    }
    pl_config pc;
    if (read_config(ws, app, &pc) != 0) return;
    at_asr_engine *asr = at_app_asr(app, pc.model);
    at_mt_engine *mt = at_app_mt(app);
    at_tts_engine *tts = NULL;
    const at_tts_voice *voice = NULL;
    if (!asr && pc.model[0]) {
        early_error(ws, 1008, "bad_config", "unknown model '%s'; available: %s", pc.model,
                    at_app_asr_names(app));
        return;
    }
    if (!asr || !mt || !at_app_tts_count(app)) {
        early_error(ws, 1011, "server_error", "the pipeline needs ASR, MT and TTS engines");
        return;
    }
    if (!at_asr_engine_supports_language(asr, pc.source)) {
        early_error(ws, 1008, "bad_config", "source language '%s' is not supported by the %s engine",
                    pc.source, at_asr_engine_name(asr));
        return;
    }
    if (strcmp(pc.source, pc.target) != 0 && !at_mt_engine_has_pair(mt, pc.source, pc.target)) {
        char *out = NULL;
        at_mt_translate(mt, pc.source, pc.target, "x", &out, &err);
        free(out);
        early_error(ws, 1008, "bad_config", "%s", err.msg);
        return;
    }
    /* The default voice speaks the target language. */
    voice = at_app_find_voice(app, pc.voice[0] ? pc.voice : pc.target, &tts);
    if (pc.speak && !voice) {
        early_error(ws, 1008, "bad_config", "unknown voice '%s'; GET /v1/config lists the voices",
                    pc.voice[0] ? pc.voice : pc.target);
        return;
    }
    at_asr_options opt = {0};
    opt.language = pc.source;
    opt.cancelled = ws_gone; /* no waiting for a decoder nobody will use */
    opt.cancel_user = ws;
    at_asr_stream *as = at_asr_stream_open(asr, &opt, &err);
    if (!as) {
        if (err.code == AT_E_CANCELLED) return;
        if (err.code == AT_E_BUSY || err.code == AT_E_IO)
            early_error(ws, 1013, "asr_unavailable", "speech recognition is unavailable: %s; retry shortly",
                        err.msg);
        else
            early_error(ws, 1011, "asr_failed", "cannot open a recognition stream: %s", err.msg);
        return;
    }
    at_resampler *rs = NULL;
    if (pc.rate != AT_ASR_SAMPLE_RATE && !(rs = at_resampler_new(pc.rate, AT_ASR_SAMPLE_RATE, &err))) {
        at_asr_stream_close(as);
        early_error(ws, 1011, "server_error", "cannot resample: %s", err.msg);
        return;
    }

    pl_session s;
    memset(&s, 0, sizeof s);
    s.ws = ws;
    s.app = app;
    s.asr = as;
    s.mt = mt;
    s.tts = tts;
    s.voice = voice;
    snprintf(s.source, sizeof s.source, "%s", pc.source);
    snprintf(s.target, sizeof s.target, "%s", pc.target);
    s.speak = pc.speak;
    s.speed = (float)pc.speed;
    s.a_max = (size_t)(pc.max_backlog_s * AT_ASR_SAMPLE_RATE);
    s.s_max = (size_t)pc.max_pending;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_mutex_init(&s.send_mu, NULL);
    at_app_pipelines(app, 1);

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ready");
    cJSON_AddStringToObject(o, "source", s.source);
    cJSON_AddStringToObject(o, "target", s.target);
    cJSON_AddBoolToObject(o, "speak", s.speak);
    if (voice) {
        cJSON_AddStringToObject(o, "voice", voice->name);
        cJSON_AddNumberToObject(o, "tts_sample_rate", voice->sample_rate);
    }
    cJSON_AddNumberToObject(o, "sample_rate", pc.rate);
    cJSON_AddNumberToObject(o, "max_pending", (double)s.s_max);
    cJSON_AddNumberToObject(o, "max_backlog_s", pc.max_backlog_s);
    cJSON *eng = cJSON_AddObjectToObject(o, "engines");
    cJSON_AddStringToObject(eng, "asr", at_asr_engine_name(asr));
    cJSON_AddStringToObject(eng, "mt", at_mt_engine_name(mt));
    if (tts) cJSON_AddStringToObject(eng, "tts", at_tts_engine_name(tts));
    pl_send(&s, o);
    cJSON_Delete(o);

    pthread_t t_asr, t_work;
    int have_asr = pthread_create(&t_asr, NULL, asr_main, &s) == 0;
    int have_work = have_asr && pthread_create(&t_work, NULL, worker_main, &s) == 0;
    if (!have_work) pl_fatal(&s, 1011, "server_error", "cannot start the pipeline threads");

    unsigned char carry = 0;
    size_t n_carry = 0;
    float *res = NULL;
    size_t res_cap = 0;
    double seconds_in = 0, last_msg = at_now_s();
    int ended = 0;
    while (!pl_stopped(&s) && !pl_asr_lost(&s)) {
        at_ws_msg m;
        /* Short waits so a stop decided by another thread ends us quickly. */
        int rc = at_ws_recv(ws, &m, 200);
        if (rc == 0) {
            if (at_now_s() - last_msg > ac->stream_idle_s) {
                pl_fatal(&s, 1008, "idle", "no audio for %d s; closing", ac->stream_idle_s);
                break;
            }
            continue;
        }
        if (rc < 0) {
            /* Peer gone: cancel.  Server draining: finish what we have. */
            if (at_ws_closed(ws))
                pl_stop(&s);
            else
                ended = 1;
            break;
        }
        last_msg = at_now_s();
        if (m.kind == AT_WS_TEXT) {
            cJSON *c = cJSON_ParseWithLength((const char *)m.data, m.len);
            const cJSON *t = c ? cJSON_GetObjectItemCaseSensitive(c, "type") : NULL;
            int end = cJSON_IsString(t) && strcmp(t->valuestring, "end") == 0;
            cJSON_Delete(c);
            free(m.data);
            if (end) {
                ended = 1;
                break;
            }
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "type", "error");
            cJSON_AddStringToObject(e, "code", "bad_message");
            cJSON_AddStringToObject(e, "message",
                                    "unknown control message; send {\"type\":\"end\"} to finish");
            pl_send(&s, e);
            cJSON_Delete(e);
            continue;
        }
        rc = queue_audio(&s, &m, rs, pc.rate, &carry, &n_carry, &res, &res_cap, &seconds_in);
        free(m.data);
        if (rc) break;
        if (seconds_in > ac->max_audio_seconds) {
            pl_fatal(&s, 1009, "too_long", "stream exceeds the limit of %.0f s of audio",
                     ac->max_audio_seconds);
            break;
        }
    }
    if (ended && rs && !pl_stopped(&s)) {
        /* The resampler's tail: the last few milliseconds. */
        size_t n = 0;
        if (at_resampler_process(rs, NULL, 0, 1, &res, &res_cap, &n, &err) == 0 && n) {
            pl_chunk *c = malloc(sizeof *c + n * sizeof(float));
            if (c) {
                c->next = NULL;
                c->n = n;
                memcpy(c->pcm, res, n * sizeof(float));
                pthread_mutex_lock(&s.mu);
                if (s.a_tail)
                    s.a_tail->next = c;
                else
                    s.a_head = c;
                s.a_tail = c;
                s.a_samples += n;
                pthread_mutex_unlock(&s.mu);
            }
        }
    }
    pthread_mutex_lock(&s.mu);
    s.a_eof = 1;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    if (have_asr) pthread_join(t_asr, NULL);
    if (have_work) pthread_join(t_work, NULL);
    if (!pl_stopped(&s) && s.asr_lost) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "type", "error");
        cJSON_AddStringToObject(e, "code", "asr_unavailable");
        char msg[768];
        snprintf(msg, sizeof msg,
                 "speech recognition went away in the middle of the stream (%s); every final so far "
                 "was translated; reconnect to start a new session",
                 s.asr_lost_msg);
        cJSON_AddStringToObject(e, "message", msg);
        cJSON_AddNumberToObject(e, "segments", s.n_segments);
        cJSON_AddNumberToObject(e, "duration", seconds_in);
        pl_send(&s, e);
        cJSON_Delete(e);
        at_ws_set_close(ws, 1013, "asr_unavailable");
    } else if (ended && !pl_stopped(&s)) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", "summary");
        cJSON_AddNumberToObject(o, "segments", s.n_segments);
        cJSON_AddNumberToObject(o, "errors", s.n_errors);
        cJSON_AddNumberToObject(o, "duration", seconds_in);
        pl_send(&s, o);
        cJSON_Delete(o);
    }
    at_app_count_audio(app, "pipeline", seconds_in);
    at_app_pipelines(app, -1);
    while (s.a_head) {
        pl_chunk *c = s.a_head;
        s.a_head = c->next;
        free(c);
    }
    while (s.s_head) {
        pl_seg *g = s.s_head;
        s.s_head = g->next;
        free(g);
    }
    free(res);
    at_resampler_free(rs);
    at_asr_stream_close(as);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.send_mu);
}

static const at_http_route routes[] = {
    AT_SERVICE_COMMON_ROUTES,
    {"GET", "/", h_asset, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN, 0},
    {"GET", "/index.html", h_asset, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN, 0},
    {"GET", "/app.js", h_asset, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN, 0},
    {"GET", "/pcm-worklet.js", h_asset, NULL, AT_ROUTE_INLINE | AT_ROUTE_OPEN, 0},
    {"GET", "/v1/config", h_config, NULL, AT_ROUTE_INLINE, 0},
    {NULL, "/v1/pipeline", NULL, h_pipeline, AT_ROUTE_WORKER, 0},
};

int at_pipeline_service_listen(at_app *app, at_http_server *srv, const char *iface, int port, int *bound,
                               at_err *err)
{
    return at_http_server_listen(srv, "pipeline", iface, port, routes, sizeof routes / sizeof routes[0], app,
                                 bound, err);
}
