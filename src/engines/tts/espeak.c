/* espeak.c - espeak-ng behind the at_tts interface, and its phonemes as
 * the phonemizer package gives them.
 *
 * Every call into libespeak-ng goes through a worker process
 * (espeak_worker.h), so the library's crashes cost one request, not the
 * service.  This file prepares the text (what the library must not see,
 * which runs go to which voice) and keeps the voice list.  Each engine has
 * its own worker; at_espeak_phonemize, which has no engine, uses one
 * worker per process, started on first use. */
#include "engines/tts/espeak.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "engines/tts/espeak_worker.h"

#define ES_BASE_WPM 175.0f
#define ES_MIN_WPM  80
#define ES_MAX_WPM  450

typedef struct es_voice_id {
    char file[128]; /* espeak identifier, e.g. "gmw/en-US" */
} es_voice_id;

typedef struct es_engine {
    at_espeak_worker *w;
    at_tts_voice *voices;
    es_voice_id *ids; /* parallel to voices */
    size_t n;
} es_engine;

static char *es_prepare(const char *text, at_err *err);
static size_t es_next_run(const char *s, size_t n, const char *lang, const char **voice);

static int es_synthesize(void *impl, const at_tts_voice *voice, const char *text, const at_tts_params *p,
                         at_tts_chunk_cb cb, void *user, at_err *err)
{
    es_engine *e = impl;
    size_t idx = e->n;
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->voices[i].name, voice->name) == 0) idx = i;
    if (idx == e->n) return at_err_set(err, AT_E_UNSUPPORTED, "espeak-ng has no voice '%s'", voice->name);
    int wpm = (int)(ES_BASE_WPM * p->speed + 0.5f);
    if (wpm < ES_MIN_WPM) wpm = ES_MIN_WPM;
    if (wpm > ES_MAX_WPM) wpm = ES_MAX_WPM;

    char *prepared = es_prepare(text, err);
    if (!prepared) return AT_E_NOMEM;
    int rc = 0;
    size_t n = strlen(prepared);
    /* A run in an alphabet that is not the voice's own goes to the voice of
     * its language (see es_alphabets). */
    for (size_t off = 0; rc == 0 && off < n;) {
        const char *run_voice;
        size_t len = es_next_run(prepared + off, n - off, e->voices[idx].language, &run_voice);
        if (run_voice)
            rc = at_espeak_worker_synth(e->w, run_voice, NULL, wpm, prepared + off, len, cb, user, err);
        else
            rc = at_espeak_worker_synth(e->w, e->voices[idx].name, e->ids[idx].file, wpm, prepared + off, len,
                                        cb, user, err);
        off += len;
    }
    free(prepared);
    return rc;
}

static const at_tts_voice *es_voices(void *impl, size_t *n)
{
    es_engine *e = impl;
    *n = e->n;
    return e->voices;
}

static void es_destroy(void *impl)
{
    es_engine *e = impl;
    if (!e) return;
    at_espeak_worker_free(e->w);
    free(e->voices);
    free(e->ids);
    free(e);
}

static const at_tts_ops es_ops = {
    .name = "espeak-ng",
    .serialised = 1,
    .destroy = es_destroy,
    .synthesize = es_synthesize,
    .voices = es_voices,
};

static int add_voice(es_engine *e, const at_espeak_listed *v, const char *lang, int rate)
{
    if (strlen(lang) >= sizeof e->voices[0].name || strlen(v->identifier) >= sizeof e->ids[0].file) return 0;
    for (size_t k = 0; k < e->n; k++)
        if (strcmp(e->voices[k].name, lang) == 0) return 0;
    at_tts_voice *o = &e->voices[e->n];
    snprintf(o->name, sizeof o->name, "%s", lang);
    snprintf(o->language, sizeof o->language, "%.*s", (int)strcspn(lang, "-_"), lang);
    snprintf(o->gender, sizeof o->gender, "%s", v->gender == 1 ? "male" : v->gender == 2 ? "female" : "");
    o->sample_rate = rate;
    snprintf(e->ids[e->n].file, sizeof e->ids[0].file, "%s", v->identifier);
    e->n++;
    return 1;
}

/* A voice is named by its first language ("en-gb", "fr-fr"); then every
 * other language a voice declares becomes an alias if still free, so the
 * plain codes users ask for ("en", "fr") exist too. */
