/* generate.c - greedy and beam search as transformers' generate() does
 * them (see generate.h). */
#include "engines/mt/nmt/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/kernels.h"
#include "nn/safetensors.h"

#define NEG_BIG (-1.0e9f) /* transformers' "very large negative value" */

/* ------------------------------------------------------------ configuration */

void at_nmt_gen_defaults(const at_nmt_model *m, at_nmt_gen *g)
{
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    memset(g, 0, sizeof *g);
    g->num_beams = 1;
    g->max_length = 20;
    g->length_penalty = 1.0f;
    g->early_stopping = AT_NMT_STOP_HEURISTIC;
    g->decoder_start_id = hp->decoder_start_id;
    g->eos[0] = hp->eos_id;
    g->n_eos = 1;
    g->forced_bos_id = -1;
    g->forced_eos_id = -1;
}

/* eos_token_id: an integer or a list of them. */
static int read_eos(const at_hf_config *c, int V, at_nmt_gen *g, at_err *err)
{
    int n = 0;
    if (!at_hf_config_has(c, "eos_token_id")) return 0;
    if (at_hf_config_ints(c, "eos_token_id", 0, V - 1, g->eos, AT_NMT_MAX_EOS, &n, err)) return -1;
    if (n > 0) g->n_eos = n;
    return 0;
}

/* early_stopping: true, false or "never". */
static int read_stopping(const at_hf_config *c, at_nmt_gen *g, at_err *err)
{
    const char *s = NULL;
    int b = 0;
    at_err e2;
    if (!at_hf_config_has(c, "early_stopping")) return 0;
    if (!at_hf_config_bool_or(c, "early_stopping", 0, &b, &e2)) {
        g->early_stopping = b ? AT_NMT_STOP_EARLY : AT_NMT_STOP_HEURISTIC;
        return 0;
    }
    if (!at_hf_config_string_or(c, "early_stopping", "", &s, &e2) && !strcmp(s, "never")) {
        g->early_stopping = AT_NMT_STOP_NEVER;
        return 0;
    }
    return at_err_set(err, AT_E_CORRUPT, "%s: \"early_stopping\" must be true, false or \"never\"",
                      at_hf_config_path(c));
}

static int read_keys(const at_hf_config *c, const at_nmt_model *m, at_nmt_gen *g, at_err *err)
{
    const at_nmt_hparams *hp = at_nmt_model_hparams(m);
    int V = hp->dec_vocab, nb = g->num_beams, fb = g->forced_bos_id, fe = g->forced_eos_id,
        rn = g->renormalize;
    double lp = g->length_penalty;
    /* null means "not set" in these files: keep what we have */
    if (at_hf_config_int_or(c, "num_beams", 1, AT_NMT_MAX_BEAMS, nb, &g->num_beams, err) ||
        at_hf_config_int_or(c, "max_length", 2, hp->max_pos, g->max_length, &g->max_length, err) ||
        at_hf_config_int_or(c, "min_length", 0, hp->max_pos, g->min_length, &g->min_length, err) ||
        at_hf_config_float_or(c, "length_penalty", -100, 100, lp, &lp, err) ||
        at_hf_config_int_or(c, "decoder_start_token_id", 0, V - 1, g->decoder_start_id, &g->decoder_start_id,
                            err) ||
        at_hf_config_int_or(c, "forced_bos_token_id", 0, V - 1, fb, &g->forced_bos_id, err) ||
        at_hf_config_int_or(c, "forced_eos_token_id", 0, V - 1, fe, &g->forced_eos_id, err) ||
        at_hf_config_int_or(c, "no_repeat_ngram_size", 0, 64, g->no_repeat_ngram_size,
                            &g->no_repeat_ngram_size, err) ||
        at_hf_config_bool_or(c, "renormalize_logits", rn, &g->renormalize, err) || read_eos(c, V, g, err) ||
        read_stopping(c, g, err))
        return -1;
    g->length_penalty = (float)lp;
    if (at_hf_config_has(c, "bad_words_ids") &&
        at_hf_config_int_lists(c, "bad_words_ids", 0, V - 1, g->bad, AT_NMT_MAX_BAD, g->bad_end,
                               AT_NMT_MAX_BAD_SEQS, &g->n_bad_seqs, err))
        return -1;
    return 0;
}

