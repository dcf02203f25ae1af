/* timing.c - word timestamps from cross-attention (see timing.h). */
#include "engines/asr/whisper/timing.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOKENS_PER_SECOND 50.0 /* encoder positions: 20 ms each */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void at_wtiming_median(float *x, int rows, int cols, int width)
{
    int pad = width / 2;
    if (width < 3 || cols <= pad) return;
    float *row = malloc(((size_t)cols + 2 * (size_t)pad) * sizeof *row), win[64];
    if (!row || width > 64) {
        free(row);
        return;
    }
    for (int r = 0; r < rows; r++) {
        float *x_r = x + (size_t)r * cols;
        /* reflect: the edge value itself is not repeated */
        for (int i = 0; i < cols + 2 * pad; i++) {
            int j = i - pad;
            if (j < 0) j = -j;
            if (j >= cols) j = 2 * (cols - 1) - j;
            if (j < 0) j = 0;
            row[i] = x_r[j];
        }
        for (int c = 0; c < cols; c++) {
            memcpy(win, row + c, (size_t)width * sizeof *win);
            qsort(win, (size_t)width, sizeof *win, cmp_float);
            x_r[c] = win[pad];
        }
    }
    free(row);
}

int at_wtiming_dtw(const float *x, int n, int m, int *rows, int *cols, at_err *err)
{
    if (n < 1 || m < 1) return at_err_set(err, AT_E_INVALID, "dtw over %d x %d", n, m);
    size_t W = (size_t)m + 1, cells = ((size_t)n + 1) * W;
    float *cost = malloc(cells * sizeof *cost);
    unsigned char *trace = malloc(cells);
    if (!cost || !trace) {
        free(cost);
        free(trace);
        return at_err_set(err, AT_E_NOMEM, "out of memory (dtw over %d x %d)", n, m);
    }
    for (size_t i = 0; i < cells; i++) cost[i] = INFINITY;
    cost[0] = 0;
    /* trace: 0 diagonal, 1 from the row above, 2 from the column left */
    for (int j = 1; j <= m; j++)
        for (int i = 1; i <= n; i++) {
            /* analyzer: every cell was set to INFINITY above
             * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
            float c0 = cost[(i - 1) * W + j - 1], c1 = cost[(i - 1) * W + j], c2 = cost[i * W + j - 1], c;
            unsigned char t;
            if (c0 < c1 && c0 < c2)
                c = c0, t = 0;
            else if (c1 < c0 && c1 < c2)
                c = c1, t = 1;
            else
                c = c2, t = 2;
            cost[i * W + j] = (float)((double)x[(size_t)(i - 1) * m + j - 1] + c);
            trace[i * W + j] = t;
        }
    for (size_t j = 0; j < W; j++) trace[j] = 2;
    for (int i = 0; i <= n; i++) trace[i * W] = 1;
    int i = n, j = m, len = 0;
    while (i > 0 || j > 0) {
        rows[len] = i - 1;
        cols[len] = j - 1;
        len++;
        unsigned char t = trace[i * W + j];
        if (t == 0)
            i--, j--;
        else if (t == 1)
            i--;
        else
            j--;
    }
    free(cost);
    free(trace);
    for (int a = 0, b = len - 1; a < b; a++, b--) {
        int r = rows[a], c = cols[a];
        rows[a] = rows[b], cols[a] = cols[b];
        rows[b] = r, cols[b] = c;
    }
    return len;
}

int at_wtiming_matrix(const float *qk, int n_heads, int n_tok, int n_cols, int n_frames, int row0, int n_rows,
                      float *out, at_err *err)
{
    if (n_heads < 1 || n_tok < 1 || n_frames < 1 || n_frames > n_cols || row0 < 0 || n_rows < 1 ||
        row0 + n_rows > n_tok)
        return at_err_set(err, AT_E_INVALID, "alignment matrix: bad sizes");
    size_t plane = (size_t)n_tok * n_frames;
    float *w = malloc(plane * sizeof *w);
    if (!w) return at_err_set(err, AT_E_NOMEM, "out of memory (alignment matrix)");
    memset(out, 0, (size_t)n_rows * n_frames * sizeof *out);
    for (int h = 0; h < n_heads; h++) {
        /* softmax over the frames */
        for (int t = 0; t < n_tok; t++) {
            const float *s = qk + ((size_t)h * n_tok + t) * n_cols;
            float *d = w + (size_t)t * n_frames, mx = s[0];
            for (int f = 1; f < n_frames; f++) mx = s[f] > mx ? s[f] : mx;
            double sum = 0;
            for (int f = 0; f < n_frames; f++) sum += d[f] = expf(s[f] - mx);
            for (int f = 0; f < n_frames; f++) d[f] = (float)(d[f] / sum);
        }
        /* standardised over the tokens, per frame (population std) */
        for (int f = 0; f < n_frames; f++) {
            double mean = 0, var = 0;
            for (int t = 0; t < n_tok; t++) mean += w[(size_t)t * n_frames + f];
            mean /= n_tok;
            for (int t = 0; t < n_tok; t++) {
                double e = w[(size_t)t * n_frames + f] - mean;
                var += e * e;
            }
            double sd = sqrt(var / n_tok);
            for (int t = 0; t < n_tok; t++) {
                float *v = &w[(size_t)t * n_frames + f];
                *v = sd > 0 ? (float)((*v - mean) / sd) : 0.0f;
            }
        }
        at_wtiming_median(w, n_tok, n_frames, AT_WTIMING_MEDFILT);
        for (size_t i = 0; i < (size_t)n_rows * n_frames; i++) out[i] += w[(size_t)row0 * n_frames + i];
    }
    for (size_t i = 0; i < (size_t)n_rows * n_frames; i++) out[i] /= (float)n_heads;
    free(w);
    return 0;
}

