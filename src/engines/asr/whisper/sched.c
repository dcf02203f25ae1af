/* sched.c - leader/follower batching of decoder steps.
 *
 * Callers queue a request and wait.  Whoever finds no batch running
 * becomes the leader: it takes every queued request (up to max_rows
 * token rows), runs them as one batch on its own state's backend (each
 * sequence attending to its own caller's encoding), marks them done, and
 * hands the lead to a caller still queued.  No thread of its own: the
 * leader is always a caller that would otherwise wait. */
#include "engines/asr/whisper/sched.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct req {
    struct req *next;
    at_whisper_state *st;
    const at_whisper_seq *seqs;
    int n, rows;
    int done, rc;
    at_err err;
} req;

/* A window to encode. */
typedef struct ereq {
    struct ereq *next;
    at_whisper_state *st;
    const float *mel;
    int audio_ctx, rows;
    int done, rc;
    at_err err;
} ereq;

enum { ENC_MAX_WINDOWS = 16 };

struct at_wsched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    req *head, *tail;
    int leading; /* a batch is being run */
    int max_rows;
    at_whisper_seq *batch; /* the leader's working arrays, max_rows long */
    req **taken;
    /* encoder windows: their own queue and leader, so a long encode never
     * holds up the streams' decoder steps */
    at_compute *pool;
    ereq *ehead, *etail;
    int eleading;
    at_whisper_encbatch *eb; /* made by the first batch of two windows */
    at_wsched_stats stats;
};

at_wsched *at_wsched_new(int max_rows, at_compute *pool, at_err *err)
{
    if (max_rows < 1 || max_rows > 4096) {
        at_err_set(err, AT_E_INVALID, "scheduler batch of %d rows", max_rows);
        return NULL;
    }
    at_wsched *s = calloc(1, sizeof *s);
    if (s) {
        s->batch = malloc((size_t)max_rows * sizeof *s->batch);
        s->taken = malloc((size_t)max_rows * sizeof *s->taken);
    }
    if (!s || !s->batch || !s->taken) {
        if (s) {
            free(s->batch);
            free(s->taken);
        }
        free(s);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->max_rows = max_rows;
    s->pool = pool;
    return s;
}

void at_wsched_free(at_wsched *s)
{
    if (!s) return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->batch);
    free(s->taken);
    at_whisper_encbatch_free(s->eb);
    free(s);
}