int at_nmt_gen_load(const char *dir, const at_nmt_model *m, at_nmt_gen *g, at_err *err)
{
    static const char *const files[] = {"config.json", "generation_config.json"};
    char path[4096];
    at_nmt_gen_defaults(m, g);
    for (int i = 0; i < 2; i++) {
        if (snprintf(path, sizeof path, "%s/%s", dir, files[i]) >= (int)sizeof path)
            return at_err_set(err, AT_E_INVALID, "model path too long");
        at_err e2 = {0};
        at_hf_config *c = at_hf_config_load(path, &e2);
        if (!c) {
            if (i == 1 && e2.code == AT_E_IO) continue; /* generation_config.json is optional */
            if (err) *err = e2;
            return -1;
        }
        int rc = read_keys(c, m, g, err);
        at_hf_config_free(c);
        if (rc) return -1;
    }
    return 0;
}

/* ------------------------------------------------------- logits processors */

static int is_eos(const at_nmt_gen *g, int t)
{
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == t) return 1;
    return 0;
}

static void force(float *x, int V, int t)
{
    for (int i = 0; i < V; i++) x[i] = -INFINITY;
    x[t] = 0;
}

/* NoRepeatNGramLogitsProcessor: a token that would complete an n-gram
 * already in the sequence is banned. */
static void no_repeat_ngram(int n, const int *seq, int len, float *x)
{
    if (n < 1 || len + 1 < n) return;
    for (int s = 0; s + n <= len; s++) {
        if (memcmp(seq + s, seq + len - (n - 1), (size_t)(n - 1) * sizeof *seq) == 0)
            x[seq[s + n - 1]] = -INFINITY;
    }
}

/* NoBadWordsLogitsProcessor: the last token of a bad sequence whose other
 * tokens end the sequence; bad "words" that are just an eos are ignored,
 * as transformers ignores them. */
static void bad_words(const at_nmt_gen *g, const int *seq, int len, float *x)
{
    for (int i = 0, b = 0; i < g->n_bad_seqs; b = g->bad_end[i], i++) {
        int k = g->bad_end[i] - b;
        if (k == 1 && is_eos(g, g->bad[b])) continue;
        if (k - 1 > len) continue;
        if (k == 1 || memcmp(seq + len - (k - 1), g->bad + b, (size_t)(k - 1) * sizeof *seq) == 0)
            x[g->bad[b + k - 1]] = -INFINITY;
    }
}

/* transformers' order: n-gram, bad words, min length, forced BOS, forced
 * EOS.  seq holds the len tokens so far. */
static void process(const at_nmt_gen *g, int forced_bos, int max_length, const int *seq, int len, float *x,
                    int V)
{
    no_repeat_ngram(g->no_repeat_ngram_size, seq, len, x);
    bad_words(g, seq, len, x);
    if (len < g->min_length)
        for (int i = 0; i < g->n_eos; i++) x[g->eos[i]] = -INFINITY;
    if (len == 1 && forced_bos >= 0) force(x, V, forced_bos);
    if (len == max_length - 1 && g->forced_eos_id >= 0) force(x, V, g->forced_eos_id);
}

/* ------------------------------------------------------------------ search */

typedef struct cand {
    float score;
    int beam, token, rank;
    float adj; /* selection key */
} cand;

/* Per sentence: B running beams and B finished slots, max_length tokens
 * each. */
typedef struct search {
    at_nmt_job *job;
    int B, L, forced_bos, active, unsat; /* L: this sentence's max_length */
    int *run, *fin;                      /* B x max_length */
    int *fin_len;
    unsigned char *fdone;
    float *rscore, *fscore;
    at_nmt_kv **kv, **kv_next;
    int *src; /* each new beam's source */
} search;

