/* espeak-ng and flite: audible output of plausible length, speed,
 * cancellation, voice lists, flite speech understood by pocketsphinx, and
 * no lock held while the caller is slow. */
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <unistd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "common/wer.h"
#include "engines/asr/pocketsphinx.h"
#include "engines/tts/espeak.h"
#include "engines/tts/espeak_worker.h"
#include "engines/tts/flite.h"

#define SENTENCE "Hello world, this is a short test of the speech engine."

typedef struct {
    int16_t *pcm;
    size_t n, cap;
    int chunks;
    int cancel_after; /* stop after this many chunks; 0 = never */
} sink;

static int sink_cb(void *user, const int16_t *pcm, size_t n)
{
    sink *s = user;
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->pcm = realloc(s->pcm, s->cap * sizeof *s->pcm);
        assert_non_null(s->pcm);
    }
    memcpy(s->pcm + s->n, pcm, n * sizeof *pcm);
    s->n += n;
    s->chunks++;
    return s->cancel_after && s->chunks >= s->cancel_after;
}

static double rms(const sink *s)
{
    double acc = 0;
    for (size_t i = 0; i < s->n; i++) acc += (double)s->pcm[i] * s->pcm[i];
    return s->n ? sqrt(acc / (double)s->n) : 0;
}

static void say(at_tts_engine *e, const char *voice, const char *text, float speed, sink *s, int expect)
{
    at_err err;
    const at_tts_voice *v = at_tts_engine_find_voice(e, voice);
    assert_non_null(v);
    int rc = at_tts_synthesize(e, v, text, speed, sink_cb, s, &err);
    if (rc != expect) fprintf(stderr, "synthesize: %d %s\n", rc, err.msg);
    assert_int_equal(rc, expect);
}

static void check_engine(at_tts_engine *e, const char *voice)
{
    const at_tts_voice *v = at_tts_engine_find_voice(e, voice);
    assert_non_null(v);
    sink normal = {0}, fast = {0}, cancelled = {.cancel_after = 1};
    say(e, voice, SENTENCE, 1.0f, &normal, 0);
    double secs = (double)normal.n / v->sample_rate;
    printf("  %s/%s: %.2f s, rms %.0f, %d chunks\n", at_tts_engine_name(e), voice, secs, rms(&normal),
           normal.chunks);
    assert_true(secs > 1.0 && secs < 8.0);
    assert_true(rms(&normal) > 500.0);
    assert_true(normal.chunks >= 2); /* streamed, not one blob */
    say(e, voice, SENTENCE, 2.0f, &fast, 0);
    assert_true(fast.n < normal.n * 0.75);
    assert_true(rms(&fast) > 500.0);
    say(e, voice, SENTENCE, 1.0f, &cancelled, AT_E_CANCELLED);
    assert_int_equal(cancelled.chunks, 1);
    assert_true(cancelled.n < normal.n / 2);
    free(normal.pcm);
    free(fast.pcm);
    free(cancelled.pcm);
}

static void test_espeak(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    assert_string_equal(at_tts_engine_name(e), "espeak-ng");
    size_t n;
    const at_tts_voice *vs = at_tts_engine_voices(e, &n);
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) assert_string_not_equal(vs[i].name, vs[j].name);
    const at_tts_voice *en = at_tts_engine_find_voice(e, "en");
    assert_non_null(at_tts_engine_find_voice(e, "es"));
    assert_non_null(at_tts_engine_find_voice(e, "fr"));
    assert_non_null(at_tts_engine_find_voice(e, "de"));
    assert_non_null(en);
    assert_string_equal(en->language, "en");
    assert_int_equal(en->sample_rate, 22050);
    check_engine(e, "en");

    sink es = {0};
    say(e, "es", "Hola, ¿cómo estás? La casa es grande.", 1.0f, &es, 0);
    assert_true(rms(&es) > 500.0);
    free(es.pcm);
    /* Odd input: still speaks or fails cleanly, never crashes. */
    sink odd = {0};
    say(e, "en", "\xff\xfe <speak> & 1234 \x01", 1.0f, &odd, 0);
    free(odd.pcm);
    at_tts_voice bogus = {.name = "no-such-voice"};
    assert_int_equal(at_tts_synthesize(e, &bogus, "hi", 1.0f, sink_cb, &odd, &err), AT_E_UNSUPPORTED);
    at_tts_engine_free(e);
    /* The library's global state survives a second engine lifetime. */
    e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    sink again = {0};
    say(e, "en", "again", 1.0f, &again, 0);
    assert_true(again.n > 0);
    free(again.pcm);
    at_tts_engine_free(e);
}