/* ---- words ---- */

static const char *const NO_SPACE_LANGS[] = {"zh", "ja", "th", "lo", "my", "yue"};
static const char ASCII_PUNCT[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/* Bytes that end a whole UTF-8 character sequence (no character cut). */
static int utf8_complete(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        if (i + len > n) return 0;
        i += len;
    }
    return 1;
}

void at_wtiming_words_free(at_wtiming_word *w, int n)
{
    for (int i = 0; w && i < n; i++) free(w[i].text);
    free(w);
}

/* The text of tokens, stripped of leading and trailing spaces. */
static int stripped_in(const char *text, const char *set)
{
    while (*text == ' ') text++;
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == ' ') n--;
    char buf[64];
    if (n >= sizeof buf) return 0;
    memcpy(buf, text, n);
    buf[n] = '\0';
    return strstr(set, buf) != NULL; /* as Python's `in`: "" is in every string */
}

int at_wtiming_split(const at_wtok *tok, const char *lang, const int *text, int n_text,
                     at_wtiming_word **words, int *n_words, at_err *err)
{
    int by_char = 0;
    for (size_t i = 0; lang && i < sizeof NO_SPACE_LANGS / sizeof NO_SPACE_LANGS[0]; i++)
        by_char |= strcmp(lang, NO_SPACE_LANGS[i]) == 0;
    *words = NULL;
    *n_words = 0;
    at_wtiming_word *w = calloc((size_t)n_text + 1, sizeof *w);
    unsigned char *acc = NULL;
    size_t acc_n = 0, acc_cap = 0;
    int n = 0, sub0 = 0, rc = 0;
    if (!w) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (int t = 0; t < n_text; t++) {
        size_t len;
        const char *b = at_wtok_bytes(tok, text[t], &len);
        if (acc_n + len + 1 > acc_cap) {
            size_t cap = (acc_n + len + 1) * 2;
            unsigned char *p = realloc(acc, cap);
            if (!p) {
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
                goto out;
            }
            acc = p, acc_cap = cap;
        }
        if (len) memcpy(acc + acc_n, b, len);
        acc_n += len;
        /* a subword: tokens up to a whole character (the last token
         * closes whatever is left) */
        if (!utf8_complete(acc, acc_n) && t + 1 < n_text) continue;
        char *sub = at_wtok_decode(tok, text + sub0, (size_t)(t + 1 - sub0), err);
        if (!sub) {
            rc = err ? err->code : AT_E_NOMEM;
            goto out;
        }
        int starts = by_char || n == 0 || sub[0] == ' ' || stripped_in(sub, ASCII_PUNCT);
        if (starts) {
            w[n].text = sub;
            w[n].tok0 = sub0;
            w[n].n_tok = t + 1 - sub0;
            n++;
        } else {
            at_wtiming_word *last = &w[n - 1];
            size_t a = strlen(last->text), c = strlen(sub);
            char *joined = realloc(last->text, a + c + 1);
            if (!joined) {
                free(sub);
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
                goto out;
            }
            memcpy(joined + a, sub, c + 1);
            last->text = joined;
            last->n_tok += t + 1 - sub0;
            free(sub);
        }
        sub0 = t + 1;
        acc_n = 0;
    }
out:
    free(acc);
    if (rc) {
        at_wtiming_words_free(w, n);
        return rc;
    }
    *words = w;
    *n_words = n;
    return 0;
}

