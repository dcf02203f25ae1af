/* The translate service, run as its own binary: LibreTranslate API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "core/strbuf.h"
#include "nmt_folder.h"

static at_test_proc proc;
static int port;

static int setup(void **state)
{
    (void)state;
    const char *args[] = {"--host", "127.0.0.1",     "--port", "0", "--max-text-chars",
                          "200",    "--max-body-mb", "0.05",   NULL};
    if (at_test_spawn(&proc, "translate", args, 1, 60) != 0) return -1;
    port = proc.ports[0];
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* SIGTERM must drain and exit cleanly within seconds. */
    return at_test_stop(&proc, 10) == 0 ? 0 : -1;
}

static at_test_resp post_json(const char *json)
{
    at_test_resp r;
    assert_int_equal(at_test_http(port, "POST", "/translate", "Content-Type: application/json\r\n", json,
                                  strlen(json), &r),
                     0);
    return r;
}

static void translates_english_to_spanish(void **state)
{
    (void)state;
    static const struct {
        const char *en, *expect;
    } cases[] = {
        {"The house is big.", "casa"},
        {"I want to drink water.", "agua"},
        {"My brother works in the city.", "ciudad"},
        {"Good morning, how are you?", "días"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"q\":\"%s\",\"source\":\"en\",\"target\":\"es\"}", cases[i].en);
        at_test_resp r = post_json(body);
        assert_int_equal(r.status, 200);
        char ct[128];
        assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
        assert_non_null(strstr(ct, "application/json"));
        assert_non_null(strstr((char *)r.body, "\"translatedText\""));
        if (!strcasestr((char *)r.body, cases[i].expect))
            fail_msg("'%s' -> %s (expected '%s')", cases[i].en, r.body, cases[i].expect);
        at_test_resp_free(&r);
    }
}

static void translates_spanish_to_english_and_arrays(void **state)
{
    (void)state;
    at_test_resp r = post_json("{\"q\":[\"La casa es grande.\",\"El perro come.\"],"
                               "\"source\":\"es\",\"target\":\"en\"}");
    assert_int_equal(r.status, 200);
    /* an array in, an array out, in order */
    const char *a = strstr((char *)r.body, "[");
    assert_non_null(a);
    const char *house = strcasestr((char *)r.body, "house");
    const char *dog = strcasestr((char *)r.body, "dog");
    assert_non_null(house);
    assert_non_null(dog);
    assert_true(house < dog);
    at_test_resp_free(&r);
}

static void form_encoded_body_works(void **state)
{
    (void)state;
    const char *body = "q=The+house&source=en&target=es";
    at_test_resp r;
    assert_int_equal(at_test_http(port, "POST", "/translate",
                                  "Content-Type: application/x-www-form-urlencoded\r\n", body, strlen(body),
                                  &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr((char *)r.body, "casa"));
    at_test_resp_free(&r);
}

static void languages_lists_targets(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(port, "GET", "/languages", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"code\":\"en\""));
    assert_non_null(strstr((char *)r.body, "\"targets\":[\"es\""));
    /* languages only: Apertium's en_US variant beside en is not listed */
    assert_null(strstr((char *)r.body, "en_US"));
    at_test_resp_free(&r);
}

static void expect_error(const char *json, int status, const char *words)
{
    at_test_resp r = post_json(json);
    if (r.status != status) fail_msg("%s -> %d %s (expected %d)", json, r.status, r.body, status);
    /* LibreTranslate's shape: {"error": "message"} */
    if (strncmp((char *)r.body, "{\"error\":\"", 10) != 0)
        fail_msg("%s -> %s: not {\"error\": ...}", json, r.body);
    if (words && !strcasestr((char *)r.body, words))
        fail_msg("%s -> %s (expected '%s' in the message)", json, r.body, words);
    at_test_resp_free(&r);
}