static void search_free(search *q, const at_nmt_decoder *d)
{
    if (q->kv)
        for (int b = 0; b < q->B; b++)
            if (q->kv[b]) d->kv_free(d->user, q->kv[b]);
    free(q->run);
    free(q->fin);
    free(q->fin_len);
    free(q->fdone);
    free(q->rscore);
    free(q->fscore);
    free(q->kv);
    free(q->kv_next);
    free(q->src);
}

static int search_init(search *q, const at_nmt_decoder *d, const at_nmt_gen *g, at_nmt_job *job, at_err *err)
{
    int B = g->num_beams, L = g->max_length;
    memset(q, 0, sizeof *q);
    q->job = job;
    q->B = B;
    q->L = job->max_length >= 2 && job->max_length < L ? job->max_length : L;
    q->forced_bos = job->forced_bos_id >= 0 ? job->forced_bos_id : g->forced_bos_id;
    q->active = q->unsat = 1;
    q->run = calloc((size_t)B * L, sizeof *q->run);
    q->fin = calloc((size_t)B * L, sizeof *q->fin);
    q->fin_len = calloc((size_t)B, sizeof *q->fin_len);
    q->fdone = calloc((size_t)B, 1);
    q->rscore = calloc((size_t)B, sizeof *q->rscore);
    q->fscore = calloc((size_t)B, sizeof *q->fscore);
    q->kv = calloc((size_t)B, sizeof *q->kv);
    q->kv_next = calloc((size_t)B, sizeof *q->kv_next);
    q->src = calloc((size_t)B, sizeof *q->src);
    if (!q->run || !q->fin || !q->fin_len || !q->fdone || !q->rscore || !q->fscore || !q->kv || !q->kv_next ||
        !q->src)
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int b = 0; b < B; b++) {
        if (!(q->kv[b] = d->kv_new(d->user, L, err))) return -1;
        q->run[(size_t)b * L] = g->decoder_start_id;
        q->rscore[b] = b ? NEG_BIG : 0; /* the beams start as one */
        q->fscore[b] = NEG_BIG;
    }
    return 0;
}

/* Sorts by key, descending; equal keys keep their order (torch.topk on a
 * sorted candidate list). */
static void sort_cands(cand *c, int n)
{
    for (int i = 1; i < n; i++) {
        cand t = c[i];
        int j = i;
        while (j > 0 && (c[j - 1].adj < t.adj || (c[j - 1].adj == t.adj && c[j - 1].rank > t.rank))) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = t;
    }
}

/* The k best (score + beam's score) over beams x V, best first; ties to
 * the lower flat index.  lp: the beams' processed log-probabilities. */
