#include "wer.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **w;
    size_t n;
    char *buf;
} words;

/* Lower-cases ASCII letters, turns punctuation into spaces (keeping
 * apostrophes between letters, "don't"), leaves UTF-8 bytes alone. */
static int split(const char *s, words *out)
{
    memset(out, 0, sizeof *out);
    if (!s) s = "";
    size_t len = strlen(s);
    out->buf = malloc(len + 1);
    out->w = malloc((len / 2 + 1) * sizeof *out->w);
    if (!out->buf || !out->w) return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || isalnum(c))
            out->buf[i] = (char)tolower(c);
        else if (c == '\'' && i > 0 && i + 1 < len && isalnum((unsigned char)s[i - 1]) &&
                 isalnum((unsigned char)s[i + 1]))
            out->buf[i] = '\'';
        else
            out->buf[i] = ' ';
    }
    out->buf[len] = '\0';
    char *save = NULL;
    for (char *t = strtok_r(out->buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) out->w[out->n++] = t;
    return 0;
}

static void words_free(words *w)
{
    free(w->w);
    free(w->buf);
}

size_t at_test_word_count(const char *s)
{
    words w;
    size_t n = split(s, &w) == 0 ? w.n : 0;
    words_free(&w);
    return n;
}

double at_test_wer(const char *ref, const char *hyp)
{
    words r = {0}, h = {0};
    int ok = split(ref, &r) == 0 && split(hyp, &h) == 0;
    double wer = -1.0;
    size_t *prev = NULL, *cur = NULL;
    if (!ok) goto out;
    if (r.n == 0) {
        wer = h.n == 0 ? 0.0 : 1.0;
        goto out;
    }
    /* Two rows of the edit-distance table are enough. */
    prev = malloc((h.n + 1) * sizeof *prev);
    cur = malloc((h.n + 1) * sizeof *cur);
    if (!prev || !cur) goto out;
    for (size_t j = 0; j <= h.n; j++) prev[j] = j;
    for (size_t i = 1; i <= r.n; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= h.n; j++) {
            size_t sub = prev[j - 1] + (strcmp(r.w[i - 1], h.w[j - 1]) != 0);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    wer = (double)prev[h.n] / (double)r.n;
out:
    free(prev);
    free(cur);
    words_free(&r);
    words_free(&h);
    return wer;
}