static void bad_inputs_get_clear_errors(void **state)
{
    (void)state;
    expect_error("{\"q\":\"hello\",\"source\":\"en\",\"target\":\"xx\"}", 400, "en-es");
    expect_error("{\"q\":\"hello\",\"source\":\"fr\",\"target\":\"es\"}", 400, "unsupported");
    expect_error("{\"q\":\"\",\"source\":\"en\",\"target\":\"es\"}", 400, "empty");
    /* a NUL would have cut the text there, silently */
    expect_error("{\"q\":\"hello\\u0000world\",\"source\":\"en\",\"target\":\"es\"}", 400, "NUL");
    expect_error("{\"q\":[\"ok\",\"a\\u0000b\"],\"source\":\"en\",\"target\":\"es\"}", 400, "NUL");
    {
        /* an escaped backslash before u0000 is text, not a NUL: translated */
        const char *lit = "{\"q\":\"the house \\\\u0000\",\"source\":\"en\",\"target\":\"es\"}";
        at_test_resp r;
        assert_int_equal(at_test_http(port, "POST", "/translate", "Content-Type: application/json\r\n", lit,
                                      strlen(lit), &r),
                         0);
        assert_int_equal(r.status, 200);
        at_test_resp_free(&r);
        /* %00 in a form body */
        const char *form = "q=The+house%00secret&source=en&target=es";
        assert_int_equal(at_test_http(port, "POST", "/translate",
                                      "Content-Type: application/x-www-form-urlencoded\r\n", form,
                                      strlen(form), &r),
                         0);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr((char *)r.body, "NUL"));
        at_test_resp_free(&r);
    }
    expect_error("{\"q\":[],\"source\":\"en\",\"target\":\"es\"}", 400, "empty");
    expect_error("{\"q\":[1,2],\"source\":\"en\",\"target\":\"es\"}", 400, "string");
    expect_error("{\"source\":\"en\",\"target\":\"es\"}", 400, "'q'");
    expect_error("{\"q\":\"hi\",\"target\":\"es\"}", 400, "source");
    expect_error("{\"q\":\"12345 !!!\",\"source\":\"auto\",\"target\":\"es\"}", 400, "cannot tell");
    expect_error(
        "{\"q\":\"Ceci est une phrase en français, bien sûr.\",\"source\":\"auto\",\"target\":\"es\"}", 400,
        "'fr'");
    expect_error("{\"q\":\"hi\",\"source\":\"en\",\"target\":\"es\",\"format\":\"pdf\"}", 400, "format");
    expect_error("{\"q\":\"hi\",\"source\":\"en\",\"target\":\"es\",\"alternatives\":-1}", 400,
                 "alternatives");
    expect_error("{\"q\": \"unterminated", 400, "JSON");
    expect_error("[1,2,3]", 400, "JSON object");
    expect_error("", 400, "empty");
    /* over the configured 200 characters */
    char big[1024] = "{\"q\":\"";
    for (int i = 0; i < 60; i++) strcat(big, "word ");
    strcat(big, "\",\"source\":\"en\",\"target\":\"es\"}");
    expect_error(big, 413, "limit");
}

/* LibreTranslate's "auto": the language is identified (CLD2) and reported
 * per item as detectedLanguage; codes are case-insensitive. */
static void auto_source_and_detect(void **state)
{
    (void)state;
    at_test_resp r = post_json("{\"q\":\"The house is big and my brother works there.\",\"source\":\"auto\","
                               "\"target\":\"ES\"}");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"detectedLanguage\":{\"confidence\":"));
    assert_non_null(strstr((char *)r.body, "\"language\":\"en\""));
    assert_non_null(strstr((char *)r.body, "casa"));
    at_test_resp_free(&r);
    r = post_json("{\"q\":[\"The house is big.\",\"La casa es grande y mi hermano trabaja allí.\"],"
                  "\"source\":\"auto\",\"target\":\"en\",\"alternatives\":2}");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"detectedLanguage\":[{"));
    assert_non_null(strstr((char *)r.body, "\"language\":\"es\""));
    assert_non_null(strstr((char *)r.body, "brother"));
    /* Apertium gives one translation: the alternatives are empty */
    assert_non_null(strstr((char *)r.body, "\"alternatives\":[[],[]]"));
    at_test_resp_free(&r);
    const char *q = "{\"q\":\"Ceci est une phrase en français, et elle le reste.\"}";
    assert_int_equal(
        at_test_http(port, "POST", "/detect", "Content-Type: application/json\r\n", q, strlen(q), &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "[{\"confidence\":"));
    assert_non_null(strstr((char *)r.body, "\"language\":\"fr\""));
    at_test_resp_free(&r);
}

