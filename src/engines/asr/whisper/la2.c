/* la2.c - LocalAgreement-2 (see la2.h). */
#include "engines/asr/whisper/la2.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROMPT_MAX 1000
#define TAIL_WORDS 5
#define WORD_MAX   128 /* longer "words" are cut: bounds every copy */

typedef struct lword {
    char text[WORD_MAX];
    double start, end;
} lword;

struct at_la2 {
    lword *prev; /* unconfirmed tail of the last hypothesis */
    size_t n_prev, cap_prev;
    lword tail[TAIL_WORDS]; /* last committed words, oldest first */
    size_t n_tail;
    double committed_end;
    char prompt[PROMPT_MAX + WORD_MAX + 2];
    char last_final[512]; /* normalized text of the last final */
    double last_final_end;
    int repeats_dropped;
};

at_la2 *at_la2_new(at_err *err)
{
    at_la2 *p = calloc(1, sizeof *p);
    if (!p) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    p->committed_end = -1;
    p->last_final_end = -1e9;
    return p;
}

void at_la2_free(at_la2 *p)
{
    if (!p) return;
    free(p->prev);
    free(p);
}

double at_la2_committed_end(const at_la2 *p) { return p->committed_end; }
const char *at_la2_prompt(const at_la2 *p) { return p->prompt; }
size_t at_la2_pending(const at_la2 *p) { return p->n_prev; }
int at_la2_repeats_dropped(const at_la2 *p) { return p->repeats_dropped; }

/* Compare words ignoring case and punctuation ("Hello," == "hello"). */
static void norm(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        if (isalnum((unsigned char)*s) || ((unsigned char)*s & 0x80))
            out[o++] = (char)tolower((unsigned char)*s);
    out[o] = '\0';
}

static int same(const char *a, const char *b)
{
    char x[WORD_MAX], y[WORD_MAX];
    norm(a, x, sizeof x);
    norm(b, y, sizeof y);
    if (!x[0] && !y[0]) return strcmp(a, b) == 0;
    return strcmp(x, y) == 0;
}

static void copy_word(lword *d, const at_la2_word *s)
{
    size_t n = strlen(s->text);
    if (n >= WORD_MAX) {
        n = WORD_MAX - 1;
        while (n > 0 && ((unsigned char)s->text[n] & 0xC0) == 0x80) n--; /* whole UTF-8 chars */
    }
    memcpy(d->text, s->text, n);
    d->text[n] = '\0';
    d->start = s->start;
    d->end = s->end;
}

/* Joins words into one trimmed line (malloc'd). */
static char *join(const lword *w, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++) len += strlen(w[i].text);
    char *s = malloc(len), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t k = strlen(w[i].text);
        memcpy(o, w[i].text, k);
        o += k;
    }
    *o = '\0';
    char *b = s;
    while (*b && isspace((unsigned char)*b)) b++;
    size_t k = strlen(b);
    while (k > 0 && isspace((unsigned char)b[k - 1])) k--;
    memmove(s, b, k);
    s[k] = '\0';
    return s;
}