static void test_flite(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *e = at_tts_flite_new(&err);
    assert_non_null(e);
    size_t n;
    const at_tts_voice *vs = at_tts_engine_voices(e, &n);
    assert_int_equal(n, 4);
    const char *names[] = {"slt", "kal", "awb", "rms"};
    for (size_t i = 0; i < 4; i++) {
        const at_tts_voice *v = at_tts_engine_find_voice(e, names[i]);
        assert_non_null(v);
        assert_string_equal(v->language, "en");
        assert_int_equal(v->sample_rate, 16000);
    }
    (void)vs;
    assert_string_equal(at_tts_engine_find_voice(e, "slt")->gender, "female");
    check_engine(e, "slt");
    for (size_t i = 1; i < 4; i++) { /* every voice speaks at its rate */
        sink s = {0};
        say(e, names[i], "Good morning.", 1.0f, &s, 0);
        assert_true(rms(&s) > 300.0);
        free(s.pcm);
    }
    at_tts_engine_free(e);
}

/* Long runs of punctuation: flite's tokenizer corrupts its heap on a
 * run of 313 or more trailing punctuation characters (the process aborts
 * with "malloc(): invalid size"), so such runs must never reach it.  The
 * words around the run are still spoken; espeak-ng gets the same input. */
static char *punct_text(const char *before, const char *unit, int reps, const char *after)
{
    size_t n = strlen(before) + strlen(unit) * (size_t)reps + strlen(after) + 1;
    char *t = malloc(n);
    assert_non_null(t);
    strcpy(t, before);
    for (int i = 0; i < reps; i++) strcat(t, unit);
    strcat(t, after);
    return t;
}

static void test_punctuation_runs(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *engines[2] = {at_tts_flite_new(&err), at_tts_espeak_new(NULL, &err)};
    const char *voices[2] = {"slt", "en"};
    const struct {
        const char *before, *unit, *after;
        int reps;
    } cases[] = {{"", ".", "", 313},         {"", "!", "", 400},
                 {"", ",", "", 1000},        {"hello", ".", " world", 400},
                 {"hello", ".,!?", "", 100}, {"one", "?", " two three", 5000}};
    for (int ei = 0; ei < 2; ei++) {
        assert_non_null(engines[ei]);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            char *t = punct_text(cases[c].before, cases[c].unit, cases[c].reps, cases[c].after);
            sink s = {0};
            say(engines[ei], voices[ei], t, 1.0f, &s, 0);
            /* words are still spoken */
            if (cases[c].before[0]) assert_true(rms(&s) > 300.0);
            free(s.pcm);
            free(t);
        }
        at_tts_engine_free(engines[ei]);
    }
}

/* What flite says, pocketsphinx should mostly hear. */
static void test_flite_to_pocketsphinx(void **state)
{
    (void)state;
    const char *text = "please call me tomorrow morning at nine o'clock";
    at_err err;
    at_tts_engine *t = at_tts_flite_new(&err);
    assert_non_null(t);
    sink s = {0};
    say(t, "slt", text, 1.0f, &s, 0);
    at_tts_engine_free(t);
    size_t pad = 8000, n = s.n + 2 * pad;
    float *pcm = calloc(n, sizeof *pcm);
    for (size_t i = 0; i < s.n; i++) pcm[pad + i] = s.pcm[i] / 32768.0f;
    free(s.pcm);

    at_asr_engine *a = at_asr_pocketsphinx_new(NULL, &err);
    assert_non_null(a);
    at_asr_result r;
    assert_int_equal(at_asr_transcribe(a, pcm, n, NULL, &r, &err), 0);
    char *hyp = at_asr_result_text(&r);
    double wer = at_test_wer(text, hyp);
    printf("  flite->pocketsphinx: \"%s\" WER %.3f\n", hyp, wer);
    assert_true(wer <= 0.45);
    free(hyp);
    at_asr_result_free(&r);
    at_asr_engine_free(a);
    free(pcm);
}