/* format "html": text nodes are translated, markup, comments and scripts
 * kept byte for byte, entities decoded for translation and re-escaped. */
static void html_format_keeps_markup(void **state)
{
    (void)state;
    at_test_resp r = post_json("{\"q\":\"<p class=\\\"big house\\\">The house &amp; the city</p>"
                               "<script>var house = 1;</script><!-- the house -->\",\"source\":\"en\","
                               "\"target\":\"es\",\"format\":\"html\"}");
    assert_int_equal(r.status, 200);
    const char *b = (const char *)r.body;
    assert_non_null(strstr(b, "<p class=\\\"big house\\\">"));
    assert_non_null(strstr(b, "casa"));
    assert_non_null(strstr(b, "&amp;"));
    assert_non_null(strstr(b, "</p><script>var house = 1;</script><!-- the house -->"));
    at_test_resp_free(&r);
}

/* Bodies as LibreTranslate accepts them: multipart form fields. */
static void multipart_body_and_settings(void **state)
{
    (void)state;
    at_test_form f;
    at_test_form_init(&f);
    at_test_form_field(&f, "q", "The house is big.");
    at_test_form_field(&f, "source", "en");
    at_test_form_field(&f, "target", "es");
    char hdr[256];
    at_test_form_finish(&f, hdr, sizeof hdr);
    at_test_resp r;
    assert_int_equal(at_test_http(port, "POST", "/translate", hdr, f.data, f.len, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "casa"));
    at_test_resp_free(&r);
    at_test_form_free(&f);
    assert_int_equal(at_test_http(port, "GET", "/frontend/settings", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"charLimit\":200"));
    assert_non_null(strstr((char *)r.body, "\"keyRequired\":false"));
    at_test_resp_free(&r);
}

/* More than 1000 texts in one 'q' (empty ones cost nothing against
 * --max-text-chars, so a body could hold millions) are refused at once. */