/* Emits w[0..n) as one final and records it as committed. */
static int commit(at_la2 *p, const lword *w, size_t n, at_asr_event_cb cb, void *user, at_err *err)
{
    if (n == 0) return 0;
    char *text = join(w, n);
    if (!text) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (p->n_tail == TAIL_WORDS) {
            memmove(p->tail, p->tail + 1, (TAIL_WORDS - 1) * sizeof *p->tail);
            p->n_tail--;
        }
        p->tail[p->n_tail++] = w[i];
    }
    p->committed_end = w[n - 1].end;
    /* repeated-text guard: the same sentence again right after itself is
     * the classic phantom of a decoder looping over silence or music */
    char nt[sizeof p->last_final];
    norm(text, nt, sizeof nt);
    int repeat = nt[0] && strcmp(nt, p->last_final) == 0 && w[0].start - p->last_final_end < 10.0;
    snprintf(p->last_final, sizeof p->last_final, "%s", nt);
    p->last_final_end = w[n - 1].end;
    int rc = 0;
    if (repeat) {
        p->repeats_dropped++;
    } else if (text[0]) {
        /* prompt: the committed text's tail, cut at a word boundary */
        size_t pl = strlen(p->prompt), tl = strlen(text);
        if (pl + tl + 1 > PROMPT_MAX) {
            size_t drop = pl + tl + 1 - PROMPT_MAX;
            if (drop > pl) drop = pl;
            while (drop < pl && p->prompt[drop] != ' ') drop++;
            memmove(p->prompt, p->prompt + drop, pl - drop + 1);
            pl -= drop;
        }
        if (tl <= PROMPT_MAX) {
            if (pl) p->prompt[pl++] = ' ';
            memcpy(p->prompt + pl, text, tl + 1);
        }
        at_asr_event ev = {.is_final = 1, .text = text, .start = w[0].start, .end = w[n - 1].end};
        if (cb && cb(user, &ev)) rc = at_err_set(err, AT_E_CANCELLED, "stream cancelled");
    }
    free(text);
    return rc;
}

static int partial(const at_la2 *p, at_asr_event_cb cb, void *user, at_err *err)
{
    if (p->n_prev == 0 || !cb) return 0;
    char *text = join(p->prev, p->n_prev);
    if (!text) return at_err_set(err, AT_E_NOMEM, "out of memory");
    at_asr_event ev = {.text = text, .start = p->prev[0].start, .end = p->prev[p->n_prev - 1].end};
    int stop = text[0] ? cb(user, &ev) : 0;
    free(text);
    return stop ? at_err_set(err, AT_E_CANCELLED, "stream cancelled") : 0;
}

int at_la2_insert(at_la2 *p, const at_la2_word *w, size_t n, size_t *n_done, at_asr_event_cb cb, void *user,
                  at_err *err)
{
    /* 1. words that end before the committed point were emitted already */
    size_t skip = 0;
    if (p->committed_end >= 0)
        while (skip < n && w[skip].start < p->committed_end - 0.1) skip++;
    /* 2. an n-gram repeating the committed tail at the junction */
    if (skip < n && p->n_tail > 0 && w[skip].start - p->committed_end < 1.0) {
        size_t avail = n - skip;
        for (size_t k = p->n_tail < avail ? p->n_tail : avail; k >= 1; k--) {
            size_t i = 0;
            while (i < k && same(p->tail[p->n_tail - k + i].text, w[skip + i].text)) i++;
            if (i == k) {
                skip += k;
                break;
            }
        }
    }
    size_t nn = n - skip;
    lword *cur = nn ? malloc(nn * sizeof *cur) : NULL;
    if (nn && !cur) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nn; i++) copy_word(&cur[i], &w[skip + i]);
    /* 3. agreement with the previous hypothesis */
    size_t agree = 0;
    while (agree < nn && agree < p->n_prev && same(cur[agree].text, p->prev[agree].text)) agree++;
    int rc = commit(p, cur, agree, cb, user, err);
    if (rc == 0) {
        size_t rest = nn - agree;
        if (rest > p->cap_prev) {
            lword *np = realloc(p->prev, rest * sizeof *np);
            if (!np) {
                free(cur);
                return at_err_set(err, AT_E_NOMEM, "out of memory");
            }
            p->prev = np;
            p->cap_prev = rest;
        }
        if (rest) memcpy(p->prev, cur + agree, rest * sizeof *cur);
        p->n_prev = rest;
        rc = partial(p, cb, user, err);
    }
    free(cur);
    if (n_done) *n_done = skip + agree;
    return rc;
}

int at_la2_flush(at_la2 *p, at_asr_event_cb cb, void *user, at_err *err)
{
    size_t n = p->n_prev;
    p->n_prev = 0;
    return commit(p, p->prev, n, cb, user, err);
}