int at_wtiming_align(const at_wtok *tok, const char *lang, const float *qk, int n_heads, int n_cols,
                     int n_frames, int sot_len, const int *text, int n_text, const float *probs,
                     at_wtiming_word **words, int *n_words, at_err *err)
{
    *words = NULL;
    *n_words = 0;
    if (n_text < 1) return 0;
    int n_tok = sot_len + n_text + 2, n_rows = n_text + 1; /* <|notimestamps|> and the text */
    float *mat = malloc((size_t)n_rows * n_frames * sizeof *mat);
    int *pr = malloc(((size_t)n_rows + n_frames) * sizeof *pr),
        *pc = malloc(((size_t)n_rows + n_frames) * sizeof *pc);
    double *jump = malloc((size_t)n_rows * sizeof *jump);
    at_wtiming_word *w = NULL;
    int nw = 0, rc;
    if (!mat || !pr || !pc || !jump) {
        rc = at_err_set(err, AT_E_NOMEM, "out of memory (alignment)");
        goto out;
    }
    if ((rc = at_wtiming_matrix(qk, n_heads, n_tok, n_cols, n_frames, sot_len, n_rows, mat, err))) goto out;
    for (size_t i = 0; i < (size_t)n_rows * n_frames; i++) mat[i] = -mat[i];
    int len = at_wtiming_dtw(mat, n_rows, n_frames, pr, pc, err);
    if (len < 0) {
        rc = len;
        goto out;
    }
    /* the time at which the path reaches each row */
    int nj = 0;
    for (int i = 0; i < len && nj < n_rows; i++)
        if (i == 0 || pr[i] != pr[i - 1]) jump[nj++] = pc[i] / TOKENS_PER_SECOND;
    while (nj < n_rows) jump[nj] = nj ? jump[nj - 1] : 0, nj++;
    if ((rc = at_wtiming_split(tok, lang, text, n_text, &w, &nw, err))) goto out;
    for (int i = 0; i < nw; i++) {
        int a = w[i].tok0, b = a + w[i].n_tok; /* rows a and b: before its first token, after its last */
        /* analyzer: jump[0..n_rows-1] are all written above, and a < n_rows
         * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
        w[i].start = jump[a];
        /* analyzer: jump[0..n_rows-1] are all written above
         * NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Assign) */
        w[i].end = jump[b < n_rows ? b : n_rows - 1];
        double p = 0;
        for (int t = a; t < b; t++) p += probs ? probs[sot_len + t] : 0;
        w[i].probability = (float)(p / (b - a));
    }
out:
    free(mat);
    free(pr);
    free(pc);
    free(jump);
    if (rc) {
        at_wtiming_words_free(w, nw);
        return rc;
    }
    *words = w;
    *n_words = nw;
    return 0;
}

/* OpenAI's prepend_punctuations, "'“¿([{-, and append_punctuations,
 * "'.。,，!！?？:：”)]}、 */
#define PREPENDED_MARKS "\"'\xe2\x80\x9c\xc2\xbf([{-"
#define APPENDED_MARKS                                                                                       \
    "\"'.\xe3\x80\x82,\xef\xbc\x8c!\xef\xbc\x81?\xef\xbc\x9f:\xef\xbc\x9a\xe2\x80\x9d)]}\xe3\x80\x81"
static const char PREPENDED[] = PREPENDED_MARKS, APPENDED[] = APPENDED_MARKS;

int at_wtiming_is_punctuation(const char *word)
{
    return strstr(PREPENDED_MARKS APPENDED_MARKS, word) != NULL;
}

static void move_word(at_wtiming_word *to, at_wtiming_word *from, int prepend)
{
    size_t a = strlen(to->text), b = strlen(from->text);
    char *t = malloc(a + b + 1);
    if (!t) return; /* left unmerged: still a correct, if split, word */
    if (prepend) {
        memcpy(t, from->text, b);
        memcpy(t + b, to->text, a + 1);
        to->tok0 = from->tok0;
    } else {
        memcpy(t, to->text, a);
        memcpy(t + a, from->text, b + 1);
    }
    free(to->text);
    to->text = t;
    to->n_tok += from->n_tok;
    from->text[0] = '\0';
    from->n_tok = 0;
}

void at_wtiming_merge_punctuation(at_wtiming_word *w, int n)
{
    for (int i = n - 2, j = n - 1; i >= 0; i--) {
        if (w[i].text[0] == ' ' && stripped_in(w[i].text, PREPENDED))
            move_word(&w[j], &w[i], 1);
        else
            j = i;
    }
    for (int i = 0, j = 1; j < n; j++) {
        size_t a = strlen(w[i].text);
        int ends_space = a > 0 && w[i].text[a - 1] == ' ';
        if (!ends_space && strstr(APPENDED, w[j].text))
            move_word(&w[i], &w[j], 0);
        else
            i = j;
    }
}