/* A caller blocked in its callback (a client that stopped reading) must
 * not hold the engine's lock: another request on the same voice (flite
 * locks per voice, espeak-ng globally) finishes meanwhile. */
typedef struct blocker {
    at_tts_engine *e;
    const at_tts_voice *v;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, released, left, rc;
} blocker;

static int block_cb(void *user, const int16_t *pcm, size_t n)
{
    (void)pcm;
    (void)n;
    blocker *b = user;
    pthread_mutex_lock(&b->mu);
    b->entered = 1;
    pthread_cond_broadcast(&b->cv);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    while (!b->released && pthread_cond_timedwait(&b->cv, &b->mu, &dl) == 0) {}
    b->left = 1;
    pthread_mutex_unlock(&b->mu);
    return 1; /* then give up, as a server does with a client that left */
}

static void *block_main(void *p)
{
    blocker *b = p;
    at_err err;
    b->rc = at_tts_synthesize(b->e, b->v, "The first sentence. And a second one, never heard.", 1.0f,
                              block_cb, b, &err);
    return NULL;
}

static void test_blocked_caller_holds_no_lock(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *engines[2] = {at_tts_flite_new(&err), at_tts_espeak_new(NULL, &err)};
    const char *voices[2] = {"slt", "en"};
    for (int i = 0; i < 2; i++) {
        assert_non_null(engines[i]);
        blocker b = {.e = engines[i], .v = at_tts_engine_find_voice(engines[i], voices[i])};
        pthread_mutex_init(&b.mu, NULL);
        pthread_cond_init(&b.cv, NULL);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, block_main, &b), 0);
        pthread_mutex_lock(&b.mu);
        while (!b.entered) pthread_cond_wait(&b.cv, &b.mu);
        pthread_mutex_unlock(&b.mu);
        sink s = {0};
        say(engines[i], voices[i], "Meanwhile this one is spoken.", 1.0f, &s, 0);
        pthread_mutex_lock(&b.mu);
        int still_blocked = !b.left;
        b.released = 1;
        pthread_cond_broadcast(&b.cv);
        pthread_mutex_unlock(&b.mu);
        pthread_join(t, NULL);
        assert_true(still_blocked);
        assert_true(s.n > 8000);
        assert_int_equal(b.rc, AT_E_CANCELLED);
        free(s.pcm);
        pthread_mutex_destroy(&b.mu);
        pthread_cond_destroy(&b.cv);
        at_tts_engine_free(engines[i]);
    }
}

/* A word mixing letters of two scripts that are not the voice's made
 * libespeak-ng 1.51 spell it switching language per letter and read a
 * dictionary it had just freed (heap-use-after-free under ASan, found by
 * fuzz_tts_text): an NKo letter then an Armenian one, alone, after invalid
 * UTF-8, and inside English.  Each is spoken, and the English around it
 * too; the phonemiser of the neural voices likewise. */
static void test_espeak_mixed_scripts(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    static const char *const texts[] = {"\xDF\x96\xD5\x8C", "\x95\x8C\xDF\x96\xD5\x8C\x9E\x8C",
                                        "He\x95\x8C\xDF\x96\xD5\x8C\x9E\x8C t et. Is it?",
                                        "Hello \xDF\x96\xD5\x8C\xCE\xB1\xD0\xB6 world",
                                        /* U+FFFD (or an invalid byte) either side of a
                                         * full stop, after an NKo letter and before an
                                         * Armenian one: the same library fault */
                                        "Hel\xFFl\xDF\x8C\xFF\xFF\xFF\xFF.\xFF\xFF\x96\xD5\x8E\xD5",
                                        "Hel l\xDF\x8C \xEF\xBF\xBD.\xEF\xBF\xBD \xD5\x8E"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        sink s = {0};
        say(e, "en", texts[i], 1.0f, &s, 0);
        assert_true(s.n > 0);
        free(s.pcm);
    }
    /* the phonemiser of the neural voices goes through the same code */
    char *ph = NULL;
    assert_int_equal(at_espeak_phonemize("en-us", "a \xDF\x96\xD5\x8C b", &ph, &err), 0);
    assert_non_null(strstr(ph, "(hy)")); /* the Armenian letter is still spoken, in Armenian */
    free(ph);
    at_tts_engine_free(e);
}

