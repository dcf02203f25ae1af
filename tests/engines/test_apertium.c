/* Apertium through persistent null-flush pipelines: real translations,
 * pair discovery, concurrency, recovery from dead or stuck pipelines. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engines/mt/apertium.h"

typedef struct {
    at_mt_engine *eng;
    at_mt_apertium *ap;
} fixture;

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    at_err err;
    fx->eng = at_mt_apertium_new_ex(NULL, 20000, &fx->ap, &err);
    if (!fx->eng) {
        fprintf(stderr, "apertium: %s\n", err.msg);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    at_mt_engine_free(fx->eng);
    free(fx);
    return 0;
}

static char *tr(fixture *fx, const char *s, const char *t, const char *text)
{
    char *out = NULL;
    at_err err;
    int rc = at_mt_translate(fx->eng, s, t, text, &out, &err);
    if (rc) fprintf(stderr, "translate failed: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    return out;
}

static void test_pairs(void **state)
{
    fixture *fx = *state;
    assert_string_equal(at_mt_engine_name(fx->eng), "apertium");
    assert_true(at_mt_engine_has_pair(fx->eng, "en", "es"));
    assert_true(at_mt_engine_has_pair(fx->eng, "es", "en"));
    assert_true(at_mt_engine_has_pair(fx->eng, "es", "en_US"));
    assert_false(at_mt_engine_has_pair(fx->eng, "en", "fr"));
    assert_int_equal(at_mt_apertium_running(fx->ap, "en", "es"), 0); /* lazy */
}

static void test_en_es(void **state)
{
    fixture *fx = *state;
    char *o = tr(fx, "en", "es", "Hello, how are you?");
    assert_non_null(strcasestr(o, "hola"));
    assert_int_equal(o[0], 'H'); /* no leading blank from apertium */
    free(o);
    o = tr(fx, "en", "es", "The house is big.");
    assert_non_null(strcasestr(o, "casa"));
    assert_non_null(strcasestr(o, "grande"));
    free(o);
    assert_true(at_mt_apertium_running(fx->ap, "en", "es") > 3);
}

static void test_es_en(void **state)
{
    fixture *fx = *state;
    char *o = tr(fx, "es", "en", "La casa es grande.");
    assert_non_null(strcasestr(o, "house"));
    assert_non_null(strcasestr(o, "big"));
    free(o);
    o = tr(fx, "es", "en_US", "El perro come.");
    assert_non_null(strcasestr(o, "dog"));
    free(o);
}

static void test_unknown_pair(void **state)
{
    fixture *fx = *state;
    char *out = NULL;
    at_err err;
    assert_int_equal(at_mt_translate(fx->eng, "en", "fr", "Hello", &out, &err), AT_E_UNSUPPORTED);
    assert_null(out);
    assert_non_null(strstr(err.msg, "en-es"));
    assert_non_null(strstr(err.msg, "es-en"));
    assert_int_equal(at_mt_translate(fx->eng, "en", "es", "", &out, &err), AT_E_INVALID);
}

static void test_unknown_words_and_markup(void **state)
{
    fixture *fx = *state;
    /* Unknown words come back without apertium's '*' marks. */
    char *o = tr(fx, "en", "es", "My xyzzyq dog eats.");
    assert_non_null(strstr(o, "xyzzyq"));
    assert_null(strchr(o, '*'));
    assert_null(strchr(o, '#'));
    free(o);
    /* Characters apertium reserves are the user's text and survive. */
    o = tr(fx, "en", "es", "I have 5 * stars, #tags, @user, [x], <b>, 7\\8 and ~ $5 {y}^.");
    const char *keep[] = {"*", "#", "@", "[x]", "<b>", "7\\8", "~", "$5", "{y}^"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        if (!strstr(o, keep[i])) fprintf(stderr, "missing %s in: %s\n", keep[i], o);
        assert_non_null(strstr(o, keep[i]));
    }
    free(o);
}

