/* decode.c - Whisper decoding policy (see decode.h).  Follows OpenAI's
 * whisper/decoding.py and whisper/transcribe.py step by step; the
 * comments name the Python piece each part mirrors. */
#include "engines/asr/whisper/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "compute/kernels.h"
#include "engines/asr/whisper/timing.h"

#define WDEC_MAX_GROUP 64 /* beams or samples: bounds the per-step work */
#define N_FRAMES       AT_WHISPER_N_FRAMES
#define HOP            AT_WHISPER_HOP
#define SR             AT_WHISPER_SAMPLE_RATE

static const float default_temps[] = {0.0f, 0.2f, 0.4f, 0.6f, 0.8f, 1.0f};

void at_wdec_options_default(at_wdec_options *o)
{
    memset(o, 0, sizeof *o);
    o->lang_token = -1;
    o->length_penalty = -1.0f;
    o->suppress_non_speech = 1;
    o->suppress_blank = 1;
    o->max_initial_timestamp = 1.0f;
    o->seed = 0x5eed5eedull;
}

void at_wdec_fallback_default(at_wdec_fallback *f)
{
    f->temperatures = NULL;
    f->n_temperatures = 0;
    f->compression_ratio_threshold = 2.4f;
    f->logprob_threshold = -1.0f;
    f->no_speech_threshold = 0.6f;
}

void at_wdec_tx_options_default(at_wdec_tx_options *o)
{
    memset(o, 0, sizeof *o);
    at_wdec_options_default(&o->decode);
    at_wdec_fallback_default(&o->fallback);
    o->condition_on_previous_text = 1;
}

void at_wdec_result_free(at_wdec_result *r)
{
    if (!r) return;
    free(r->tokens);
    free(r->logprobs);
    free(r->text);
    memset(r, 0, sizeof *r);
}

float at_wdec_compression_ratio(const char *text, size_t len)
{
    if (len == 0) return 0.0f;
    uLongf bound = compressBound((uLong)len);
    unsigned char *buf = malloc(bound);
    if (!buf) return 0.0f;
    /* zlib.compress(text) in Python: zlib format, default level */
    int rc = compress2(buf, &bound, (const Bytef *)text, (uLong)len, Z_DEFAULT_COMPRESSION);
    free(buf);
    if (rc != Z_OK || bound == 0) return 0.0f;
    return (float)((double)len / (double)bound);
}