static void too_many_items_is_413(void **state)
{
    (void)state;
    size_t cap = 16 + 3 * 1001 + 64, n = 0;
    char *json = malloc(cap);
    n += (size_t)snprintf(json + n, cap - n, "{\"q\":[\"a\"");
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(json + n, cap - n, ",\"\"");
    snprintf(json + n, cap - n, "],\"source\":\"en\",\"target\":\"es\"}");
    at_test_resp r = post_json(json);
    assert_int_equal(r.status, 413);
    assert_non_null(strstr((char *)r.body, "1001 items; at most 1000"));
    at_test_resp_free(&r);
    free(json);
    /* a form's unknown fields are skipped: thousands of them cost nothing */
    at_strbuf b = {0};
    for (int i = 0; i < 4000; i++) at_strbuf_printf(&b, "f%d=&", i);
    at_strbuf_printf(&b, "q=The+house&source=en&target=es");
    assert_int_equal(at_test_http(port, "POST", "/translate",
                                  "Content-Type: application/x-www-form-urlencoded\r\n", b.p, b.n, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr((char *)r.body, "casa"));
    at_test_resp_free(&r);
    at_strbuf_free(&b);
}

static void oversized_body_is_413_and_service_survives(void **state)
{
    (void)state;
    size_t n = 200 * 1024; /* limit is 0.05 MiB */
    char *body = malloc(n);
    memset(body, 'a', n);
    at_test_resp r;
    assert_int_equal(
        at_test_http(port, "POST", "/translate", "Content-Type: application/json\r\n", body, n, &r), 0);
    assert_int_equal(r.status, 413);
    at_test_resp_free(&r);
    free(body);
    at_test_resp ok = post_json("{\"q\":\"The house\",\"source\":\"en\",\"target\":\"es\"}");
    assert_int_equal(ok.status, 200);
    at_test_resp_free(&ok);
}

static void unknown_route_and_method(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(port, "GET", "/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(port, "GET", "/translate", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    at_test_resp_free(&r);
}

static void health_ready_metrics(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(port, "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "ok"));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(port, "GET", "/ready", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "apertium"));
    at_test_resp_free(&r);
    assert_int_equal(at_test_http(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "# TYPE http_requests_total counter"));
    assert_non_null(strstr((char *)r.body, "path=\"/translate\""));
    assert_non_null(strstr((char *)r.body, "http_request_duration_seconds_bucket"));
    at_test_resp_free(&r);
}

/* ---- with a neural model: its pairs first, pivots through English ---- */

static char *model_dir;

static int setup_neural(void **state)
{
    (void)state;
    /* a random-weight Marian model named as OPUS-MT's de->en is */
    if (!(model_dir = at_test_nmt_folder("marian", "opus-mt-de-en", "uni_nfkc"))) return -1;
    const char *args[] = {"--host", "127.0.0.1", "--port", "0", "--mt-models", model_dir, NULL};
    if (at_test_spawn(&proc, "translate", args, 1, 60) != 0) return -1;
    port = proc.ports[0];
    return 0;
}

static int teardown_neural(void **state)
{
    int rc = teardown(state);
    at_test_nmt_folder_remove(model_dir);
    return rc;
}

static void expect_engine(const char *body, const char *engine)
{
    char want[256];
    snprintf(want, sizeof want, "\"engine\":\"%s\"", engine);
    if (!strstr(body, want)) fail_msg("%s: no %s", body, want);
}

static void neural_pairs_and_pivots(void **state)
{
    (void)state;
    at_test_resp r;
    /* de reaches en directly and es through English (Apertium's en->es) */
    assert_int_equal(at_test_http(port, "GET", "/languages", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *de = strstr((char *)r.body, "\"code\":\"de\"");
    assert_non_null(de);
    const char *end = strchr(de, ']');
    assert_non_null(end);
    char targets[256];
    snprintf(targets, sizeof targets, "%.*s", (int)(end - de), de);
    assert_non_null(strstr(targets, "\"en\""));
    assert_non_null(strstr(targets, "\"es\""));
    at_test_resp_free(&r);

    r = post_json("{\"q\":\"Guten Morgen.\",\"source\":\"de\",\"target\":\"en\"}");
    assert_int_equal(r.status, 200);
    expect_engine((char *)r.body, "opus-mt-de-en");
    at_test_resp_free(&r);
    r = post_json("{\"q\":[\"Guten Morgen.\",\"Wie geht es?\"],\"source\":\"de\",\"target\":\"es\"}");
    assert_int_equal(r.status, 200);
    expect_engine((char *)r.body, "opus-mt-de-en + apertium via en");
    assert_non_null(strstr((char *)r.body, "\"translatedText\":["));
    at_test_resp_free(&r);
    /* Apertium's own pairs are still there, and say so */
    r = post_json("{\"q\":\"The house is big.\",\"source\":\"en\",\"target\":\"es\"}");
    assert_int_equal(r.status, 200);
    expect_engine((char *)r.body, "apertium");
    assert_non_null(strcasestr((char *)r.body, "casa"));
    at_test_resp_free(&r);
    /* a pair nothing reaches: a clear 400 */
    r = post_json("{\"q\":\"Hallo\",\"source\":\"de\",\"target\":\"ja\"}");
    assert_int_equal(r.status, 400);
    assert_non_null(strstr((char *)r.body, "de-ja"));
    at_test_resp_free(&r);
    /* /ready names both engines */
    assert_int_equal(at_test_http(port, "GET", "/ready", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body, "neural+apertium"));
    at_test_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(translates_english_to_spanish),
        cmocka_unit_test(translates_spanish_to_english_and_arrays),
        cmocka_unit_test(form_encoded_body_works),
        cmocka_unit_test(languages_lists_targets),
        cmocka_unit_test(bad_inputs_get_clear_errors),
        cmocka_unit_test(auto_source_and_detect),
        cmocka_unit_test(html_format_keeps_markup),
        cmocka_unit_test(multipart_body_and_settings),
        cmocka_unit_test(too_many_items_is_413),
        cmocka_unit_test(oversized_body_is_413_and_service_survives),
        cmocka_unit_test(unknown_route_and_method),
        cmocka_unit_test(health_ready_metrics),
    };
    const struct CMUnitTest neural[] = {cmocka_unit_test(neural_pairs_and_pivots)};
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed + cmocka_run_group_tests(neural, setup_neural, teardown_neural);
}