static int list_voices(es_engine *e, at_err *err)
{
    at_espeak_listed *vl;
    size_t nl;
    int rate;
    int rc = at_espeak_worker_list(e->w, &vl, &nl, &rate, err);
    if (rc) return rc;
    size_t cap = 0;
    for (size_t i = 0; i < nl; i++)
        for (const char *l = vl[i].languages; *l; l += strlen(l) + 1) cap++;
    e->voices = calloc(cap ? cap : 1, sizeof *e->voices);
    e->ids = calloc(cap ? cap : 1, sizeof *e->ids);
    if (!e->voices || !e->ids) {
        free(vl);
        return at_err_set(err, AT_E_NOMEM, "out of memory");
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < nl; i++) {
            const at_espeak_listed *v = &vl[i];
            /* MBROLA voices need separately installed diphone databases. */
            if (strncmp(v->identifier, "mb/", 3) == 0) continue;
            const char *l = v->languages;
            if (pass == 0) {
                add_voice(e, v, l, rate);
                continue;
            }
            for (l += strlen(l) + 1; *l; l += strlen(l) + 1) add_voice(e, v, l, rate);
        }
    free(vl);
    if (e->n == 0) return at_err_set(err, AT_E_CORRUPT, "espeak-ng lists no usable voices");
    return 0;
}

at_tts_engine *at_tts_espeak_new(const char *data_path, at_err *err)
{
    es_engine *e = calloc(1, sizeof *e);
    if (!e) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    e->w = at_espeak_worker_new(data_path, err);
    if (!e->w || list_voices(e, err) != 0) {
        es_destroy(e);
        return NULL;
    }
    return at_tts_engine_new(&es_ops, e, err);
}

/* ---- phonemes, as the phonemizer package's espeak backend ------------- */

/* phonemizer's Punctuation.default_marks() (3.2 and later). */
static const uint32_t es_marks[] = {';',  ':',  ',',    '.',    '!', '?', 0xA1, 0xBF, 0x2014, 0x2026, '"',
                                    0xAB, 0xBB, 0x201C, 0x201D, '(', ')', '{',  '}',  '[',    ']'};