static int top_k(const float *lp, const float *bscore, int beams, int V, int k, cand *out)
{
    int n = 0;
    for (int b = 0; b < beams; b++) {
        const float *x = lp + (size_t)b * V;
        for (int t = 0; t < V; t++) {
            float s = x[t] + bscore[b];
            /* analyzer: n == k >= 1 here: out[n - 1] was written
             * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
            if (n == k && !(s > out[n - 1].score)) continue;
            int j = n < k ? n++ : n - 1;
            while (j > 0 && out[j - 1].score < s) {
                out[j] = out[j - 1];
                j--;
            }
            out[j] = (cand){s, b, t, 0, 0};
        }
    }
    for (int i = 0; i < n; i++) out[i].rank = i;
    return n;
}

/* Hands each new beam the cache of its source: the first beam drawn from
 * an old beam takes its cache, the others copy it into a cache no new beam
 * took. */
static int reorder_kv(search *q, const at_nmt_decoder *d, at_err *err)
{
    int B = q->B;
    unsigned char owned[AT_NMT_MAX_BEAMS] = {0}, is_owner[AT_NMT_MAX_BEAMS] = {0};
    for (int j = 0; j < B; j++) {
        q->kv_next[j] = NULL;
        if (!owned[q->src[j]]) {
            owned[q->src[j]] = 1;
            is_owner[j] = 1;
            q->kv_next[j] = q->kv[q->src[j]];
        }
    }
    for (int j = 0, spare = 0; j < B; j++) {
        if (is_owner[j]) continue;
        while (owned[spare]) spare++;
        owned[spare] = 1;
        q->kv_next[j] = q->kv[spare];
        if (d->kv_copy(d->user, q->kv_next[j], q->kv[q->src[j]], err)) return -1;
    }
    memcpy(q->kv, q->kv_next, (size_t)B * sizeof *q->kv);
    return 0;
}

/* One beam-search step for a sentence at length len: lp holds the
 * processed log-probabilities of `beams` beams (1 on the first step, where
 * every beam is the start token). */
static int beam_step(search *q, const at_nmt_decoder *d, const at_nmt_gen *g, const float *lp, int beams,
                     int len, at_err *err)
{
    int B = q->B, L = g->max_length, V = d->vocab;
    int k = (g->n_eos + 1 > 2 ? g->n_eos + 1 : 2) * B;
    cand c[(AT_NMT_MAX_EOS + 1) * AT_NMT_MAX_BEAMS];
    int nc;
    if (beams == 1 && B > 1) {
        /* transformers runs every beam on the first step; all but the
         * first carry NEG_BIG, so their continuations rank after the
         * first beam's in the same token order */
        float sc = 0;
        nc = top_k(lp, &sc, 1, V, k, c);
        for (int b = 1; b < B && nc < k; b++) {
            cand more[(AT_NMT_MAX_EOS + 1) * AT_NMT_MAX_BEAMS];
            int nm = top_k(lp, &q->rscore[b], 1, V, k - nc, more);
            for (int i = 0; i < nm && nc < k; i++) {
                if (!(more[i].score > -INFINITY)) break;
                more[i].beam = b;
                c[nc++] = more[i];
            }
        }
        for (int i = 0; i < nc; i++) c[i].rank = i;
    } else {
        nc = top_k(lp, q->rscore, B, V, k, c);
    }
    unsigned char hit[(AT_NMT_MAX_EOS + 1) * AT_NMT_MAX_BEAMS];
    int all_hit = 1;
    for (int i = 0; i < nc; i++) {
        hit[i] = is_eos(g, c[i].token) || len + 1 >= q->L;
        all_hit &= hit[i];
    }

    /* finished: the top B that stopped, length-normalised, against the
     * finished slots (kept first on ties) */
    int all_done = 1;
    for (int b = 0; b < B; b++) all_done &= q->fdone[b];
    float norm = (float)pow((double)len, g->length_penalty); /* generated tokens: len + 1 - 1 */
    cand f[AT_NMT_MAX_BEAMS + (AT_NMT_MAX_EOS + 1) * AT_NMT_MAX_BEAMS];
    int nf = 0;
    for (int b = 0; b < B; b++, nf++) f[nf] = (cand){q->fscore[b], b, -1, nf, q->fscore[b]};
    for (int i = 0; i < nc; i++) {
        float s = c[i].score / norm;
        if (all_done && g->early_stopping == AT_NMT_STOP_EARLY) s += NEG_BIG;
        if (!q->unsat) s += NEG_BIG;
        if (!(hit[i] && c[i].rank < B)) s += NEG_BIG;
        f[nf] = (cand){s, i, -2, nf, s};
        nf++;
    }
    sort_cands(f, nf);
    int *nfin = malloc((size_t)B * L * sizeof *nfin);
    if (!nfin) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int nlen[AT_NMT_MAX_BEAMS];
    unsigned char ndone[AT_NMT_MAX_BEAMS];
    float nscore[AT_NMT_MAX_BEAMS];
    for (int j = 0; j < B; j++) {
        int *dst = nfin + (size_t)j * L;
        nscore[j] = f[j].score;
        if (f[j].token == -1) {
            int b = f[j].beam;
            memcpy(dst, q->fin + (size_t)b * L, (size_t)q->fin_len[b] * sizeof *dst);
            nlen[j] = q->fin_len[b];
            ndone[j] = q->fdone[b];
        } else {
            const cand *x = &c[f[j].beam];
            memcpy(dst, q->run + (size_t)x->beam * L, (size_t)len * sizeof *dst);
            dst[len] = x->token;
            nlen[j] = len + 1;
            ndone[j] = hit[f[j].beam] && x->rank < B;
        }
    }
    memcpy(q->fin, nfin, (size_t)B * L * sizeof *nfin);
    memcpy(q->fin_len, nlen, (size_t)B * sizeof *nlen);
    memcpy(q->fdone, ndone, (size_t)B);
    memcpy(q->fscore, nscore, (size_t)B * sizeof *nscore);

    /* running: the best B that did not stop */
    for (int i = 0; i < nc; i++) c[i].adj = c[i].score + (hit[i] ? NEG_BIG : 0.0f);
    sort_cands(c, nc);
    int *nrun = nfin; /* reused: B x L */
    for (int j = 0; j < B; j++) {
        const cand *x = &c[j < nc ? j : nc - 1];
        int *dst = nrun + (size_t)j * L;
        /* analyzer: nc >= 1: the caller checked V >= k >= 1
         * NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
        memcpy(dst, q->run + (size_t)x->beam * L, (size_t)len * sizeof *dst);
        dst[len] = x->token;
        q->rscore[j] = x->adj;
        q->src[j] = beams == 1 ? 0 : x->beam; /* the first step's beams share one cache */
    }
    memcpy(q->run, nrun, (size_t)B * L * sizeof *nrun);
    free(nfin);
    if (!all_hit && reorder_kv(q, d, err)) return -1;

    /* transformers' _check_early_stop_heuristic and stopping condition,
     * at the new length */
    len++;
    int best_len = g->early_stopping == AT_NMT_STOP_NEVER && g->length_penalty > 0 ? q->L - 1 : len - 1;
    float best = q->rscore[0] / (float)pow((double)best_len, g->length_penalty);
    float worst = q->fscore[0];
    all_done = 1;
    for (int b = 0; b < B; b++) {
        worst = q->fscore[b] < worst ? q->fscore[b] : worst;
        all_done &= q->fdone[b];
    }
    int improvable = 0;
    for (int b = 0; b < B; b++) improvable |= best > (q->fdone[b] ? worst : NEG_BIG);
    q->unsat = q->unsat && improvable;
    q->active = q->unsat && !(all_done && g->early_stopping == AT_NMT_STOP_EARLY) && !all_hit;
    return 0;
}

static int finish(search *q, const at_nmt_gen *g, int len, at_err *err)
{
    at_nmt_job *job = q->job;
    const int *t = q->B == 1 ? q->run : q->fin;
    int n = q->B == 1 ? len : q->fin_len[0];
    if (!(job->tokens = malloc((size_t)(n > 0 ? n : 1) * sizeof *job->tokens)))
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    memcpy(job->tokens, t, (size_t)n * sizeof *t);
    job->n_tokens = n;
    job->score = q->B == 1 ? 0 : q->fscore[0];
    (void)g;
    return 0;
}

static int model_decode(void *user, const at_nmt_seq *seqs, int n, at_err *err)
{
    return at_nmt_decode(user, seqs, n, err);
}

static at_nmt_kv *model_kv_new(void *user, int n_ctx, at_err *err)
{
    return at_nmt_kv_new_ctx(at_nmt_state_model(user), n_ctx, err);
}

static void model_kv_free(void *user, at_nmt_kv *kv)
{
    (void)user;
    at_nmt_kv_free(kv);
}

static int model_kv_copy(void *user, at_nmt_kv *dst, const at_nmt_kv *src, at_err *err)
{
    (void)user;
    return at_nmt_kv_copy(dst, src, err);
}

int at_nmt_generate(at_nmt_state *s, const at_nmt_gen *g, at_nmt_job *jobs, int n, at_err *err)
{
    const at_nmt_hparams *hp = at_nmt_model_hparams(at_nmt_state_model(s));
    at_nmt_decoder d = {
        s, hp->dec_vocab, hp->max_pos, model_decode, model_kv_new, model_kv_free, model_kv_copy};
    return at_nmt_generate_on(&d, g, jobs, n, err);
}

int at_nmt_generate_on(const at_nmt_decoder *d, const at_nmt_gen *g, at_nmt_job *jobs, int n, at_err *err)
{
    int V = d->vocab, B = g->num_beams, L = g->max_length, rc = -1;
    if (n < 1 || !jobs) return at_err_set(err, AT_E_INVALID, "no sentences to translate");
    if (B < 1 || B > AT_NMT_MAX_BEAMS)
        return at_err_set(err, AT_E_INVALID, "num_beams %d outside 1..%d", B, AT_NMT_MAX_BEAMS);
    if (L < 2 || L > d->max_pos)
        return at_err_set(err, AT_E_INVALID, "max_length %d outside 2..%d", L, d->max_pos);
    if (B > 1 && (size_t)V < (size_t)(g->n_eos + 1 > 2 ? g->n_eos + 1 : 2) * B)
        return at_err_set(err, AT_E_INVALID, "a vocabulary of %d is too small for %d beams", V, B);
    /* forced tokens are written into the logits: a tokenizer's language id
     * beyond the decoder's vocabulary (a mismatched model folder) is refused */
    if (g->forced_bos_id >= V || g->forced_eos_id >= V)
        return at_err_set(err, AT_E_INVALID, "forced token %d outside the decoder's vocabulary of %d",
                          g->forced_bos_id >= V ? g->forced_bos_id : g->forced_eos_id, V);
    for (int i = 0; i < n; i++)
        if (jobs[i].forced_bos_id >= V)
            return at_err_set(err, AT_E_INVALID,
                              "forced first token %d (the target language's) outside the decoder's "
                              "vocabulary of %d",
                              jobs[i].forced_bos_id, V);
    search *q = calloc((size_t)n, sizeof *q);
    at_nmt_seq *seqs = calloc((size_t)n * B, sizeof *seqs);
    int *owner = calloc((size_t)n * B, sizeof *owner);
    float *logits = malloc((size_t)n * B * V * sizeof *logits);
    if (!q || !seqs || !owner || !logits) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        jobs[i].tokens = NULL;
        jobs[i].n_tokens = 0;
        if (!jobs[i].mem) {
            at_err_set(err, AT_E_INVALID, "sentence %d: no encoding", i);
            goto out;
        }
        if (search_init(&q[i], d, g, &jobs[i], err)) goto out;
    }
    for (int len = 1;; len++) {
        int ns = 0;
        for (int i = 0; i < n; i++) {
            if (!q[i].active) continue;
            int beams = len == 1 ? 1 : B;
            for (int b = 0; b < beams; b++) {
                seqs[ns] = (at_nmt_seq){
                    q[i].kv[b], &q[i].run[(size_t)b * L + len - 1], 1, jobs[i].mem, logits + (size_t)ns * V,
                    0};
                owner[ns++] = i;
            }
        }
        if (!ns) break;
        if (d->decode(d->user, seqs, ns, err)) goto out;
        for (int k = 0; k < ns;) {
            search *x = &q[owner[k]];
            int beams = len == 1 ? 1 : B;
            for (int b = 0; b < beams; b++) {
                float *lp = logits + (size_t)(k + b) * V;
                const int *seq = &x->run[(size_t)b * L];
                if (B > 1) at_log_softmax(lp, V);
                process(g, x->forced_bos, x->L, seq, len, lp, V);
                if (g->renormalize) at_log_softmax(lp, V);
            }
            if (B == 1) {
                int best = at_argmax(logits + (size_t)k * V, V);
                x->run[len] = best;
                if (is_eos(g, best) || len + 1 >= x->L) {
                    x->active = 0;
                    if (finish(x, g, len + 1, err)) goto out;
                }
            } else {
                if (beam_step(x, d, g, logits + (size_t)k * V, beams, len, err)) goto out;
                if (!x->active && finish(x, g, len + 1, err)) goto out;
            }
            k += beams;
        }
    }
    rc = 0;
out:
    if (q)
        for (int i = 0; i < n; i++) {
            search_free(&q[i], d);
            if (rc) {
                free(jobs[i].tokens);
                jobs[i].tokens = NULL;
                jobs[i].n_tokens = 0;
            }
        }
    free(q);
    free(seqs);
    free(owner);
    free(logits);
    return rc;
}