static void test_layout_and_odd_input(void **state)
{
    fixture *fx = *state;
    char *o = tr(fx, "en", "es", "The dog eats.\nThe cat sleeps.\n\n\tThe end.");
    assert_non_null(strcasestr(o, "perro"));
    assert_non_null(strcasestr(o, "gato"));
    assert_non_null(strstr(o, ".\n"));
    assert_non_null(strstr(o, "\n\n\t"));
    free(o);
    o = tr(fx, "en", "es", "   ");
    free(o);
    o = tr(fx, "en", "es", ".");
    free(o);
    /* Invalid UTF-8 and control characters must not wedge the pipeline. */
    o = tr(fx, "en", "es", "\xff\xfe the house \xc3 is \x01\x02 big \xed\xa0\x80.");
    assert_non_null(strcasestr(o, "casa"));
    free(o);
    o = tr(fx, "en", "es", "naïve café — 😀 the house");
    assert_non_null(strstr(o, "😀"));
    assert_non_null(strcasestr(o, "casa"));
    free(o);
    /* A C string ends at its NUL: only the first part is translated. */
    static const char with_nul[] = "The house\0 is big";
    o = tr(fx, "en", "es", with_nul);
    assert_non_null(strcasestr(o, "casa"));
    assert_null(strcasestr(o, "grande"));
    free(o);
}

/* A '^' after the last word wedged lrx-proc until the 20 s timeout
 * (found by fuzz_mt_text); it comes back as it was sent. */
static void test_trailing_caret(void **state)
{
    fixture *fx = *state;
    static const struct {
        const char *in, *word, *tail;
    } cases[] = {
        {"The house is big^", "casa", "^"}, {"a ^", "un", " ^"},
        {"The dog\\^", "perro", "\\^"},     {"the house ^!? ", "casa", "^!? "},
        {"The house. ^$", "casa", "^$"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *o = NULL;
        at_err err;
        int rc = at_mt_translate(fx->eng, "en", "es", cases[i].in, &o, &err);
        if (rc) fail_msg("'%s': %s", cases[i].in, err.msg);
        assert_non_null(strcasestr(o, cases[i].word));
        size_t ol = strlen(o), tl = strlen(cases[i].tail);
        assert_true(ol >= tl && strcmp(o + ol - tl, cases[i].tail) == 0);
        free(o);
    }
    char *o = tr(fx, "en", "es", " ^ ");
    assert_string_equal(o, " ^ ");
    free(o);
}

static void test_long_text(void **state)
{
    fixture *fx = *state;
    const char *s = "The dog eats the food. ";
    size_t reps = 600, l = strlen(s); /* ~14 KB: several pieces */
    char *text = malloc(reps * l + 1);
    for (size_t i = 0; i < reps; i++) memcpy(text + i * l, s, l);
    text[reps * l] = '\0';
    char *o = tr(fx, "en", "es", text);
    size_t n = 0;
    for (const char *p = o; (p = strcasestr(p, "perro")); p++) n++;
    assert_int_equal(n, reps);
    free(o);
    free(text);
}

typedef struct {
    fixture *fx;
    const char *text;
    char *out;
    int rc, done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} bounded_call;

static void *bounded_run(void *arg)
{
    bounded_call *c = arg;
    at_err err;
    int rc = at_mt_translate(c->fx->eng, "en", "es", c->text, &c->out, &err);
    pthread_mutex_lock(&c->mu);
    c->rc = rc;
    c->done = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* More bytes than a piece holds with no place to cut, all of them UTF-8
 * continuation bytes (as `q=%80%80...` sends): the cut stepped back over
 * the whole run to 0 and the request never ended. */
static void test_run_of_continuation_bytes(void **state)
{
    fixture *fx = *state;
    static const char head[] = "The dog eats. ", tail[] = " The dog eats.";
    size_t run = 4200, n = sizeof head - 1 + run + sizeof tail - 1;
    char *text = malloc(n + 1);
    assert_non_null(text);
    memcpy(text, head, sizeof head - 1);
    memset(text + sizeof head - 1, 0x80, run);
    memcpy(text + sizeof head - 1 + run, tail, sizeof tail);
    bounded_call c = {.fx = fx, .text = text};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bounded_run, &c), 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 120;
    pthread_mutex_lock(&c.mu);
    while (!c.done && pthread_cond_timedwait(&c.cv, &c.mu, &until) == 0) {}
    int done = c.done;
    pthread_mutex_unlock(&c.mu);
    if (!done) fail_msg("translation of %zu bytes still running after 120 s", n);
    pthread_join(th, NULL);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    assert_int_equal(c.rc, 0);
    size_t k = 0;
    for (const char *p = c.out; (p = strcasestr(p, "perro")); p++) k++;
    assert_int_equal(k, 2);
    free(c.out);
    free(text);
}

/* ---- concurrency ---- */

typedef struct {
    fixture *fx;
    const char *src, *tgt, *text, *expect;
    int ok;
} job;

static void *job_run(void *arg)
{
    job *j = arg;
    j->ok = 1;
    for (int i = 0; i < 4; i++) {
        char *out = NULL;
        at_err err;
        if (at_mt_translate(j->fx->eng, j->src, j->tgt, j->text, &out, &err) != 0 ||
            !strcasestr(out, j->expect) || strlen(out) > strlen(j->text) * 3)
            j->ok = 0;
        free(out);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    fixture *fx = *state;
    job jobs[8] = {
        {fx, "en", "es", "The dog eats.", "perro", 0},
        {fx, "en", "es", "The cat sleeps.", "gato", 0},
        {fx, "en", "es", "I have a red car.", "coche", 0},
        {fx, "en", "es", "The book is on the table.", "libro", 0},
        {fx, "en", "es", "My mother is at home.", "madre", 0},
        {fx, "es", "en", "El agua está fría.", "water", 0},
        {fx, "es", "en", "Vivimos en una ciudad grande.", "city", 0},
        {fx, "es", "en", "Los niños juegan en el jardín.", "garden", 0},
    };
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, job_run, &jobs[i]);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 8; i++) {
        if (!jobs[i].ok) fprintf(stderr, "job %d (%s) failed\n", i, jobs[i].text);
        assert_true(jobs[i].ok);
    }
}