/* Text in an alphabet that libespeak-ng 1.51 reads with a language of its
 * own, given to a voice whose script it is not: a digit or a sign the
 * second translator cannot say, or a letter when the voice has no name for
 * the alphabet, made the library free the translator in use and read its
 * dictionary (heap-use-after-free under ASan, found by fuzz_tts_text):
 * a circled letter glued to an Armenian one, a Bengali letter and digit, a
 * Devanagari abbreviation sign, a Kannada sign alone, Armenian for a German
 * voice, Bengali digits for a French one, Cyrillic after a circled letter
 * for a Georgian one (which reads Cyrillic as Russian).  Each is spoken,
 * by the voice of its alphabet's language, and the voice's own words
 * around it by the voice; the phonemiser marks the switch as espeak-ng
 * marks its own. */
static void test_espeak_foreign_alphabets(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    static const struct {
        const char *voice, *text;
    } cases[] = {
        {"en", "\xE2\x92\xB9\xD5\x8E"},                 /* circled D, Armenian vew */
        {"en", "Hel l\xDF\x8C . \xE2\x92\xB9\xD5\x8E"}, /* the same after NKo and a full stop */
        {"en", "\xE0\xA6\x95\xE0\xA7\xA6"},             /* Bengali ka, digit zero */
        {"en", "\xE0\xA4\x95\xE0\xA5\xB0"},             /* Devanagari ka, abbreviation sign */
        {"en", "\xE0\xB2\x80"},                         /* Kannada spacing candrabindu */
        {"de", "\xD5\x8E"},                             /* an Armenian letter, German voice */
        {"fr", "12 \xE0\xA7\xA7\xE0\xA7\xA8 ok"},       /* Bengali digits, French voice */
        {"ka", "\xE2\x92\xB9\xD0\xB6"},                 /* circled D, Cyrillic zhe, Georgian voice */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sink s = {0};
        say(e, cases[i].voice, cases[i].text, 1.0f, &s, 0);
        assert_true(s.n > 0);
        free(s.pcm);
    }
    /* An Armenian voice reads Armenian as its own, no switch. */
    char *ph = NULL;
    assert_int_equal(at_espeak_phonemize("hy", "\xD4\xB2\xD5\xA1\xD6\x80\xD5\xA5\xD6\x82", &ph, &err), 0);
    assert_null(strchr(ph, '('));
    free(ph);
    /* English digits stay English, Bengali ones are read in Bengali. */
    assert_int_equal(at_espeak_phonemize("en-us", "1 \xE0\xA7\xA7\xE0\xA7\xA8 3", &ph, &err), 0);
    assert_non_null(strstr(ph, "w\xCB\x88\xCA\x8Cn (bn)"));
    assert_non_null(strstr(ph, "(en-us) \xCE\xB8\xC9\xB9\xCB\x88i\xCB\x90"));
    free(ph);
    at_tts_engine_free(e);
}

/* Fills the stack below the caller with a pattern, so the library's
 * uninitialised records hold the same garbage on every run when it runs in
 * this process. */
static __attribute__((noinline)) void poison_stack(unsigned char byte)
{
    unsigned char buf[256 * 1024];
    memset(buf, byte, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

/* A process's state letter and thread count from /proc (0 when gone). */
static char proc_state(const char *pid, int *ppid, long *threads)
{
    char path[300], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')'); /* the name may hold anything */
    char st;
    if (!rp || sscanf(rp + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %ld", &st,
                      ppid, threads) != 3)
        return 0;
    return st;
}

/* Sends sig to this process's children (espeak-ng workers) and waits
 * until they are dead, every thread gone (the socket closes with the last
 * one); returns how many. */
static int signal_workers(int sig)
{
    int killed = 0, ppid;
    long threads;
    char kids[16][32];
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) && killed < 16) {
        char st = proc_state(de->d_name, &ppid, &threads);
        if (st && st != 'Z' && ppid == getpid() && kill(atoi(de->d_name), sig) == 0)
            snprintf(kids[killed++], sizeof kids[0], "%.31s", de->d_name);
    }
    closedir(d);
    for (int i = 0; i < killed; i++) /* the engine reaps it */
        for (int tries = 0; tries < 2000; tries++) {
            char st = proc_state(kids[i], &ppid, &threads);
            if (!st || (st == 'Z' && threads <= 1)) break;
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    return killed;
}

static int kill_workers(void) { return signal_workers(SIGKILL); }