/* ---- small helpers ------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double log_sum_exp(const float *x, int a, int b) { return at_log_sum_exp(x + a, b - a); }

static void mask(float *x, int a, int b)
{
    for (int i = a < 0 ? 0 : a; i < b; i++) x[i] = -INFINITY;
}

/* Python's str.strip() for UTF-8 text: whitespace at both ends. */
static int utf8_space_len(const unsigned char *s, size_t n)
{
    if (n >= 1 && ((s[0] >= 0x09 && s[0] <= 0x0D) || (s[0] >= 0x1C && s[0] <= 0x20))) return 1;
    if (n >= 2 && s[0] == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (n >= 3 && s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3; /* U+1680 */
    if (n >= 3 && s[0] == 0xE2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;
    if (n >= 3 && s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3; /* U+205F */
    if (n >= 3 && s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3; /* U+3000 */
    return 0;
}

static void strip_in_place(char *s)
{
    size_t n = strlen(s), a = 0;
    int l;
    while (a < n && (l = utf8_space_len((const unsigned char *)s + a, n - a)) > 0) a += (size_t)l;
    size_t e = n;
    while (e > a) {
        /* find the start of the last character */
        size_t k = e - 1;
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        if (utf8_space_len((const unsigned char *)s + k, e - k) != (int)(e - k)) break;
        e = k;
    }
    memmove(s, s + a, e - a);
    s[e - a] = '\0';
}

/* ---- one window: DecodingTask ------------------------------------------ */

typedef struct {
    int *toks; /* sampled tokens (after the initial tokens) */
    float *lps;
    int n;
    double sum; /* includes the eot's log probability once finished */
    int done;   /* ended with eot */
} hyp;

typedef struct {
    const at_wdec_model *m;
    const at_wtok *tok;
    const at_whisper_special *sp;
    const at_wdec_options *o;
    int V, n_ctx, sample_len, sample_begin, sot_index;
    int *initial; /* initial tokens: every sequence of the group starts with them */
    int *suppress;
    size_t n_suppress;
    int *blank;
    size_t n_blank;
    int max_initial_index; /* -1: none */
    uint64_t rng;
    float *logits0; /* step 0 logits, shared by the group */
    float *blog;    /* G x V: a step's logits of every member of the group */
    int *bfull;     /* G x (sample_begin + sample_len + 1): their token sequences */
    int bstride;
} dtask;

/* SuppressBlank, SuppressTokens, ApplyTimestampRules (in that order). */
static void apply_filters(const dtask *c, const int *s, int n, float *x)
{
    const at_whisper_special *sp = c->sp;
    int V = c->V, beg = sp->beg;
    if (c->o->suppress_blank && n == 0) {
        for (size_t i = 0; i < c->n_blank; i++)
            if (c->blank[i] >= 0 && c->blank[i] < V) x[c->blank[i]] = -INFINITY;
        if (sp->eot < V) x[sp->eot] = -INFINITY;
    }
    for (size_t i = 0; i < c->n_suppress; i++)
        if (c->suppress[i] >= 0 && c->suppress[i] < V) x[c->suppress[i]] = -INFINITY;
    if (c->o->without_timestamps || beg >= V) return;

    if (sp->not_ < V) x[sp->not_] = -INFINITY;
    /* timestamps come in pairs, except directly before eot */
    int last_ts = n >= 1 && s[n - 1] >= beg;
    int pen_ts = n < 2 || s[n - 2] >= beg;
    if (last_ts) {
        if (pen_ts)
            mask(x, beg, V); /* has to be text */
        else
            mask(x, 0, sp->eot); /* cannot be text */
    }
    /* timestamps never decrease; a segment has nonzero length */
    for (int i = n - 1; i >= 0; i--) {
        if (s[i] < beg) continue;
        int limit = (last_ts && !pen_ts) ? s[i] : s[i] + 1;
        mask(x, beg, limit < V ? limit : V);
        break;
    }
    if (n == 0) {
        mask(x, 0, beg); /* start with a timestamp */
        if (c->max_initial_index >= 0) mask(x, beg + c->max_initial_index + 1, V);
    }
    /* if the timestamps together are likelier than any text token, force
     * a timestamp (comparing logsumexp with max is the same as comparing
     * their log-softmax values) */
    double ts = log_sum_exp(x, beg, V);
    float mt = -INFINITY;
    for (int i = 0; i < beg; i++)
        if (x[i] > mt) mt = x[i];
    if (ts != -INFINITY && ts > (double)mt) mask(x, 0, beg);
}

static int hyp_alloc(hyp *h, int cap)
{
    memset(h, 0, sizeof *h);
    h->toks = malloc((size_t)cap * sizeof *h->toks);
    h->lps = malloc((size_t)cap * sizeof *h->lps);
    return h->toks && h->lps ? 0 : -1;
}

static void hyp_free(hyp *h)
{
    free(h->toks);
    free(h->lps);
    h->toks = NULL;
    h->lps = NULL;
}

static void hyp_copy(hyp *d, const hyp *s)
{
    memcpy(d->toks, s->toks, (size_t)s->n * sizeof *s->toks);
    memcpy(d->lps, s->lps, (size_t)s->n * sizeof *s->lps);
    d->n = s->n;
    d->sum = s->sum;
    d->done = s->done;
}

/* The logits of n group members (model sequences seqs[i], hypotheses
 * hs[i]) into c->blog + i * V: one batch when the model can. */
static int group_logits(dtask *c, int n, const int *seqs, hyp *const *hs, at_err *err)
{
    const int *toks[WDEC_MAX_GROUP];
    int lens[WDEC_MAX_GROUP];
    float *outs[WDEC_MAX_GROUP];
    for (int i = 0; i < n; i++) {
        int *f = c->bfull + (size_t)i * c->bstride;
        memcpy(f, c->initial, (size_t)c->sample_begin * sizeof *f);
        memcpy(f + c->sample_begin, hs[i]->toks, (size_t)hs[i]->n * sizeof *f);
        toks[i] = f;
        lens[i] = c->sample_begin + hs[i]->n;
        outs[i] = c->blog + (size_t)i * c->V;
    }
    if (c->m->logits_batch) return c->m->logits_batch(c->m->ctx, n, seqs, toks, lens, outs, err);
    for (int i = 0; i < n; i++) {
        int rc = c->m->logits(c->m->ctx, seqs[i], toks[i], lens[i], outs[i], err);
        if (rc < 0) return rc;
    }
    return 0;
}

/* length-normalised score (MaximumLikelihoodRanker) */
static double rank_score(const dtask *c, const hyp *h)
{
    double len = h->n > 0 ? h->n : 1; /* Python would divide by zero */
    if (c->o->length_penalty < 0) return h->sum / len;
    return h->sum / pow((5.0 + h->n) / 6.0, c->o->length_penalty);
}

/* round(beam_size * patience) (Python rounds half to even, as rint does),
 * bounded so a huge patience cannot make the candidate list huge */
static int beam_max_candidates(const at_wdec_options *o)
{
    double patience = o->patience > 0 ? o->patience : 1.0;
    double m = nearbyint(o->beam_size * patience);
    if (m < 1) m = 1;
    if (m > 4 * WDEC_MAX_GROUP) m = 4 * WDEC_MAX_GROUP;
    return (int)m;
}

typedef struct {
    int src, token;
    float lp;
    double score;
} cand;

/* beam search (BeamSearchDecoder); returns the index into fin of the best */
static int beam_search(dtask *c, int B, hyp *beams, hyp *nb, hyp *fin, int *n_fin, int *slot, at_err *err)
{
    const at_wdec_options *o = c->o;
    int eot = c->sp->eot, V = c->V;
    int max_cand = beam_max_candidates(o);
    int k = B + 1 < V ? B + 1 : V;
    cand *cs = malloc((size_t)B * (size_t)k * sizeof *cs);
    int *top = malloc((size_t)k * sizeof *top);
    int *used = malloc((size_t)B * sizeof *used), *nslot = malloc((size_t)B * sizeof *nslot);
    int *taken = malloc((size_t)B * sizeof *taken);
    int rc = 0, live = 1; /* at step 0 all beams are the same sequence */
    if (!cs || !top || !used || !nslot || !taken) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    for (int step = 0; step < c->sample_len; step++) {
        int nc = 0;
        if (step > 0) {
            hyp *hp[WDEC_MAX_GROUP];
            for (int j = 0; j < live; j++) hp[j] = &beams[j];
            if ((rc = group_logits(c, live, slot, hp, err)) < 0) goto out;
        }
        /* at step 0 Python's dict of candidate sequences folds the
         * identical beams into one */
        for (int j = 0; j < live; j++) {
            float *x = c->blog + (size_t)j * V;
            if (step == 0) memcpy(x, c->logits0, (size_t)V * sizeof *x);
            apply_filters(c, beams[j].toks, beams[j].n, x);
            double lse = log_sum_exp(x, 0, V);
            /* top k, ties to the lower id */
            int nt = 0;
            for (int v = 0; v < V; v++) {
                if (nt == k && !(x[v] > x[top[k - 1]])) continue;
                int p = nt < k ? nt++ : k - 1;
                /* analyzer: top[0..nt-1] are written before they are read: nt grows only while below k >= 1
                 * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.ArraySubscript) */
                while (p > 0 && x[v] > x[top[p - 1]]) {
                    top[p] = top[p - 1];
                    p--;
                }
                top[p] = v;
            }
            for (int i = 0; i < nt; i++) {
                float lp = (float)((double)x[top[i]] - lse);
                cs[nc++] = (cand){j, top[i], lp, beams[j].sum + lp};
            }
        }
        /* stable sort, best first (Python's sorted(..., reverse=True)) */
        for (int i = 1; i < nc; i++) {
            cand t = cs[i];
            int p = i;
            while (p > 0 && cs[p - 1].score < t.score) {
                cs[p] = cs[p - 1];
                p--;
            }
            cs[p] = t;
        }
        int saved = 0;
        for (int i = 0; i < nc && saved < B; i++) {
            const hyp *src = &beams[cs[i].src];
            if (cs[i].token == eot) {
                if (*n_fin < max_cand) { /* newly finished, best first */
                    hyp_copy(&fin[*n_fin], src);
                    fin[*n_fin].sum = cs[i].score;
                    fin[*n_fin].done = 1;
                    (*n_fin)++;
                }
                continue;
            }
            hyp_copy(&nb[saved], src);
            nb[saved].toks[nb[saved].n] = cs[i].token;
            nb[saved].lps[nb[saved].n] = cs[i].lp;
            nb[saved].n++;
            nb[saved].sum = cs[i].score;
            used[saved] = cs[i].src;
            saved++;
        }
        /* rearrange the caches: the first new beam from each source keeps
         * its slot, the others take the slots nobody continues and copy */
        for (int j = 0; j < B; j++) taken[j] = 0;
        for (int j = 0; j < saved; j++) nslot[j] = -1;
        for (int j = 0; j < saved; j++)
            /* analyzer: used[j] < live <= B, and taken[0..B-1] were cleared above
             * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Branch) */
            if (!taken[used[j]]) {
                taken[used[j]] = 1;
                nslot[j] = slot[used[j]];
            }
        int f = 0;
        for (int j = 0; j < saved && rc == 0; j++) {
            if (nslot[j] >= 0) continue;
            /* analyzer: fewer sources than slots: f stays below B
             * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Branch) */
            while (taken[f]) f++;
            taken[f] = 1;
            nslot[j] = slot[f];
            if (c->m->copy) rc = c->m->copy(c->m->ctx, nslot[j], slot[used[j]], err);
        }
        if (rc < 0) goto out;
        for (int j = 0; j < saved; j++) {
            hyp t = beams[j];
            beams[j] = nb[j];
            nb[j] = t;
            slot[j] = nslot[j];
        }
        live = saved;
        if (*n_fin >= max_cand || c->sample_begin + step + 1 > c->n_ctx) break;
    }
    /* finalize: not enough finished -> add the live beams, best first */
    if (*n_fin < B) {
        int *ord = used; /* reuse */
        for (int j = 0; j < live; j++) ord[j] = j;
        for (int i = 1; i < live; i++) {
            int t = ord[i], p = i;
            while (p > 0 && beams[ord[p - 1]].sum < beams[t].sum) {
                ord[p] = ord[p - 1];
                p--;
            }
            ord[p] = t;
        }
        for (int j = 0; j < live && *n_fin < B; j++) hyp_copy(&fin[(*n_fin)++], &beams[ord[j]]);
    }
    int best = 0;
    for (int i = 1; i < *n_fin; i++)
        if (rank_score(c, &fin[i]) > rank_score(c, &fin[best])) best = i;
    rc = best;
out:
    free(cs);
    free(top);
    free(used);
    free(nslot);
    free(taken);
    return rc;
}

/* greedy / sampling with best_of (GreedyDecoder) */
static int sample_group(dtask *c, int G, float temp, hyp *hs, at_err *err)
{
    int V = c->V, eot = c->sp->eot;
    for (int step = 0; step < c->sample_len; step++) {
        int all_done = 1, n_live = 0, live[WDEC_MAX_GROUP], row[WDEC_MAX_GROUP];
        hyp *hp[WDEC_MAX_GROUP];
        for (int g = 0; g < G; g++)
            if (!hs[g].done) {
                row[g] = n_live;
                live[n_live] = g;
                hp[n_live++] = &hs[g];
            }
        if (step > 0 && n_live > 0) {
            int rc = group_logits(c, n_live, live, hp, err);
            if (rc < 0) return rc;
        }
        for (int g = 0; g < G; g++) {
            hyp *h = &hs[g];
            if (h->done) continue;
            float *x = c->blog + (size_t)row[g] * V;
            if (step == 0) {
                memcpy(x, c->logits0, (size_t)V * sizeof *x);
                if (g > 0 && c->m->copy) {
                    int rc = c->m->copy(c->m->ctx, g, 0, err);
                    if (rc < 0) return rc;
                }
            }
            apply_filters(c, h->toks, h->n, x);
            double lse = log_sum_exp(x, 0, V);
            int next = eot;
            if (temp <= 0) {
                float best = -INFINITY;
                for (int v = 0; v < V; v++)
                    if (x[v] > best) {
                        best = x[v];
                        next = v;
                    }
            } else if (lse != -INFINITY) {
                /* Categorical(logits / T) */
                float mx = -INFINITY;
                for (int v = 0; v < V; v++)
                    if (x[v] > mx) mx = x[v];
                double tot = 0;
                for (int v = 0; v < V; v++) tot += exp(((double)x[v] - mx) / temp);
                double u = (double)(rng_next(&c->rng) >> 11) * 0x1.0p-53 * tot, acc = 0;
                next = -1;
                for (int v = 0; v < V; v++) {
                    if (x[v] == -INFINITY) continue;
                    acc += exp(((double)x[v] - mx) / temp);
                    next = v;
                    if (acc > u) break;
                }
                if (next < 0) next = eot;
            }
            float lp = lse == -INFINITY ? -INFINITY : (float)((double)x[next] - lse);
            h->sum += lp;
            if (next == eot) {
                h->done = 1;
            } else {
                h->toks[h->n] = next;
                h->lps[h->n] = lp;
                h->n++;
            }
            if (!h->done) all_done = 0;
        }
        if (all_done || c->sample_begin + step + 1 > c->n_ctx) break;
    }
    int best = 0;
    for (int g = 1; g < G; g++)
        if (rank_score(c, &hs[g]) > rank_score(c, &hs[best])) best = g;
    return best;
}

int at_wdec_detect_language(const at_wdec_model *m, const at_wtok *tok, int *lang_token, float *probs,
                            at_err *err)
{
    const at_whisper_special *sp = at_wtok_special(tok);
    if (sp->n_langs <= 0 || sp->sot + sp->n_langs >= m->n_vocab)
        return at_err_set(err, AT_E_UNSUPPORTED, "whisper: model has no language tokens");
    float *x = malloc((size_t)m->n_vocab * sizeof *x);
    if (!x) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int sot = sp->sot;
    int rc = m->logits(m->ctx, 0, &sot, 1, x, err);
    if (rc < 0) {
        free(x);
        return rc;
    }
    /* only language tokens compete */
    int a = sp->sot + 1, b = sp->sot + 1 + sp->n_langs, best = a;
    for (int v = a; v < b; v++)
        if (x[v] > x[best]) best = v;
    if (probs) {
        double lse = log_sum_exp(x, a, b);
        for (int v = a; v < b; v++) probs[v - a] = (float)exp((double)x[v] - lse);
    }
    free(x);
    *lang_token = best;
    return 0;
}

static int build_suppress(dtask *c, at_err *err)
{
    const at_wdec_options *o = c->o;
    const at_whisper_special *sp = c->sp;
    int *ns = NULL;
    size_t nns = 0;
    if (o->suppress_non_speech) {
        int rc = at_wtok_non_speech_tokens(c->tok, &ns, &nns, err);
        if (rc < 0) return rc;
    }
    size_t cap = nns + (size_t)(o->n_suppress > 0 ? o->n_suppress : 0) + 6 + (size_t)sp->n_langs;
    c->suppress = malloc(cap * sizeof *c->suppress);
    if (!c->suppress) {
        free(ns);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < nns; i++) c->suppress[n++] = ns[i];
    free(ns);
    for (int i = 0; i < o->n_suppress; i++) c->suppress[n++] = o->suppress[i];
    c->suppress[n++] = sp->transcribe;
    c->suppress[n++] = sp->translate;
    c->suppress[n++] = sp->sot;
    c->suppress[n++] = sp->prev;
    c->suppress[n++] = sp->solm;
    c->suppress[n++] = sp->nosp; /* no_speech_prob is read separately */
    /* Language tokens are never valid text (OpenAI leaves them open). */
    for (int i = 0; i < sp->n_langs; i++) c->suppress[n++] = sp->sot + 1 + i;
    c->n_suppress = n;
    return 0;
}

int at_wdec_decode(const at_wdec_model *m, const at_wtok *tok, const at_wdec_options *o, at_wdec_result *out,
                   at_err *err)
{
    memset(out, 0, sizeof *out);
    const at_whisper_special *sp = at_wtok_special(tok);
    dtask c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.tok = tok;
    c.sp = sp;
    c.o = o;
    c.V = m->n_vocab;
    c.n_ctx = m->n_text_ctx;
    c.rng = o->seed ^ ((uint64_t)(o->temperature * 1000.0f) << 32);
    if (c.V <= sp->eot || c.n_ctx < 8 || m->n_audio_ctx <= 0)
        return at_err_set(err, AT_E_INVALID, "whisper decode: bad model sizes");
    c.sample_len = o->sample_len > 0 ? o->sample_len : c.n_ctx / 2;
    if (c.sample_len > c.n_ctx) c.sample_len = c.n_ctx;
    int beam = o->temperature == 0 && o->beam_size > 1;
    int G = beam ? o->beam_size : (o->temperature > 0 && o->best_of > 1 ? o->best_of : 1);
    if (G > WDEC_MAX_GROUP)
        return at_err_set(err, AT_E_INVALID, "whisper decode: beam_size/best_of over %d", WDEC_MAX_GROUP);

    int lang = o->lang_token, rc = 0;
    if (!sp->is_multilingual) {
        lang = sp->sot + 1; /* English-only model: "en", not in the sequence */
    } else if (lang < 0) {
        if ((rc = at_wdec_detect_language(m, tok, &lang, NULL, err)) < 0) return rc;
    } else if (lang <= sp->sot || lang > sp->sot + sp->n_langs) {
        return at_err_set(err, AT_E_INVALID, "whisper decode: bad language token %d", lang);
    }

    /* _get_initial_tokens: [prev + prompt[-(n_ctx/2-1):]] + sot sequence + prefix */
    int n_prompt = o->n_prompt > 0 ? o->n_prompt : 0;
    if (n_prompt > c.n_ctx / 2 - 1) n_prompt = c.n_ctx / 2 - 1;
    int n_prefix = o->n_prefix > 0 ? o->n_prefix : 0;
    int max_prefix = c.n_ctx / 2 - c.sample_len;
    if (max_prefix > 0 && n_prefix > max_prefix) n_prefix = max_prefix;
    size_t cap = (size_t)n_prompt + 1 + 4 + (size_t)n_prefix + (size_t)c.sample_len + 2;
    c.initial = malloc(cap * sizeof *c.initial);
    c.logits0 = malloc((size_t)c.V * sizeof *c.logits0);
    c.bstride = (int)cap;
    c.blog = malloc((size_t)G * (size_t)c.V * sizeof *c.blog);
    c.bfull = malloc((size_t)G * cap * sizeof *c.bfull);
    /* beams, next beams, then the finished candidates: up to
     * max(beam_size, round(beam_size * patience)) of them */
    int n_hyp = beam ? 2 * G + (beam_max_candidates(o) > G ? beam_max_candidates(o) : G) : G;
    hyp *hs = calloc((size_t)n_hyp, sizeof *hs);
    int *slot = malloc((size_t)G * sizeof *slot);
    int ok = c.initial && c.logits0 && c.blog && c.bfull && hs && slot;
    for (int i = 0; ok && i < n_hyp; i++) ok = hyp_alloc(&hs[i], c.sample_len + 1) == 0;
    if (!ok) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto done;
    }
    int n = 0;
    if (n_prompt > 0) {
        c.initial[n++] = sp->prev;
        memcpy(c.initial + n, o->prompt + (o->n_prompt - n_prompt), (size_t)n_prompt * sizeof *c.initial);
        n += n_prompt;
    }
    c.sot_index = n;
    c.initial[n++] = sp->sot;
    if (sp->is_multilingual) {
        c.initial[n++] = lang;
        c.initial[n++] = o->translate ? sp->translate : sp->transcribe;
    }
    if (o->without_timestamps) c.initial[n++] = sp->not_;
    if (n_prefix > 0) {
        memcpy(c.initial + n, o->prefix + (o->n_prefix - n_prefix), (size_t)n_prefix * sizeof *c.initial);
        n += n_prefix;
    }
    c.sample_begin = n;
    if (n >= c.n_ctx) {
        rc = at_err_set(err, AT_E_INVALID, "whisper decode: prompt fills the context");
        goto done;
    }
    if (!o->without_timestamps && o->max_initial_timestamp > 0) {
        double precision = (double)AT_WHISPER_CHUNK_SECONDS / m->n_audio_ctx;
        c.max_initial_index = (int)nearbyint(o->max_initial_timestamp / precision);
    } else {
        c.max_initial_index = -1;
    }
    /* SuppressBlank bans tokenizer.encode(" ") and eot */
    size_t n_blank = 0;
    if ((rc = at_wtok_encode(tok, " ", 1, &c.blank, &n_blank, err)) < 0) {
        if (rc != AT_E_CORRUPT) goto done;
        c.blank = NULL; /* no space token in this vocabulary */
        n_blank = 0;
        rc = 0;
    }
    c.n_blank = n_blank;
    if ((rc = build_suppress(&c, err)) < 0) goto done;

    /* first forward pass: the logits at sot give no_speech_prob */
    if ((rc = m->logits(m->ctx, 0, c.initial, c.sot_index + 1, c.logits0, err)) < 0) goto done;
    out->no_speech_prob = 0;
    if (sp->nosp < c.V) {
        double lse = log_sum_exp(c.logits0, 0, c.V);
        out->no_speech_prob = (float)exp((double)c.logits0[sp->nosp] - lse);
    }
    if (c.sot_index + 1 < c.sample_begin &&
        (rc = m->logits(m->ctx, 0, c.initial, c.sample_begin, c.logits0, err)) < 0)
        goto done;

    for (int g = 0; g < G; g++) slot[g] = g;
    hyp *best;
    if (beam) {
        int n_fin = 0;
        rc = beam_search(&c, G, hs, hs + G, hs + 2 * G, &n_fin, slot, err);
        if (rc < 0) goto done;
        best = &hs[2 * G + rc];
    } else {
        rc = sample_group(&c, G, o->temperature, hs, err);
        if (rc < 0) goto done;
        best = &hs[rc];
    }
    rc = 0;

    out->tokens = malloc(((size_t)best->n + 1) * sizeof *out->tokens);
    out->logprobs = malloc(((size_t)best->n + 1) * sizeof *out->logprobs);
    if (!out->tokens || !out->logprobs) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto done;
    }
    memcpy(out->tokens, best->toks, (size_t)best->n * sizeof *best->toks);
    memcpy(out->logprobs, best->lps, (size_t)best->n * sizeof *best->lps);
    out->n_tokens = best->n;
    out->text = at_wtok_decode(tok, best->toks, (size_t)best->n, err);
    if (!out->text) {
        rc = err ? err->code : AT_E_NOMEM;
        goto done;
    }
    strip_in_place(out->text);
    out->lang_token = lang;
    out->sum_logprob = best->sum;
    out->avg_logprob = best->sum / (best->n + 1);
    out->temperature = o->temperature;
    out->compression_ratio = at_wdec_compression_ratio(out->text, strlen(out->text));
done:
    if (rc < 0) at_wdec_result_free(out);
    if (hs)
        for (int i = 0; i < n_hyp; i++) hyp_free(&hs[i]);
    free(hs);
    free(slot);
    free(c.initial);
    free(c.logits0);
    free(c.blog);
    free(c.bfull);
    free(c.suppress);
    free(c.blank);
    return rc < 0 ? rc : 0;
}

int at_wdec_decode_fallback(const at_wdec_model *m, const at_wtok *tok, const at_wdec_options *o,
                            const at_wdec_fallback *f, at_wdec_result *out, at_err *err)
{
    const float *temps = f->temperatures ? f->temperatures : default_temps;
    int nt = f->temperatures ? f->n_temperatures : (int)(sizeof default_temps / sizeof *default_temps);
    if (nt <= 0) return at_err_set(err, AT_E_INVALID, "whisper decode: no temperatures");
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nt; i++) {
        at_wdec_options oi = *o;
        oi.temperature = temps[i];
        at_wdec_result r;
        int rc = at_wdec_decode(m, tok, &oi, &r, err);
        if (rc < 0) {
            at_wdec_result_free(out);
            return rc;
        }
        at_wdec_result_free(out);
        *out = r;
        int fallback = 0;
        if (!isnan(f->compression_ratio_threshold) && r.compression_ratio > f->compression_ratio_threshold)
            fallback = 1; /* too repetitive */
        if (!isnan(f->logprob_threshold) && r.avg_logprob < f->logprob_threshold)
            fallback = 1; /* too improbable */
        if (!isnan(f->no_speech_threshold) && r.no_speech_prob > f->no_speech_threshold &&
            !isnan(f->logprob_threshold) && r.avg_logprob < f->logprob_threshold)
            fallback = 0; /* silence */
        if (!fallback) break;
    }
    return 0;
}

/* ---- long-form: transcribe.py ------------------------------------------ */

struct at_wdec_tx {
    const at_wdec_model *m;
    const at_wtok *tok;
    at_wdec_tx_options o;
    int *suppress_copy;
    float *temps_copy;
    int seek;
    int lang_token;
    int *ctx; /* all_tokens[prompt_reset_since:], last ctx_cap only */
    int n_ctx, ctx_cap;
    int enc_seek, enc_frames; /* window the model holds, -1: none */
    double last_speech;       /* end of the last word heard (word timestamps) */
};

at_wdec_tx *at_wdec_tx_new(const at_wdec_model *m, const at_wtok *tok, const at_wdec_tx_options *o,
                           at_err *err)
{
    at_wdec_tx *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->m = m;
    t->tok = tok;
    t->o = *o;
    t->o.decode.prompt = NULL;
    t->o.decode.n_prompt = 0;
    t->o.decode.prefix = NULL;
    t->o.decode.n_prefix = 0;
    t->o.initial_prompt = NULL;
    t->o.n_initial_prompt = 0;
    t->lang_token = o->decode.lang_token;
    t->enc_seek = -1;
    t->ctx_cap = m->n_text_ctx / 2 - 1; /* the decoder keeps no more */
    if (t->ctx_cap < 1) t->ctx_cap = 1;
    t->ctx = malloc((size_t)t->ctx_cap * sizeof *t->ctx);
    if (!t->ctx) goto nomem;
    if (o->decode.n_suppress > 0) {
        t->suppress_copy = malloc((size_t)o->decode.n_suppress * sizeof *t->suppress_copy);
        if (!t->suppress_copy) goto nomem;
        memcpy(t->suppress_copy, o->decode.suppress, (size_t)o->decode.n_suppress * sizeof *t->suppress_copy);
        t->o.decode.suppress = t->suppress_copy;
    }
    if (o->fallback.temperatures && o->fallback.n_temperatures > 0) {
        t->temps_copy = malloc((size_t)o->fallback.n_temperatures * sizeof *t->temps_copy);
        if (!t->temps_copy) goto nomem;
        memcpy(t->temps_copy, o->fallback.temperatures,
               (size_t)o->fallback.n_temperatures * sizeof *t->temps_copy);
        t->o.fallback.temperatures = t->temps_copy;
    }
    /* all_tokens starts with the initial prompt */
    int np = o->n_initial_prompt > 0 ? o->n_initial_prompt : 0;
    int skip = np > t->ctx_cap ? np - t->ctx_cap : 0;
    for (int i = skip; i < np; i++) t->ctx[t->n_ctx++] = o->initial_prompt[i];
    return t;
nomem:
    at_wdec_tx_free(t);
    at_err_set(err, AT_E_NOMEM, "out of memory");
    return NULL;
}

void at_wdec_tx_free(at_wdec_tx *t)
{
    if (!t) return;
    free(t->ctx);
    free(t->suppress_copy);
    free(t->temps_copy);
    free(t);
}

int at_wdec_tx_seek(const at_wdec_tx *t) { return t->seek; }
int at_wdec_tx_lang_token(const at_wdec_tx *t) { return t->lang_token; }

static void ctx_append(at_wdec_tx *t, const int *toks, int n)
{
    for (int i = 0; i < n; i++) {
        if (t->n_ctx == t->ctx_cap) {
            memmove(t->ctx, t->ctx + 1, (size_t)(t->ctx_cap - 1) * sizeof *t->ctx);
            t->n_ctx--;
        }
        t->ctx[t->n_ctx++] = toks[i];
    }
}

static int ensure_encoded(at_wdec_tx *t, int seek, int frames, at_err *err)
{
    if (t->enc_seek == seek && t->enc_frames == frames) return 0;
    if (!t->m->encode) return at_err_set(err, AT_E_INVALID, "whisper transcribe: model cannot encode");
    t->enc_seek = -1;
    int rc = t->m->encode(t->m->ctx, seek, frames, err);
    if (rc < 0) return rc;
    t->enc_seek = seek;
    t->enc_frames = frames;
    return 0;
}

/* A segment of the window being finished: tokens[a, b) of the result,
 * its times, and (with word timestamps) its words. */
typedef struct wseg {
    int a, b;
    double start, end;
    at_wdec_word *words;
    int n_words;
} wseg;

/* new_segment(): decodes the text of the segment's tokens and hands it
 * out, with the "instantaneous or empty" clearing applied. */
static int emit_segment(at_wdec_tx *t, const at_wdec_result *r, const wseg *g, at_err *err)
{
    const at_whisper_special *sp = at_wtok_special(t->tok);
    int a = g->a, b = g->b;
    int *text_toks = malloc(((size_t)(b - a) + 1) * sizeof *text_toks);
    if (!text_toks) return at_err_set(err, AT_E_NOMEM, "out of memory");
    int nt = 0;
    for (int i = a; i < b; i++)
        if (r->tokens[i] < sp->eot) text_toks[nt++] = r->tokens[i];
    char *text = at_wtok_decode(t->tok, text_toks, (size_t)nt, err);
    free(text_toks);
    if (!text) return err ? err->code : AT_E_NOMEM;
    char *stripped = strdup(text);
    if (!stripped) {
        free(text);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    strip_in_place(stripped);
    int cleared = g->start == g->end || stripped[0] == '\0';
    free(stripped);
    at_wdec_segment seg = {
        .seek = t->seek,
        .start = g->start,
        .end = g->end,
        .tokens = cleared ? NULL : r->tokens + a,
        .logprobs = cleared ? NULL : r->logprobs + a,
        .n_tokens = cleared ? 0 : b - a,
        .text = cleared ? "" : text,
        .avg_logprob = (float)r->avg_logprob,
        .no_speech_prob = r->no_speech_prob,
        .temperature = r->temperature,
        .compression_ratio = r->compression_ratio,
        .words = cleared ? NULL : g->words,
        .n_words = cleared ? 0 : g->n_words,
    };
    int stop = t->o.on_segment ? t->o.on_segment(t->o.user, &seg) : 0;
    free(text);
    if (!cleared) ctx_append(t, r->tokens + a, b - a);
    if (stop) return at_err_set(err, AT_E_CANCELLED, "whisper transcribe: cancelled");
    return 0;
}

/* ---- word timestamps: transcribe.py's add_word_timestamps ---- */

static double round2(double x) { return round(x * 100.0) / 100.0; }

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The words of a window's segments, owned until the window is emitted. */
typedef struct wwords {
    at_wtiming_word *w; /* the aligned words */
    int n;
    at_wdec_word *out; /* the non-empty ones, by segment */
} wwords;

static void wwords_free(wwords *ww)
{
    at_wtiming_words_free(ww->w, ww->n);
    free(ww->out);
    memset(ww, 0, sizeof *ww);
}

static int add_word_timestamps(at_wdec_tx *t, const at_wdec_result *r, wseg *segs, int n_segs,
                               double time_offset, int segment_size, wwords *ww, at_err *err)
{
    const at_whisper_special *sp = at_wtok_special(t->tok);
    memset(ww, 0, sizeof *ww);
    /* sot sequence + <|notimestamps|> + the segments' text + eot */
    int *seq = malloc(((size_t)r->n_tokens + 8) * sizeof *seq), *per = calloc((size_t)n_segs, sizeof *per);
    float *qk = NULL, *probs = NULL;
    int n = 0, sot_len, n_text = 0, rc = 0;
    if (!seq || !per) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    seq[n++] = sp->sot;
    if (sp->is_multilingual) {
        seq[n++] = t->lang_token;
        seq[n++] = t->o.decode.translate ? sp->translate : sp->transcribe;
    }
    sot_len = n;
    seq[n++] = sp->not_;
    for (int s = 0; s < n_segs; s++)
        for (int i = segs[s].a; i < segs[s].b; i++)
            if (r->tokens[i] < sp->eot) seq[n++] = r->tokens[i], per[s]++, n_text++;
    seq[n++] = sp->eot;
    if (n_text == 0) goto out;
    if (!(probs = malloc((size_t)n * sizeof *probs))) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    int n_frames = segment_size / 2 > 0 ? segment_size / 2 : 1, n_heads = 0;
    if ((rc = t->m->align(t->m->ctx, seq, n, &n_frames, &qk, &n_heads, probs, err)) < 0) goto out;
    const char *lang = sp->is_multilingual ? at_wtok_lang_code(t->tok, t->lang_token) : "en";
    if ((rc = at_wtiming_align(t->tok, lang, qk, n_heads, n_frames, n_frames, sot_len, seq + sot_len + 1,
                               n_text, probs, &ww->w, &ww->n, err)) < 0)
        goto out;
    at_wtiming_word *w = ww->w;
    int nw = ww->n;
    /* the median word duration bounds the words at pauses */
    double *dur = malloc(((size_t)nw + 1) * sizeof *dur), median = 0;
    if (!dur) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    int nd = 0;
    for (int i = 0; i < nw; i++)
        if (w[i].end - w[i].start != 0) dur[nd++] = w[i].end - w[i].start;
    if (nd > 0) {
        qsort(dur, (size_t)nd, sizeof *dur, cmp_double);
        median = nd % 2 ? dur[nd / 2] : (dur[nd / 2 - 1] + dur[nd / 2]) / 2;
    }
    free(dur);
    if (median > 0.7) median = 0.7;
    double max_d = median * 2;
    static const char SENTENCE_END[] = ".\xe3\x80\x82!\xef\xbc\x81?\xef\xbc\x9f"; /* .。!！?？ */
    if (nd > 0)
        for (int i = 1; i < nw; i++)
            if (w[i].end - w[i].start > max_d) {
                if (strstr(SENTENCE_END, w[i].text))
                    w[i].end = w[i].start + max_d;
                else if (strstr(SENTENCE_END, w[i - 1].text))
                    w[i].start = w[i].end - max_d;
            }
    at_wtiming_merge_punctuation(w, nw);
    if (!(ww->out = malloc(((size_t)nw + 1) * sizeof *ww->out))) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        goto out;
    }
    /* transcribe.py hands this a copy: the caller's value is not moved */
    double last_speech = t->last_speech;
    int wi = 0, no = 0;
    for (int s = 0; s < n_segs; s++) {
        wseg *g = &segs[s];
        at_wdec_word *ws = ww->out + no;
        int k = 0;
        for (int saved = 0; wi < nw && saved < per[s]; wi++) {
            if (w[wi].text[0])
                ws[k++] = (at_wdec_word){w[wi].text, round2(time_offset + w[wi].start),
                                         round2(time_offset + w[wi].end), w[wi].probability};
            saved += w[wi].n_tok;
        }
        g->words = k ? ws : NULL;
        g->n_words = k;
        no += k;
        if (!k) continue;
        /* the first and second word after a pause stay within twice the
         * median duration */
        if (ws[0].end - last_speech > median * 4 &&
            (ws[0].end - ws[0].start > max_d || (k > 1 && ws[1].end - ws[0].start > max_d * 2))) {
            if (k > 1 && ws[1].end - ws[1].start > max_d) {
                double boundary = fmax(ws[1].end / 2, ws[1].end - max_d);
                ws[0].end = ws[1].start = boundary;
            }
            ws[0].start = fmax(0, ws[0].end - max_d);
        }
        /* a first or last word much longer than the segment says gives way */
        if (g->start < ws[0].end && g->start - 0.5 > ws[0].start)
            ws[0].start = fmax(0, fmin(ws[0].end - median, g->start));
        else
            g->start = ws[0].start;
        if (g->end > ws[k - 1].start && g->end + 0.5 < ws[k - 1].end)
            ws[k - 1].end = fmax(ws[k - 1].start + median, g->end);
        else
            g->end = ws[k - 1].end;
        last_speech = g->end;
    }
out:
    free(seq);
    free(per);
    free(qk);
    free(probs);
    return rc;
}

/* ---- hallucination_silence_threshold ---- */

static double word_anomaly(const at_wdec_word *w)
{
    double d = w->end - w->start, score = 0;
    if (w->probability < 0.15f) score += 1;
    if (d < 0.133) score += (0.133 - d) * 15;
    if (d > 2.0) score += d - 2.0;
    return score;
}

static int segment_anomaly(const wseg *g)
{
    if (!g || !g->n_words) return 0;
    double score = 0;
    int n = 0;
    for (int i = 0; i < g->n_words && n < 8; i++)
        if (!at_wtiming_is_punctuation(g->words[i].text)) score += word_anomaly(&g->words[i]), n++;
    return score >= 3 || score + 0.01 >= n;
}

static const wseg *next_with_words(const wseg *segs, int n)
{
    for (int i = 0; i < n; i++)
        if (segs[i].n_words) return &segs[i];
    return NULL;
}

/* The end of the last word, else of the last segment; -1: no segment. */
static double last_end(const wseg *segs, int n)
{
    for (int i = n - 1; i >= 0; i--)
        if (segs[i].n_words) return segs[i].words[segs[i].n_words - 1].end;
    return n > 0 ? segs[n - 1].end : -1;
}

/* A window's place in the audio, for the hallucination rules. */
typedef struct wwindow {
    int previous_seek, segment_size;
    double time_offset, segment_duration, window_end;
    int content_frames;
    double content_duration;
} wwindow;

/* transcribe.py's hallucination_silence_threshold rules, after the word
 * timestamps: sets *seek, drops the segments from a likely hallucination
 * on (*n_segs), and returns 1 when the whole window is to be decoded
 * again from *seek (its first segment looks hallucinated after silence). */
static int skip_hallucinations(const at_wdec_tx *t, const wseg *segs, int *n_segs, const wwindow *w,
                               int single_ending, double threshold, int *seek)
{
    double lwe = last_end(segs, *n_segs);
    if (!single_ending && lwe > w->time_offset)
        *seek = w->window_end - lwe > threshold ? (int)lround(lwe * 100) : w->previous_seek + w->segment_size;
    /* a first segment that may be a hallucination: skip the silence before
     * it and decode again from there */
    const wseg *first = next_with_words(segs, *n_segs);
    if (first && segment_anomaly(first) && first->start - w->time_offset > threshold) {
        *seek = w->previous_seek + (int)lround((first->start - w->time_offset) * 100);
        return 1;
    }
    /* a possible hallucination surrounded by silence or more of them: drop
     * it and what follows, seek past its start */
    double hal_last_end = t->last_speech;
    for (int si = 0; si < *n_segs; si++) {
        const wseg *g = &segs[si];
        if (!g->n_words) continue;
        if (segment_anomaly(g)) {
            const wseg *next = next_with_words(segs + si + 1, *n_segs - si - 1);
            double next_start = next ? next->words[0].start : w->time_offset + w->segment_duration;
            int before = g->start - hal_last_end > threshold || g->start < threshold ||
                         g->start - w->time_offset < 2.0;
            int after =
                next_start - g->end > threshold || segment_anomaly(next) || w->window_end - g->end < 2.0;
            if (before && after) {
                *seek = (int)lround(fmax(w->time_offset + 1, g->start) * 100);
                if (w->content_duration - g->end < threshold) *seek = w->content_frames;
                *n_segs = si;
                return 0;
            }
        }
        hal_last_end = g->end;
    }
    return 0;
}

int at_wdec_tx_run(at_wdec_tx *t, int content_frames, int final, at_err *err)
{
    const at_wdec_model *m = t->m;
    const at_whisper_special *sp = at_wtok_special(t->tok);
    int input_stride = m->n_audio_ctx > 0 && N_FRAMES % m->n_audio_ctx == 0 ? N_FRAMES / m->n_audio_ctx : 2;
    double precision = (double)input_stride * HOP / SR; /* 0.02 s */
    int words_on = (t->o.word_timestamps || t->o.hallucination_silence_threshold > 0) && m->align;
    double threshold = words_on ? t->o.hallucination_silence_threshold : 0;
    double content_duration = (double)content_frames * HOP / SR;
    int rc;
    while (t->seek < content_frames) {
        int avail = content_frames - t->seek;
        if (!final && avail < N_FRAMES) break;
        int segment_size = avail < N_FRAMES ? avail : N_FRAMES;
        double time_offset = (double)t->seek * HOP / SR;
        double segment_duration = (double)segment_size * HOP / SR;
        double window_end = (double)(t->seek + segment_size) * HOP / SR;

        if (t->lang_token < 0) {
            if (!sp->is_multilingual) {
                t->lang_token = sp->sot + 1;
            } else {
                /* the language of the first 30 s, as transcribe() does */
                if ((rc = ensure_encoded(t, t->seek, segment_size, err)) < 0) return rc;
                if ((rc = at_wdec_detect_language(m, t->tok, &t->lang_token, NULL, err)) < 0) return rc;
            }
        }
        if ((rc = ensure_encoded(t, t->seek, segment_size, err)) < 0) return rc;

        at_wdec_options o = t->o.decode;
        o.lang_token = t->lang_token;
        o.prompt = t->ctx;
        o.n_prompt = t->n_ctx;
        at_wdec_result r;
        if ((rc = at_wdec_decode_fallback(m, t->tok, &o, &t->o.fallback, &r, err)) < 0) return rc;

        /* no voice activity: skip the window */
        const at_wdec_fallback *f = &t->o.fallback;
        if (!isnan(f->no_speech_threshold)) {
            int skip = r.no_speech_prob > f->no_speech_threshold;
            if (!isnan(f->logprob_threshold) && r.avg_logprob > f->logprob_threshold) skip = 0;
            if (skip) {
                t->seek += segment_size;
                at_wdec_result_free(&r);
                continue;
            }
        }

        int previous_seek = t->seek, n = r.n_tokens;
        const int *tk = r.tokens;
        int beg = sp->beg;
        int single_ending = n >= 2 && tk[n - 2] < beg && tk[n - 1] >= beg;
        int n_consec = 0;
        for (int i = 0; i + 1 < n; i++)
            if (tk[i] >= beg && tk[i + 1] >= beg) n_consec++;
        /* the window's segments: split at every pair of consecutive
         * timestamps */
        wseg *segs = calloc((size_t)n_consec + 2, sizeof *segs);
        int n_segs = 0, seek = t->seek;
        if (!segs) {
            at_wdec_result_free(&r);
            return at_err_set(err, AT_E_NOMEM, "out of memory");
        }
        if (n_consec > 0) {
            int last = 0;
            for (int i = 0; i + 1 < n; i++) {
                if (!(tk[i] >= beg && tk[i + 1] >= beg)) continue;
                int cur = i + 1;
                segs[n_segs++] = (wseg){last,
                                        cur,
                                        time_offset + (tk[last] - beg) * precision,
                                        time_offset + (tk[cur - 1] - beg) * precision,
                                        NULL,
                                        0};
                last = cur;
            }
            if (single_ending && last < n) {
                segs[n_segs++] = (wseg){last,
                                        n,
                                        time_offset + (tk[last] - beg) * precision,
                                        time_offset + (tk[n - 1] - beg) * precision,
                                        NULL,
                                        0};
                last = n;
            }
            if (single_ending) /* no speech after the last timestamp */
                seek += segment_size;
            else /* drop the unfinished segment, resume at the last timestamp */
                seek += (tk[last - 1] - beg) * input_stride;
        } else {
            double duration = segment_duration;
            int last_ts = -1;
            for (int i = n - 1; i >= 0; i--)
                if (tk[i] >= beg) {
                    last_ts = tk[i];
                    break;
                }
            if (last_ts >= 0 && last_ts != beg) duration = (last_ts - beg) * precision;
            segs[n_segs++] = (wseg){0, n, time_offset, time_offset + duration, NULL, 0};
            seek += segment_size;
        }
        wwords ww = {0};
        rc = 0;
        int skip_window = 0;
        if (words_on) {
            rc = add_word_timestamps(t, &r, segs, n_segs, time_offset, segment_size, &ww, err);
            double lwe = last_end(segs, n_segs);
            if (!rc && !single_ending && lwe > time_offset) seek = (int)lround(lwe * 100);
            if (!rc && threshold > 0) {
                const wwindow w = {previous_seek, segment_size,   time_offset,     segment_duration,
                                   window_end,    content_frames, content_duration};
                skip_window = skip_hallucinations(t, segs, &n_segs, &w, single_ending, threshold, &seek);
            }
            if (!rc && !skip_window && (lwe = last_end(segs, n_segs)) >= 0) t->last_speech = lwe;
        }
        for (int i = 0; i < n_segs && !rc && !skip_window; i++) rc = emit_segment(t, &r, &segs[i], err);
        wwords_free(&ww);
        free(segs);
        t->seek = seek;
        /* the timestamp rules make this impossible; never loop forever */
        if (t->seek <= previous_seek) t->seek = previous_seek + segment_size;
        /* a high temperature output is a poor prompt */
        if (!skip_window && (!t->o.condition_on_previous_text || r.temperature > 0.5f)) t->n_ctx = 0;
        at_wdec_result_free(&r);
        if (rc < 0) return rc;
    }
    return 0;
}