static void test_survives_killed_pipeline(void **state)
{
    fixture *fx = *state;
    char *o = tr(fx, "en", "es", "The house is big.");
    free(o);
    assert_true(at_mt_apertium_debug_kill(fx->ap, "en", "es") > 0);
    o = tr(fx, "en", "es", "The dog eats.");
    assert_non_null(strcasestr(o, "perro"));
    free(o);
    assert_true(at_mt_apertium_running(fx->ap, "en", "es") > 3);
    assert_int_equal(at_mt_apertium_debug_kill(fx->ap, "en", "fr"), AT_E_UNSUPPORTED);
}

/* ---- broken pairs: fake modes folder ---- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_stuck_and_dead_pipelines(void **state)
{
    (void)state;
    char dir[] = "/tmp/at_apertium_test_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    /* Never answers: tail accepts -z and waits forever. */
    snprintf(path, sizeof path, "%s/eng-fra.mode", dir);
    write_file(path, "tail -f /dev/null\n");
    /* Dies at once. */
    snprintf(path, sizeof path, "%s/eng-deu.mode", dir);
    write_file(path, "false\n");
    /* Not translation directions. */
    snprintf(path, sizeof path, "%s/eng-spa-tagger.mode", dir);
    write_file(path, "cat\n");
    snprintf(path, sizeof path, "%s/README", dir);
    write_file(path, "x\n");

    int fds_before = count_fds();
    at_err err;
    at_mt_engine *e = at_mt_apertium_new(dir, 500, &err);
    assert_non_null(e);
    size_t n;
    const at_mt_pair *p = at_mt_engine_pairs(e, &n);
    assert_int_equal(n, 2);
    assert_string_equal(p[0].source, "en");
    assert_string_equal(p[0].target, "de");
    assert_string_equal(p[1].target, "fr");

    char *out = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(at_mt_translate(e, "en", "fr", "Hello", &out, &err), AT_E_ENGINE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_non_null(strstr(err.msg, "did not answer"));
    assert_true(secs < 3.0);
    assert_null(out);
    assert_int_equal(at_mt_translate(e, "en", "de", "Hello", &out, &err), AT_E_ENGINE);
    assert_non_null(strstr(err.msg, "died"));
    at_mt_engine_free(e);

    /* Every child reaped, every descriptor closed. */
    /* (the fixture's pipelines still run: none of ours may be a zombie) */
    assert_true(waitpid(-1, NULL, WNOHANG) <= 0);
    assert_int_equal(count_fds(), fds_before);

    at_mt_engine *none = at_mt_apertium_new("/nonexistent/modes", 0, &err);
    assert_null(none);
    assert_int_equal(err.code, AT_E_IO);

    const char *names[] = {"eng-fra.mode", "eng-deu.mode", "eng-spa-tagger.mode", "README"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_en_es),
        cmocka_unit_test(test_es_en),
        cmocka_unit_test(test_unknown_pair),
        cmocka_unit_test(test_unknown_words_and_markup),
        cmocka_unit_test(test_layout_and_odd_input),
        cmocka_unit_test(test_trailing_caret),
        cmocka_unit_test(test_long_text),
        cmocka_unit_test(test_run_of_continuation_bytes),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_survives_killed_pipeline),
        cmocka_unit_test(test_stuck_and_dead_pipelines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