typedef struct signal_once {
    int sig;
    int sent;
} signal_once;

static int signal_workers_cb(void *user, const int16_t *pcm, size_t n)
{
    (void)pcm;
    (void)n;
    signal_once *o = user;
    if (!o->sent) o->sent = signal_workers(o->sig);
    return 0;
}

/* The worker dies while idle (killed from outside): the next request gets
 * a new one.  It dies during a request: that request fails with a message
 * that says so, the next one works.  Phonemes the same. */
static void test_espeak_worker_restarts(void **state)
{
    (void)state;
    at_err err;
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    assert_int_equal(kill_workers(), 1);
    sink s = {0};
    say(e, "en", SENTENCE, 1.0f, &s, 0);
    assert_true(rms(&s) > 500.0);
    free(s.pcm);
    at_tts_engine_free(e);

    /* Engines hand audio over a sentence at a time, after the worker is
     * done with it, so this goes to the worker itself, with text whose
     * audio (about 30 s, 1.3 MB) cannot all wait in the socket's buffer:
     * the worker is still speaking when it dies. */
    at_espeak_worker *w = at_espeak_worker_new(NULL, &err);
    assert_non_null(w);
    char longer[11 * sizeof SENTENCE];
    longer[0] = '\0';
    for (int i = 0; i < 10; i++) strcat(strcat(longer, SENTENCE), " ");
    static const struct {
        int sig;
        const char *msg;
    } deaths[] = {
        {SIGKILL, "espeak-ng's worker was killed during this request; it restarts"},
        {SIGSEGV, "espeak-ng crashed on this text (signal 11, Segmentation fault); its worker restarts"},
    };
    for (size_t d = 0; d < sizeof deaths / sizeof deaths[0]; d++) {
        signal_once once = {deaths[d].sig, 0};
        int rc = at_espeak_worker_synth(w, "en", NULL, 175, longer, strlen(longer), signal_workers_cb, &once,
                                        &err);
        assert_int_equal(rc, AT_E_ENGINE);
        assert_int_equal(once.sent, 1);
        printf("  %s\n", err.msg);
        assert_string_equal(err.msg, deaths[d].msg);
        sink again = {0};
        assert_int_equal(
            at_espeak_worker_synth(w, "en", NULL, 175, SENTENCE, strlen(SENTENCE), sink_cb, &again, &err), 0);
        assert_true(rms(&again) > 500.0);
        free(again.pcm);
    }
    at_espeak_worker_free(w);

    char *ph = NULL;
    assert_int_equal(at_espeak_phonemize("en-us", "hello", &ph, &err), 0);
    free(ph);
    assert_int_equal(kill_workers(), 1);
    assert_int_equal(at_espeak_phonemize("en-us", "hello", &ph, &err), 0);
    assert_string_equal(ph, "həlˈoʊ");
    free(ph);
}