/* Python's str.isspace() (also what re's \s matches in str patterns). */
static int es_isspace(uint32_t c)
{
    return (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

static int es_ismark(uint32_t c)
{
    for (size_t i = 0; i < sizeof es_marks / sizeof es_marks[0]; i++)
        if (es_marks[i] == c) return 1;
    return 0;
}

/* Decodes the (already validated) UTF-8 sequence at s. */
static size_t es_utf8(const char *s, size_t left, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = at_utf8_len(u, left);
    if (n == 0) {
        *cp = 0xFFFD;
        return 1;
    }
    uint32_t c = n == 1 ? u[0] : n == 2 ? (u[0] & 0x1Fu) : n == 3 ? (u[0] & 0x0Fu) : (u[0] & 0x07u);
    for (size_t i = 1; i < n; i++) c = (c << 6) | (u[i] & 0x3Fu);
    *cp = c;
    return n;
}

/* ---- text for the library ------------------------------------------------ */

/* Unicode script blocks (the ranges of the Unicode standard's block
 * names), coarse: what matters is only whether two neighbouring letters
 * belong to the same writing system.  0: not a letter of any script
 * (ASCII digits and punctuation, combining diacritics, general
 * punctuation and symbols, specials), which never separates anything. */
typedef struct es_script_range {
    unsigned lo, hi;
    int id;
} es_script_range;

static const es_script_range es_scripts[] = {
    {0x00C0, 0x02AF, 1},                       /* Latin-1 letters, Latin Extended-A/B, IPA */
    {0x0300, 0x036F, 0},                       /* combining diacritics: part of the letter before */
    {0x0370, 0x03FF, 2},  {0x1F00, 0x1FFF, 2}, /* Greek */
    {0x0400, 0x052F, 3},                       /* Cyrillic */
    {0x0530, 0x058F, 4},                       /* Armenian */
    {0x0590, 0x05FF, 5},                       /* Hebrew */
    {0x0600, 0x06FF, 6},  {0x0750, 0x077F, 6},  {0x08A0, 0x08FF, 6}, /* Arabic */
    {0x0700, 0x074F, 7},                                             /* Syriac */
    {0x0780, 0x07BF, 8},                                             /* Thaana */
    {0x07C0, 0x07FF, 9},                                             /* NKo */
    {0x1E00, 0x1EFF, 1},                                             /* Latin Extended Additional */
    {0x2000, 0x2BFF, 0}, /* punctuation, symbols, arrows, shapes */
    {0x1100, 0x11FF, 10}, {0x3130, 0x318F, 10}, {0xAC00, 0xD7AF, 10}, /* Hangul */
    {0x3000, 0x303F, 0},                                              /* CJK punctuation */
    {0x3040, 0x9FFF, 11}, /* kana and CJK ideographs, written together */
    {0xFE00, 0xFFFF, 0},  /* variation selectors, forms, specials (U+FFFD) */
};

static int es_script(uint32_t cp)
{
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z' ? 1 : 0;
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7) return 0;
    for (size_t i = 0; i < sizeof es_scripts / sizeof es_scripts[0]; i++)
        if (cp >= es_scripts[i].lo && cp <= es_scripts[i].hi) return es_scripts[i].id;
    /* Indic and the other scripts whose blocks are 128 code points wide
     * (Devanagari to Sinhala, Thai, Lao, ...), and anything unlisted: a
     * block of its own */
    return 100 + (int)(cp >> 7);
}

/* The alphabets that libespeak-ng 1.51 reads with a language of their own
 * (the alphabets[] of its tr_languages.c that name one), and the voice
 * languages whose dictionaries read each as their own script.  A word in
 * such an alphabet that is not the voice's own is translated by a second
 * translator for that language, and whatever that translator cannot say
 * itself (a digit, a sign, an unassigned code point, a letter of another
 * script in the same word, an alphabet name the voice lacks) makes the
 * library load yet another translator over the one in use, then read the
 * dictionary it has just freed: "\u0995\u09E6" (Bengali) or "\u054E" with a
 * German voice is a heap-use-after-free inside the library (found by
 * fuzz_tts_text; espeak-ng 1.52 gives such lookups a third translator).  So
 * such text never reaches a voice that is not its own: es_next_run() hands
 * it to the voice of its alphabet's language, whose first translator reads
 * it (every code point of each of these blocks was synthesised alone and
 * beside a letter, under ASan, with its own voice: none reads freed memory). */
typedef struct es_alphabet {
    unsigned lo, hi;
    const char *voice;   /* the espeak voice that reads it */
    const char *natives; /* voice languages that read it as their own, space-separated */
    const char *only;    /* if set, the only voice languages that switch for it */
} es_alphabet;

/* Cyrillic is an alphabet of this kind only for Georgian, whose translator
 * reads it with a Russian one ("\u24B9\u0436" read freed memory there). */
static const es_alphabet es_alphabets[] = {
    {0x0370, 0x03FF, "el", " el grc ", NULL},
    {0x0530, 0x058F, "hy", " hy hyw ", NULL},
    {0x0900, 0x097F, "hi", " hi mr ne kok ", NULL},
    {0x0980, 0x09FF, "bn", " bn as bpy ", NULL},
    {0x0A00, 0x0A7F, "pa", " pa ", NULL},
    {0x0A80, 0x0AFF, "gu", " gu ", NULL},
    {0x0B80, 0x0BFF, "ta", " ta ", NULL},
    {0x0C00, 0x0C7F, "te", " te ", NULL},
    {0x0C80, 0x0CFF, "kn", " kn ", NULL},
    {0x0D00, 0x0D7F, "ml", " ml ", NULL},
    {0x0D80, 0x0DFF, "si", " si ", NULL},
    {0x10A0, 0x10FF, "ka", " ka ", NULL},
    {0x1100, 0x11FF, "ko", " ko ", NULL},
    {0xA700, 0xD7FF, "ko", " ko ", NULL},
    {0x0400, 0x052F, "ru", "", " ka "},
};

/* The alphabet cp belongs to, NULL if none. */
static const es_alphabet *es_alphabet_of(uint32_t cp)
{
    for (size_t i = 0; i < sizeof es_alphabets / sizeof es_alphabets[0]; i++)
        if (cp >= es_alphabets[i].lo && cp <= es_alphabets[i].hi) return &es_alphabets[i];
    return NULL;
}

/* Blanks and ASCII punctuation: they belong to whatever is around them. */
static int es_neutral(uint32_t cp)
{
    return es_isspace(cp) || (cp < 0x80 && !es_script(cp) && !(cp >= '0' && cp <= '9'));
}

static int es_same_voice(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* The text as espeak-ng gets it: invalid UTF-8 and U+FFFD become a space,
 * a space separates letters of two different scripts within a word, and a
 * character of one of es_alphabets[] from anything next to it but blanks,
 * ASCII punctuation and characters of its own alphabet.  libespeak-ng 1.51
 * spells a word of mixed scripts letter by letter, switching its second
 * translator per letter, and one switch frees the dictionary that the
 * letter being spelt still reads from: "\u07D6\u054C" (an NKo letter, then
 * an Armenian one) or "\u24B9\u054E" (a circled D, then Armenian) read
 * freed memory inside the library.  As separate words every script's
 * letters are spoken as before, without the switch inside a word.  The
 * library has nothing to say for U+FFFD anyway. */
static char *es_prepare(const char *text, at_err *err)
{
    at_strbuf b = {0};
    int word = 0;        /* script of the current word's letters so far */
    uint32_t prev = ' '; /* the code point before, as written */
    const char *prev_al = NULL;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = es_utf8(text + i, n - i, &cp);
        i += k;
        if (cp == 0xFFFD) { /* also what an invalid byte becomes */
            at_strbuf_put(&b, " ", 1);
            word = 0;
            prev = ' ';
            prev_al = NULL;
            continue;
        }
        int sc = es_script(cp);
        const es_alphabet *a = es_alphabet_of(cp);
        const char *al = a ? a->voice : NULL;
        int space = 0;
        if (es_isspace(cp)) word = 0;
        if (sc) {
            if (word && sc != word) space = 1;
            word = sc;
        }
        if (!es_neutral(cp) && !es_neutral(prev) && !es_same_voice(al, prev_al)) space = 1;
        if (space) at_strbuf_put(&b, " ", 1);
        at_strbuf_put(&b, text + i - k, k);
        prev = cp;
        prev_al = al;
    }
    char *out = at_strbuf_take(&b);
    if (!out) at_err_set(err, AT_E_NOMEM, "out of memory");
    return out;
}

/* Whether the voice whose language is lang ("en", "hyw") reads alphabet a
 * itself. */
static int es_own_script(const es_alphabet *a, const char *lang)
{
    char key[24];
    size_t n = strcspn(lang, "-_");
    if (n + 3 > sizeof key) return 0;
    snprintf(key, sizeof key, " %.*s ", (int)n, lang);
    return strstr(a->natives, key) || (a->only && !strstr(a->only, key));
}

/* The length of the run of prepared text at s that one voice reads, and in
 * *voice that voice: an alphabet's (see es_alphabets) or NULL for the
 * voice of language lang.  Blanks and ASCII punctuation go with the run
 * they are in; ASCII digits are the voice's. */
static size_t es_next_run(const char *s, size_t n, const char *lang, const char **voice)
{
    size_t i = 0;
    int known = 0;
    *voice = NULL;
    while (i < n) {
        uint32_t cp;
        size_t k = es_utf8(s + i, n - i, &cp);
        if (!es_neutral(cp)) {
            const es_alphabet *a = es_alphabet_of(cp);
            const char *al = a && !es_own_script(a, lang) ? a->voice : NULL;
            if (!known) {
                *voice = al;
                known = 1;
            } else if (!es_same_voice(al, *voice)) {
                break;
            }
        }
        i += k;
    }
    return i;
}

/* Python's str.strip(): the span of s[0..n) without surrounding whitespace. */
static void es_strip(const char **s, size_t *n)
{
    const char *p = *s, *end = *s + *n;
    uint32_t c;
    while (p < end) {
        size_t k = es_utf8(p, (size_t)(end - p), &c);
        if (!es_isspace(c)) break;
        p += k;
    }
    const char *q = end;
    while (q > p) {
        const char *b = q - 1;
        while (b > p && ((unsigned char)*b & 0xC0) == 0x80) b--;
        es_utf8(b, (size_t)(q - b), &c);
        if (!es_isspace(c)) break;
        q = b;
    }
    *s = p;
    *n = (size_t)(q - p);
}

typedef struct es_span {
    const char *p;
    size_t n;
} es_span;

/* A punctuation run kept aside: the line it belongs to and where it sits in
 * it (phonemizer's _MarkIndex). */
typedef struct es_mark {
    size_t line;
    es_span s;
    char pos; /* 'B'egin, 'E'nd, 'I'nside, 'A'lone */
} es_mark;

typedef struct es_split {
    es_span *chunks; /* text between the marks, empty ones dropped */
    es_mark *marks;
    size_t n_chunks, n_marks, cap;
} es_split;

static int es_push(es_split *sp, const es_span *chunk, const es_mark *mark)
{
    if (sp->n_chunks == sp->cap || sp->n_marks == sp->cap) {
        size_t cap = sp->cap ? sp->cap * 2 : 16;
        es_span *c = realloc(sp->chunks, cap * sizeof *c);
        if (c) sp->chunks = c;
        es_mark *m = realloc(sp->marks, cap * sizeof *m);
        if (m) sp->marks = m;
        if (!c || !m) return -1;
        sp->cap = cap;
    }
    if (chunk && chunk->n) sp->chunks[sp->n_chunks++] = *chunk;
    if (mark) sp->marks[sp->n_marks++] = *mark;
    return 0;
}

/* Punctuation.preserve() on one line: the marks are the maximal runs of
 * whitespace and marks that hold at least one mark (what the regex
 * (\s*[marks]+\s*)+ finds), the chunks what lies between them. */
static int es_preserve_line(es_split *sp, const char *line, size_t n, size_t num)
{
    const char *end = line + n, *p = line, *chunk = line;
    size_t first_mark = sp->n_marks;
    while (p < end) {
        const char *run = p, *q = p;
        int has_mark = 0;
        uint32_t c;
        size_t k;
        while (q < end && (k = es_utf8(q, (size_t)(end - q), &c)) && (es_isspace(c) || es_ismark(c))) {
            has_mark |= es_ismark(c);
            q += k;
        }
        if (q == run) { /* not a run: next character */
            p += es_utf8(p, (size_t)(end - p), &c);
            continue;
        }
        if (has_mark) {
            if (run == line && q == end && sp->n_marks == first_mark) { /* the line is punctuation only */
                es_mark m = {num, {run, (size_t)(q - run)}, 'A'};
                return es_push(sp, NULL, &m);
            }
            es_mark m = {num, {run, (size_t)(q - run)}, 'I'};
            if (run == line) m.pos = 'B';
            es_span c0 = {chunk, (size_t)(run - chunk)};
            if (es_push(sp, &c0, &m) < 0) return -1;
            chunk = q;
        }
        p = q;
    }
    /* Only the last mark may sit at the end (a first one at the start
     * keeps 'B', as phonemizer tests 'B' first). */
    if (sp->n_marks > first_mark) {
        es_mark *last = &sp->marks[sp->n_marks - 1];
        if (last->s.p + last->s.n == end && last->pos != 'B') last->pos = 'E';
    }
    es_span tail = {chunk, (size_t)(end - chunk)};
    return es_push(sp, &tail, NULL);
}

/* EspeakWrapper.text_to_phonemes(): IPA with '_' between phonemes, one
 * clause per call, the non-empty clauses joined by spaces, for the voice of
 * language code (loaded).  A run in an alphabet that is not the voice's own
 * is read by the voice of its language (see es_alphabets) and marked as
 * espeak-ng marks its own language switches: "(hy)baɹˈev(en-us)". */
static int es_text_to_phonemes(at_espeak_worker *w, const char *text, const char *code, at_strbuf *out,
                               at_err *err)
{
    char *prepared = es_prepare(text, err);
    if (!prepared) return AT_E_NOMEM;
    size_t n = strlen(prepared);
    int first = 1, rc = 0;
    for (size_t off = 0; rc == 0 && off < n;) {
        const char *run_voice;
        size_t len = es_next_run(prepared + off, n - off, code, &run_voice);
        char *ph = NULL;
        rc = at_espeak_worker_phonemes(w, run_voice ? run_voice : code, prepared + off, len, &ph, err);
        if (rc == 0 && *ph) {
            if (!first) at_strbuf_put(out, " ", 1);
            if (run_voice) at_strbuf_printf(out, "(%s)", run_voice);
            at_strbuf_str(out, ph);
            if (run_voice) at_strbuf_printf(out, "(%s)", code);
            first = 0;
        }
        free(ph);
        off += len;
    }
    free(prepared);
    if (rc == 0 && out->oom) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    return rc;
}

/* EspeakBackend._postprocess_line() with strip=True, with_stress=True, no
 * tie, phone separator "" and word separator " ": clause lines joined,
 * each space-separated word stripped and its '_' removed.  (The backend's
 * '_+' -> '_' and '_ ' -> ' ' substitutions change nothing once every '_'
 * goes.)  Replaces *s. */
static int es_postprocess(at_strbuf *s, at_err *err)
{
    const char *p = s->p ? s->p : "";
    size_t n = s->n;
    es_strip(&p, &n);
    at_strbuf a = {0}; /* line.strip().replace('\n', ' ').replace('  ', ' ') */
    for (size_t i = 0; i < n; i++) {
        char c = p[i] == '\n' ? ' ' : p[i];
        char d = i + 1 < n ? (p[i + 1] == '\n' ? ' ' : p[i + 1]) : 0;
        at_strbuf_put(&a, &c, 1);
        if (c == ' ' && d == ' ') i++;
    }
    at_strbuf o = {0};
    if (a.n) {
        const char *w = a.p, *end = a.p + a.n;
        for (;;) {
            const char *sp = memchr(w, ' ', (size_t)(end - w));
            const char *we = sp ? sp : end;
            const char *ws = w;
            size_t wn = (size_t)(we - w);
            es_strip(&ws, &wn);
            for (size_t i = 0; i < wn; i++)
                if (ws[i] != '_') at_strbuf_put(&o, ws + i, 1);
            if (!sp) break;
            at_strbuf_put(&o, " ", 1);
            w = sp + 1;
        }
    }
    int oom = a.oom || o.oom;
    at_strbuf_free(&a);
    at_strbuf_free(s);
    *s = o;
    if (oom) return at_err_set(err, AT_E_NOMEM, "out of memory");
    return 0;
}

/* Punctuation.restore() with strip=True and word separator " ": puts the
 * marks back between the phonemised chunks; one output line per input
 * line.  Consumes text[]. */
static int es_restore(at_strbuf *text, size_t nt, const es_mark *marks, size_t nm, at_strbuf *out,
                      at_err *err)
{
    size_t ti = 0, mi = 0, pos = 0, lines = 0;
#define ES_LINE(buf, len)                                                                                    \
    do {                                                                                                     \
        if (lines++) at_strbuf_put(out, "\n", 1);                                                            \
        at_strbuf_put(out, (buf), (len));                                                                    \
    } while (0)
    while (ti < nt || mi < nm) {
        if (mi == nm) {
            for (; ti < nt; ti++) ES_LINE(text[ti].p, text[ti].n);
        } else if (ti == nt) {
            if (lines++) at_strbuf_put(out, "\n", 1);
            for (; mi < nm; mi++) at_strbuf_put(out, marks[mi].s.p, marks[mi].s.n);
        } else if (marks[mi].line == pos) {
            const es_mark *m = &marks[mi++];
            at_strbuf *t = &text[ti];
            if (t->n && t->p[t->n - 1] == ' ') t->p[--t->n] = '\0';
            if (m->pos == 'B') {
                at_strbuf b = {0};
                at_strbuf_put(&b, m->s.p, m->s.n);
                at_strbuf_put(&b, t->p ? t->p : "", t->n);
                at_strbuf_free(t);
                *t = b;
            } else if (m->pos == 'E') {
                if (lines++) at_strbuf_put(out, "\n", 1);
                at_strbuf_put(out, t->p ? t->p : "", t->n);
                at_strbuf_put(out, m->s.p, m->s.n);
                ti++;
                pos++;
            } else if (m->pos == 'A') {
                ES_LINE(m->s.p, m->s.n);
                pos++;
            } else if (nt - ti == 1) { /* 'I' whose right side gave nothing */
                at_strbuf_put(t, m->s.p, m->s.n);
            } else { /* 'I': this chunk, the mark and the next one become one */
                at_strbuf b = {0};
                at_strbuf_put(&b, t->p ? t->p : "", t->n);
                at_strbuf_put(&b, m->s.p, m->s.n);
                at_strbuf_put(&b, text[ti + 1].p ? text[ti + 1].p : "", text[ti + 1].n);
                at_strbuf_free(&text[ti + 1]);
                text[ti + 1] = b;
                ti++;
            }
            if (t->oom) return at_err_set(err, AT_E_NOMEM, "out of memory");
        } else {
            ES_LINE(text[ti].p, text[ti].n);
            ti++;
            pos++;
        }
    }
#undef ES_LINE
    if (out->oom) return at_err_set(err, AT_E_NOMEM, "out of memory");
    for (size_t i = 0; i < nt; i++)
        if (text[i].oom) return at_err_set(err, AT_E_NOMEM, "out of memory");
    return 0;
}

/* The worker of at_espeak_phonemize, which has no engine to hold one:
 * started on first use and kept for the life of the process (it exits when
 * the process does and its socket closes). */
static pthread_mutex_t es_default_mu = PTHREAD_MUTEX_INITIALIZER;
static at_espeak_worker *es_default;

static at_espeak_worker *es_default_worker(at_err *err)
{
    pthread_mutex_lock(&es_default_mu);
    if (!es_default) es_default = at_espeak_worker_new(NULL, err);
    at_espeak_worker *w = es_default;
    pthread_mutex_unlock(&es_default_mu);
    return w;
}

static int es_phonemize(at_espeak_worker *w, const char *voice, const char *text, char **out, at_err *err)
{
    if (out) *out = NULL;
    if (!voice || !*voice || !text || !out)
        return at_err_set(err, AT_E_INVALID, "phonemize: missing argument");
    if (strlen(voice) >= 64) return at_err_set(err, AT_E_INVALID, "phonemize: voice name too long");
    size_t len = strlen(text);
    if (len > AT_ESPEAK_PHONEMIZE_MAX)
        return at_err_set(err, AT_E_TOO_LARGE, "text to phonemize is longer than %d bytes",
                          AT_ESPEAK_PHONEMIZE_MAX);
    if (!at_utf8_valid(text, len))
        return at_err_set(err, AT_E_INVALID, "text to phonemize is not valid UTF-8");

    /* phonemize(): text.strip('\n').split('\n'), blank lines dropped, then
     * the punctuation of each line kept aside. */
    es_split sp = {0};
    int rc = 0;
    const char *p = text, *end = text + len;
    while (p < end && *p == '\n') p++;
    while (end > p && end[-1] == '\n') end--;
    size_t num = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *s = p;
        size_t n = (size_t)(le - p);
        es_strip(&s, &n);
        if (n && es_preserve_line(&sp, p, (size_t)(le - p), num++) < 0)
            rc = at_err_set(err, AT_E_NOMEM, "out of memory");
        p = nl ? nl + 1 : end;
    }

    at_strbuf *ph = NULL;
    if (rc == 0 && !(ph = calloc(sp.n_chunks ? sp.n_chunks : 1, sizeof *ph)))
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    char *chunk = rc == 0 ? malloc(len + 1) : NULL;
    if (rc == 0 && !chunk) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    if (rc == 0 && !w && !(w = es_default_worker(err))) rc = AT_E_ENGINE;
    if (rc == 0 && sp.n_chunks == 0) { /* an unknown voice is an error even without text */
        char *none = NULL;
        rc = at_espeak_worker_phonemes(w, voice, "", 0, &none, err);
        free(none);
    }
    for (size_t i = 0; rc == 0 && i < sp.n_chunks; i++) {
        memcpy(chunk, sp.chunks[i].p, sp.chunks[i].n);
        chunk[sp.chunks[i].n] = '\0';
        rc = es_text_to_phonemes(w, chunk, voice, &ph[i], err);
    }
    free(chunk);
    for (size_t i = 0; rc == 0 && i < sp.n_chunks; i++) {
        if (ph[i].n && !at_utf8_valid(ph[i].p, ph[i].n))
            rc = at_err_set(err, AT_E_ENGINE, "espeak-ng returned phonemes that are not UTF-8");
        if (rc == 0) rc = es_postprocess(&ph[i], err);
    }
    at_strbuf o = {0};
    if (rc == 0) rc = es_restore(ph, sp.n_chunks, sp.marks, sp.n_marks, &o, err);
    for (size_t i = 0; ph && i < sp.n_chunks; i++) at_strbuf_free(&ph[i]);
    free(ph);
    free(sp.chunks);
    free(sp.marks);
    if (rc == 0 && !(*out = at_strbuf_take(&o))) rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    at_strbuf_free(&o);
    return rc;
}

int at_espeak_phonemize(const char *voice, const char *text, char **out, at_err *err)
{
    return es_phonemize(NULL, voice, text, out, err);
}

int at_espeak_phonemizer(void *user, const char *language, const char *text, char **out, at_err *err)
{
    return es_phonemize(user, language, text, out, err);
}