void at_wsched_get_stats(at_wsched *s, at_wsched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

/* Takes queued requests, oldest first, while their rows fit; always at
 * least one. */
static int take(at_wsched *s, int *n_taken, int *n_rows)
{
    int rows = 0, nseq = 0, k = 0;
    while (s->head) {
        req *r = s->head;
        if (k > 0 && (rows + r->rows > s->max_rows || nseq + r->n > s->max_rows)) break;
        s->head = r->next;
        if (!s->head) s->tail = NULL;
        s->taken[k++] = r;
        rows += r->rows;
        nseq += r->n;
        if (rows >= s->max_rows) break;
    }
    *n_taken = k;
    *n_rows = rows;
    return nseq;
}

/* Runs the taken requests on the leader's state, outside the lock. */
static void run(at_wsched *s, at_whisper_state *lead, int k, int nseq)
{
    req **t = s->taken;
    if (k == 1) {
        /* (its owner is waiting: its state is free to use) */
        t[0]->rc = at_whisper_decode_batch(t[0]->st, t[0]->seqs, t[0]->n, &t[0]->err);
        return;
    }
    for (int i = 0, o = 0; i < k; i++)
        for (int j = 0; j < t[i]->n; j++, o++) {
            s->batch[o] = t[i]->seqs[j];
            if (!s->batch[o].audio) s->batch[o].audio = t[i]->st;
        }
    at_err err = {0};
    int rc = at_whisper_decode_batch(lead, s->batch, nseq, &err);
    /* a failed batch changed no cache: each step again alone, for its own
     * result and message */
    for (int i = 0; i < k; i++)
        t[i]->rc = rc == 0 ? 0 : at_whisper_decode_batch(t[i]->st, t[i]->seqs, t[i]->n, &t[i]->err);
}

int at_wsched_decode(at_wsched *s, at_whisper_state *st, const at_whisper_seq *seqs, int n, at_err *err)
{
    if (!st || !seqs || n <= 0) return at_err_set(err, AT_E_INVALID, "no sequences to decode");
    req me = {.st = st, .seqs = seqs, .n = n};
    for (int i = 0; i < n; i++) me.rows += seqs[i].n > 0 ? seqs[i].n : 0;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = &me;
    else
        s->head = &me;
    s->tail = &me;
    for (;;) {
        if (me.done) break;
        if (!s->leading) {
            /* lead one batch: the oldest steps, ours among them or in a
             * later batch this thread also leads */
            s->leading = 1;
            int k, rows, nseq = take(s, &k, &rows);
            pthread_mutex_unlock(&s->mu);
            run(s, st, k, nseq);
            pthread_mutex_lock(&s->mu);
            for (int i = 0; i < k; i++) s->taken[i]->done = 1;
            s->stats.batches++;
            s->stats.steps += k;
            s->stats.rows += rows;
            if (k > s->stats.max_steps) s->stats.max_steps = k;
            s->leading = 0;
            pthread_cond_broadcast(&s->cv);
            continue;
        }
        pthread_cond_wait(&s->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    if (me.rc && err) *err = me.err;
    return me.rc;
}

/* Takes queued windows, oldest first, while their positions fit two full
 * windows; always at least one. */
static int take_windows(at_wsched *s, int cap, ereq **t)
{
    int rows = 0, k = 0;
    while (s->ehead && k < ENC_MAX_WINDOWS) {
        ereq *r = s->ehead;
        if (k > 0 && rows + r->rows > cap) break;
        s->ehead = r->next;
        if (!s->ehead) s->etail = NULL;
        t[k++] = r;
        rows += r->rows;
    }
    return k;
}

/* Runs the taken windows, outside the lock. */
static void run_windows(at_wsched *s, ereq **t, int k, int cap)
{
    if (k > 1 && !s->eb) {
        at_err err = {0};
        s->eb = at_whisper_encbatch_new(at_whisper_state_model(t[0]->st), s->pool, cap, &err);
    }
    if (k > 1 && s->eb) {
        at_whisper_state *st[ENC_MAX_WINDOWS];
        const float *mel[ENC_MAX_WINDOWS];
        int ctx[ENC_MAX_WINDOWS];
        for (int i = 0; i < k; i++) st[i] = t[i]->st, mel[i] = t[i]->mel, ctx[i] = t[i]->audio_ctx;
        at_err err = {0};
        if (at_whisper_encode_batch(s->eb, st, mel, ctx, k, &err) == 0) {
            for (int i = 0; i < k; i++) t[i]->rc = 0;
            return;
        }
    }
    /* one window, or a batch that failed (or found no memory for its
     * workspace): each alone, for its own result and message */
    for (int i = 0; i < k; i++)
        t[i]->rc = at_whisper_encode(t[i]->st, t[i]->mel, t[i]->audio_ctx, &t[i]->err);
}

int at_wsched_encode(at_wsched *s, at_whisper_state *st, const float *mel, int audio_ctx, at_err *err)
{
    if (!st) return at_err_set(err, AT_E_INVALID, "no state to encode on");
    if (!s->pool) return at_whisper_encode(st, mel, audio_ctx, err);
    const at_whisper_hparams *hp = at_whisper_model_hparams(at_whisper_state_model(st));
    int cap = 2 * hp->n_audio_ctx;
    ereq me = {
        .st = st, .mel = mel, .audio_ctx = audio_ctx, .rows = at_whisper_encode_positions(st, audio_ctx)};
    pthread_mutex_lock(&s->mu);
    if (s->etail)
        s->etail->next = &me;
    else
        s->ehead = &me;
    s->etail = &me;
    while (!me.done) {
        if (s->eleading) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        s->eleading = 1;
        ereq *t[ENC_MAX_WINDOWS];
        int k = take_windows(s, cap, t);
        pthread_mutex_unlock(&s->mu);
        run_windows(s, t, k, cap);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < k; i++) t[i]->done = 1;
        s->stats.enc_batches++;
        s->stats.windows += k;
        if (k > s->stats.max_windows) s->stats.max_windows = k;
        s->eleading = 0;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (me.rc && err) *err = me.err;
    return me.rc;
}