static void *churn_malloc(void *arg)
{
    atomic_int *stop = arg;
    void *keep[64] = {0};
    for (unsigned i = 0; !atomic_load(stop); i++) {
        free(keep[i % 64]);
        keep[i % 64] = malloc(16 + (i * 2654435761u) % 4096);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

/* Services start workers while their other threads allocate.  A worker
 * forked without exec inherited the allocator locks those threads held;
 * under AddressSanitizer about one start in a dozen then hung until the
 * 30 s timeout and the service never became ready. */
static void test_espeak_worker_starts_while_threads_allocate(void **state)
{
    (void)state;
    atomic_int stop = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, churn_malloc, &stop), 0);
    at_err err;
    int started = 0;
    for (int i = 0; i < 24; i++) {
        at_espeak_worker *w = at_espeak_worker_new(NULL, &err);
        if (!w) {
            printf("  start %d: %s\n", i, err.msg);
            break;
        }
        char *ph = NULL;
        if (at_espeak_worker_phonemes(w, "en-us", "hello", 5, &ph, &err) == 0)
            started++;
        else
            printf("  worker %d: %s\n", i, err.msg);
        free(ph);
        at_espeak_worker_free(w);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    assert_int_equal(started, 24);
}

/* libespeak-ng 1.51 reads uninitialised match records (TranslateRules)
 * when a word starts with a symbol that a voice's rules do not cover, and
 * it can crash on such text (Hindi "***" segfaults with Debian's library,
 * depending on what the stack holds: in this process, after poison_stack,
 * it did every time).  The request fails or speaks; the process and the
 * engine live on. */
static void test_espeak_library_crash_costs_one_request(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"hi", "***"},          {"hi", "**************"}, {"hi", "{*{."},   {"hi", "{*{{{{{{{{{{{."},
        {"hi", "$%*+= $%*+="},  {"smj", "#%&*+/=@\\^"},   {"om", "%*+= %"}, {"as", "$%+= $"},
        {"ky", "#$%&)*+/<=>@"}, {"hy", "$$$ $"},
    };
    at_err err;
    at_tts_engine *e = at_tts_espeak_new(NULL, &err);
    assert_non_null(e);
    int failed = 0;
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const at_tts_voice *v = at_tts_engine_find_voice(e, cases[i][0]);
            assert_non_null(v);
            sink s = {0};
            kill_workers(); /* a fresh worker for every text */
            poison_stack(round == 0 ? 0xA5 : round == 1 ? 0xFF : 0x00);
            int rc = at_tts_synthesize(e, v, cases[i][1], 1.0f, sink_cb, &s, &err);
            if (rc != 0) {
                assert_int_equal(rc, AT_E_ENGINE);
                assert_non_null(strstr(err.msg, "espeak-ng crashed on this text (signal "));
                failed++;
            }
            free(s.pcm);
        }
    printf("  %d of %d requests failed in the library\n", failed, 3 * (int)(sizeof cases / sizeof cases[0]));
    sink ok = {0};
    say(e, "en", SENTENCE, 1.0f, &ok, 0);
    assert_true(rms(&ok) > 500.0);
    free(ok.pcm);
    at_tts_engine_free(e);
}

/* A sentence's end followed by a long run of blanks: every piece the
 * splitter hands an engine fits its AT_TTS_SENTENCE_MAX-byte buffer (the
 * blanks once went with the sentence, whatever their length, and
 * overflowed it), and both sentences are still spoken. */
static void test_sentence_then_blanks(void **state)
{
    (void)state;
    static const char *const blanks[] = {" ", "\n", "\t", " \r\n"};
    for (size_t b = 0; b < sizeof blanks / sizeof blanks[0]; b++) {
        for (int reps = 1; reps <= 2000; reps = reps * 3 + 1) {
            char *t = punct_text("Hi.", blanks[b], reps, "there.");
            size_t n = strlen(t), off = 0, pieces = 0;
            while (off < n) {
                size_t len = at_tts_sentence_len(t + off, n - off);
                if (len == 0 || len > AT_TTS_SENTENCE_MAX)
                    fail_msg("blank \"%s\" x %d: piece %zu at %zu has %zu bytes", blanks[b], reps, pieces,
                             off, len);
                off += len;
                pieces++;
            }
            free(t);
        }
    }
    at_err err;
    at_tts_engine *engines[2] = {at_tts_flite_new(&err), at_tts_espeak_new(NULL, &err)};
    const char *voices[2] = {"slt", "en"};
    char *t = punct_text("Hello there.", " ", 1500, "How are you?");
    for (int ei = 0; ei < 2; ei++) {
        assert_non_null(engines[ei]);
        sink alone = {0}, s = {0};
        say(engines[ei], voices[ei], "Hello there. How are you?", 1.0f, &alone, 0);
        say(engines[ei], voices[ei], t, 1.0f, &s, 0);
        assert_true(rms(&s) > 300.0);
        assert_true(s.n > alone.n * 0.8 && s.n < alone.n * 1.25); /* both sentences, no blank audio */
        free(alone.pcm);
        free(s.pcm);
        at_tts_engine_free(engines[ei]);
    }
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_espeak),
        cmocka_unit_test(test_espeak_mixed_scripts),
        cmocka_unit_test(test_espeak_foreign_alphabets),
        cmocka_unit_test(test_espeak_library_crash_costs_one_request),
        cmocka_unit_test(test_espeak_worker_restarts),
        cmocka_unit_test(test_espeak_worker_starts_while_threads_allocate),
        cmocka_unit_test(test_flite),
        cmocka_unit_test(test_punctuation_runs),
        cmocka_unit_test(test_sentence_then_blanks),
        cmocka_unit_test(test_flite_to_pocketsphinx),
        cmocka_unit_test(test_blocked_caller_holds_no_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
