/* The tts service, run as its own binary: OpenAI /v1/audio/speech. */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "core/audio.h"
#include "vits_folder.h"

static at_test_proc proc;
static int port;

static int setup(void **state)
{
    (void)state;
    const char *args[] = {"--host", "127.0.0.1", "--port", "0", "--max-text-chars", "600", NULL};
    if (at_test_spawn(&proc, "tts", args, 1, 60) != 0) return -1;
    port = proc.ports[0];
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return at_test_stop(&proc, 10) == 0 ? 0 : -1;
}

static at_test_resp speech(const char *json)
{
    at_test_resp r;
    assert_int_equal(at_test_http(port, "POST", "/v1/audio/speech", "Content-Type: application/json\r\n",
                                  json, strlen(json), &r),
                     0);
    return r;
}

/* The same request asking for WAV (the default is mp3, as OpenAI's). */
static at_test_resp speech_wav(const char *json)
{
    char *body = malloc(strlen(json) + 32);
    assert_non_null(body);
    sprintf(body, "{\"response_format\":\"wav\",%s", json + 1);
    at_test_resp r = speech(body);
    free(body);
    return r;
}

static double rms16(const int16_t *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return n ? sqrt(s / n) / 32768.0 : 0;
}

/* Checks a streamed WAV and returns its duration in seconds. */
static double check_wav(const at_test_resp *r, int *rate_out)
{
    assert_int_equal(r->status, 200);
    char ct[64];
    assert_true(at_test_header(r, "content-type", ct, sizeof ct));
    assert_string_equal(ct, "audio/wav");
    assert_true(r->chunked); /* streamed as synthesised */
    assert_true(r->len > 44);
    assert_memory_equal(r->body, "RIFF", 4);
    assert_memory_equal(r->body + 8, "WAVE", 4);
    int rate;
    memcpy(&rate, r->body + 24, 4);
    const int16_t *pcm = (const int16_t *)(r->body + 44);
    size_t n = (r->len - 44) / 2;
    double level = rms16(pcm, n);
    if (level < 0.01) fail_msg("synthesised audio is silent (rms %.4f)", level);
    if (rate_out) *rate_out = rate;
    return (double)n / rate;
}

static void speaks_with_flite_and_espeak(void **state)
{
    (void)state;
    const char *sentence = "The quick brown fox jumps over the lazy dog.";
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"tts-1\",\"input\":\"%s\",\"voice\":\"slt\"}", sentence);
    at_test_resp r = speech_wav(body);
    int rate;
    double d = check_wav(&r, &rate);
    assert_int_equal(rate, 24000); /* OpenAI's rate, whatever the voice's */
    /* nine words: a plausible 1.5 .. 6 seconds */
    if (d < 1.5 || d > 6) fail_msg("flite duration %.2f s is implausible", d);
    at_test_resp_free(&r);

    snprintf(body, sizeof body, "{\"input\":\"Hola, ¿cómo estás? La casa es grande.\",\"voice\":\"es\"}");
    r = speech_wav(body);
    d = check_wav(&r, &rate);
    assert_int_equal(rate, 24000);
    if (d < 1.0 || d > 6) fail_msg("espeak duration %.2f s is implausible", d);
    at_test_resp_free(&r);
}

static void openai_voice_names_and_speed(void **state)
{
    (void)state;
    at_test_resp a = speech_wav("{\"input\":\"This sentence is spoken at two speeds.\",\"voice\":\"alloy\"}");
    double d1 = check_wav(&a, NULL);
    at_test_resp_free(&a);
    at_test_resp b = speech_wav(
        "{\"input\":\"This sentence is spoken at two speeds.\",\"voice\":\"alloy\",\"speed\":2.0}");
    double d2 = check_wav(&b, NULL);
    at_test_resp_free(&b);
    if (!(d2 < d1 * 0.8)) fail_msg("speed 2.0 gave %.2f s vs %.2f s at 1.0", d2, d1);
}

static void pcm_format(void **state)
{
    (void)state;
    at_test_resp r =
        speech("{\"input\":\"Raw audio please.\",\"voice\":\"kal\",\"response_format\":\"pcm\"}");
    assert_int_equal(r.status, 200);
    char v[64];
    assert_true(at_test_header(&r, "content-type", v, sizeof v));
    assert_string_equal(v, "audio/pcm");
    assert_true(at_test_header(&r, "x-sample-rate", v, sizeof v));
    assert_string_equal(v, "24000"); /* as OpenAI documents pcm */
    assert_true(memcmp(r.body, "RIFF", 4) != 0);
    assert_true(rms16((const int16_t *)r.body, r.len / 2) > 0.01);
    size_t at24 = r.len;
    at_test_resp_free(&r);
    /* sample_rate (an extension) gives the voice's own rate */
    r = speech("{\"input\":\"Raw audio please.\",\"voice\":\"kal\",\"response_format\":\"pcm\","
               "\"sample_rate\":8000}");
    assert_int_equal(r.status, 200);
    assert_true(at_test_header(&r, "x-sample-rate", v, sizeof v));
    assert_string_equal(v, "8000");
    assert_true(r.len > at24 / 4 && r.len < at24 / 2);
    at_test_resp_free(&r);
}

/* Every response_format decodes (libsndfile, as Debian's tools) to speech
 * of a plausible length at 24 kHz; mp3 is the default. */
static void every_format_decodes(void **state)
{
    (void)state;
    static const char *const fmts[][2] = {{NULL, "audio/mpeg"},
                                          {"mp3", "audio/mpeg"},
                                          {"opus", "audio/ogg"},
                                          {"flac", "audio/flac"},
                                          {"wav", "audio/wav"}};
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"input\":\"The quick brown fox jumps over the lazy dog.\"%s%s%s}",
                 fmts[i][0] ? ",\"response_format\":\"" : "", fmts[i][0] ? fmts[i][0] : "",
                 fmts[i][0] ? "\"" : "");
        at_test_resp r = speech(body);
        assert_int_equal(r.status, 200);
        assert_true(r.chunked);
        char ct[64];
        assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
        assert_string_equal(ct, fmts[i][1]);
        at_audio a;
        at_err err;
        if (at_audio_decode(r.body, r.len, 60, &a, &err) != 0)
            fail_msg("%s: not decodable: %s", fmts[i][0] ? fmts[i][0] : "default", err.msg);
        assert_int_equal(a.sample_rate, 24000);
        double d = (double)a.n / a.sample_rate;
        print_message("%s: %zu bytes, %.2f s\n", fmts[i][0] ? fmts[i][0] : "default", r.len, d);
        if (d < 1.5 || d > 6) fail_msg("%s: duration %.2f s", fmts[i][0] ? fmts[i][0] : "default", d);
        if (at_audio_rms(a.samples, a.n) < 0.01) fail_msg("%s: silent", fmts[i][0] ? fmts[i][0] : "default");
        at_audio_free(&a);
        at_test_resp_free(&r);
    }
}

/* aac: ADTS frames at 24 kHz, mono, streamed. */
static void aac_format(void **state)
{
    (void)state;
    at_test_resp r =
        speech("{\"input\":\"The quick brown fox jumps over the lazy dog.\",\"response_format\":\"aac\"}");
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    char ct[64];
    assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
    assert_string_equal(ct, "audio/aac");
    size_t off = 0, frames = 0;
    while (off + 7 <= r.len) {
        assert_int_equal(r.body[off], 0xFF);
        assert_int_equal(r.body[off + 1] & 0xF6, 0xF0);
        assert_int_equal((r.body[off + 2] >> 2) & 15, 6); /* 24 kHz */
        off +=
            ((size_t)(r.body[off + 3] & 3) << 11) | ((size_t)r.body[off + 4] << 3) | (r.body[off + 5] >> 5);
        frames++;
    }
    assert_int_equal(off, r.len);
    double secs = frames * 1024.0 / 24000;
    if (secs < 1.5 || secs > 6) fail_msg("aac: %.2f s", secs);
    at_test_resp_free(&r);
}

/* stream_format "sse": the audio in base64 speech.audio.delta events, in
 * order, then speech.audio.done with usage. */
static void sse_speech_events(void **state)
{
    (void)state;
    at_test_resp r = speech("{\"input\":\"One sentence. And another one.\",\"response_format\":\"pcm\","
                            "\"stream_format\":\"sse\"}");
    assert_int_equal(r.status, 200);
    char ct[64];
    assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
    assert_string_equal(ct, "text/event-stream");
    int deltas = 0, done = 0;
    size_t audio = 0;
    char *save = NULL, *text = strndup((const char *)r.body, r.len);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        assert_int_equal(strncmp(line, "data: ", 6), 0);
        cJSON *ev = cJSON_Parse(line + 6);
        assert_non_null(ev);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "type"));
        assert_non_null(type);
        assert_false(done); /* nothing after done */
        if (strcmp(type, "speech.audio.delta") == 0) {
            const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItem(ev, "audio"));
            assert_non_null(b64);
            audio += strlen(b64) / 4 * 3;
            deltas++;
        } else {
            assert_string_equal(type, "speech.audio.done");
            assert_true(
                cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "usage"), "total_tokens")));
            done = 1;
        }
        cJSON_Delete(ev);
    }
    free(text);
    assert_true(deltas >= 2);
    assert_true(done);
    assert_true(audio > 24000 * 2); /* more than a second of 24 kHz PCM16 */
    at_test_resp_free(&r);
}

static void voices_listed(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(port, "GET", "/v1/voices", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"name\":\"slt\""));
    assert_non_null(strstr((char *)r.body, "\"engine\":\"flite\""));
    assert_non_null(strstr((char *)r.body, "\"engine\":\"espeak-ng\""));
    assert_non_null(strstr((char *)r.body, "\"language\":\"es\""));
    at_test_resp_free(&r);
}

static void expect_error(const char *json, int status, const char *words)
{
    at_test_resp r = speech(json);
    if (r.status != status) fail_msg("%s -> %d %s (expected %d)", json, r.status, r.body, status);
    char ct[64];
    assert_true(at_test_header(&r, "content-type", ct, sizeof ct));
    assert_string_equal(ct, "application/json");
    if (words && !strcasestr((char *)r.body, words))
        fail_msg("%s -> %s (expected '%s')", json, r.body, words);
    /* OpenAI's shape: message, type, param and code (string or null) */
    cJSON *j = cJSON_ParseWithLength((const char *)r.body, r.len);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "message")));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(e, "type")));
    const cJSON *code = cJSON_GetObjectItem(e, "code"), *param = cJSON_GetObjectItem(e, "param");
    assert_true(cJSON_IsNull(code) || cJSON_IsString(code));
    assert_true(cJSON_IsNull(param) || cJSON_IsString(param));
    cJSON_Delete(j);
    at_test_resp_free(&r);
}

static void bad_inputs(void **state)
{
    (void)state;
    expect_error("{\"input\":\"\"}", 400, "empty");
    expect_error("{\"input\":\" \\n\\t \"}", 400, "empty"); /* blank: nothing to say */
    expect_error("{\"input\":\"hello\\u0000world\"}", 400, "NUL");
    expect_error("{\"voice\":\"slt\"}", 400, "input");
    expect_error("{\"input\":42}", 400, "input");
    expect_error("{\"input\":\"hi\",\"voice\":\"nobody\"}", 400, "unknown voice");
    expect_error("{\"input\":\"hi\",\"response_format\":\"ogg\"}", 400, "mp3, opus, aac, flac, wav, pcm");
    expect_error("{\"input\":\"hi\",\"response_format\":\"opus\",\"sample_rate\":22050}", 400, "Opus takes");
    expect_error("{\"input\":\"hi\",\"sample_rate\":100}", 400, "sample_rate");
    expect_error("{\"input\":\"hi\",\"stream_format\":\"ws\"}", 400, "stream_format");
    expect_error("{\"input\":\"hi\",\"speed\":9}", 400, "speed");
    expect_error("{\"input\":\"hi\",\"speed\":\"fast\"}", 400, "speed");
    expect_error("{\"input\":\"hi\",\"noise_scale\":-0.5}", 400, "noise_scale");
    expect_error("{\"input\":\"hi\",\"noise_scale_duration\":\"x\"}", 400, "noise_scale_duration");
    expect_error("{\"input\":\"hi\",\"seed\":1.5}", 400, "seed");
    expect_error("{\"input\":\"hi\",\"speaker_id\":-1}", 400, "speaker_id");
    expect_error("{\"input\":\"hi\",\"voice\":\"slt\",\"speaker_id\":1}", 400, "one speaker");
    expect_error("{input: hi}", 400, "JSON");
    expect_error("", 400, "empty");
    char big[2048] = "{\"input\":\"";
    for (int i = 0; i < 120; i++) strcat(big, "words ");
    strcat(big, "\"}");
    expect_error(big, 413, "limit");
}

/* A field with invalid UTF-8 is echoed in the error as U+FFFD: the body
 * stays valid JSON (it used to carry the raw bytes). */
static void invalid_utf8_is_not_echoed_raw(void **state)
{
    (void)state;
    at_test_resp r = speech("{\"input\":\"hi\",\"voice\":\"a\xff\xfe\xc3\"}");
    assert_int_equal(r.status, 400);
    char *body = strndup((const char *)r.body, r.len);
    cJSON *j = cJSON_Parse(body);
    assert_non_null(j);
    const cJSON *msg = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message");
    assert_true(cJSON_IsString(msg));
    assert_non_null(strstr(msg->valuestring, "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    for (size_t i = 0; i < r.len; i++) assert_true((unsigned char)r.body[i] != 0xff);
    cJSON_Delete(j);
    free(body);
    at_test_resp_free(&r);
}

/* A run of 313+ punctuation characters used to abort the whole process
 * inside libflite; now it is spoken like the words around it. */
static void punctuation_run_is_survived(void **state)
{
    (void)state;
    char body[1024] = "{\"input\":\"hello";
    for (int i = 0; i < 400; i++) strcat(body, ".");
    strcat(body, " world\",\"voice\":\"alloy\"}");
    at_test_resp r = speech_wav(body);
    check_wav(&r, NULL);
    at_test_resp_free(&r);
    at_test_resp h;
    assert_int_equal(at_test_http(port, "GET", "/health", NULL, NULL, 0, &h), 0);
    assert_int_equal(h.status, 200);
    at_test_resp_free(&h);
}

static void client_vanishing_mid_stream_is_survived(void **state)
{
    (void)state;
    /* Ask for long speech and hang up after the first bytes. */
    char body[4096] = "{\"input\":\"";
    for (int i = 0; i < 40; i++) strcat(body, "This is a long text. ");
    strcat(body, "\",\"voice\":\"slt\"}");
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    at_test_resp r;
    /* a 0-second timeout reads nothing and closes the socket */
    at_test_raw(port, req, (size_t)n, &r, 0);
    at_test_resp_free(&r);
    at_test_resp ok = speech_wav("{\"input\":\"Still here.\"}");
    check_wav(&ok, NULL);
    at_test_resp_free(&ok);
}

/* ---- with a neural voice: a random-weight VITS model and MMS-TTS's
 * English character vocabulary, in a folder named as the download is ---- */

static char *voice_dir;

static int setup_neural(void **state)
{
    (void)state;
    if (!(voice_dir = at_test_vits_folder("mms-tts-eng", "oracles/vits-mini", "vits/tokenizer/mms-eng")))
        return -1;
    const char *args[] = {"--host", "127.0.0.1", "--port", "0", "--tts-models", voice_dir, NULL};
    if (at_test_spawn(&proc, "tts", args, 1, 60) != 0) return -1;
    port = proc.ports[0];
    return 0;
}

static int teardown_neural(void **state)
{
    int rc = teardown(state);
    at_test_vits_folder_remove(voice_dir);
    return rc;
}

/* The PCM16 body of a request for raw PCM at the voice's own 16 kHz. */
static at_test_resp pcm16k(const char *json)
{
    char *body = malloc(strlen(json) + 64);
    assert_non_null(body);
    sprintf(body, "{\"response_format\":\"pcm\",\"sample_rate\":16000,%s", json + 1);
    at_test_resp r = speech(body);
    free(body);
    if (r.status != 200) fail_msg("%s -> %d %s", json, r.status, r.body);
    return r;
}

static int same_body(const at_test_resp *a, const at_test_resp *b)
{
    return a->len == b->len && memcmp(a->body, b->body, a->len) == 0;
}

static void neural_voice_listed_first_for_its_language(void **state)
{
    (void)state;
    at_test_resp r;
    assert_int_equal(at_test_http(port, "GET", "/v1/voices", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_ParseWithLength((const char *)r.body, r.len);
    const cJSON *v0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "voices"), 0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(v0, "name")), "mms-tts-eng");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(v0, "language")), "en");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(v0, "engine")), "vits");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(v0, "neural")));
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(v0, "sample_rate")), 16000);
    assert_int_equal(cJSON_GetNumberValue(cJSON_GetObjectItem(v0, "speakers")), 1);
    cJSON_Delete(j);
    at_test_resp_free(&r);
    /* the oracle's noise scales are 0: the voice is deterministic, and a
     * language code picks the neural voice (the pipeline asks that way) */
    at_test_resp a = pcm16k("{\"input\":\"Hello there.\",\"voice\":\"mms-tts-eng\"}");
    at_test_resp b = pcm16k("{\"input\":\"Hello there.\",\"voice\":\"en\"}");
    assert_true(a.len > 1000);
    assert_true(same_body(&a, &b));
    at_test_resp_free(&a);
    at_test_resp_free(&b);
    /* OpenAI's voice names keep their formant voices */
    at_test_resp c = speech_wav("{\"input\":\"Hello there.\",\"voice\":\"alloy\"}");
    int rate = 0;
    check_wav(&c, &rate);
    at_test_resp_free(&c);
}

static void neural_options(void **state)
{
    (void)state;
    const char *with_seed = "{\"input\":\"Hello there, how are you?\",\"voice\":\"mms-tts-eng\","
                            "\"noise_scale\":0.667,\"noise_scale_duration\":0.8,\"seed\":%d}";
    char req[256];
    snprintf(req, sizeof req, with_seed, 7);
    at_test_resp a = pcm16k(req), b = pcm16k(req);
    snprintf(req, sizeof req, with_seed, 8);
    at_test_resp c = pcm16k(req);
    assert_true(same_body(&a, &b));  /* a seed makes noisy output reproducible */
    assert_false(same_body(&a, &c)); /* and another seed changes it */
    at_test_resp_free(&a);
    at_test_resp_free(&b);
    at_test_resp_free(&c);
    at_test_resp slow = pcm16k("{\"input\":\"Hello there.\",\"voice\":\"mms-tts-eng\",\"speed\":0.5}");
    at_test_resp fast = pcm16k("{\"input\":\"Hello there.\",\"voice\":\"mms-tts-eng\",\"speed\":2}");
    if (!(fast.len * 3 < slow.len)) fail_msg("speed 2: %zu bytes, speed 0.5: %zu", fast.len, slow.len);
    at_test_resp_free(&slow);
    at_test_resp_free(&fast);
    /* a sentence of characters the voice does not know is skipped */
    at_test_resp one = pcm16k("{\"input\":\"Hello there.\",\"voice\":\"mms-tts-eng\"}");
    at_test_resp two = pcm16k("{\"input\":\"Hello there. \u65e5\u672c.\",\"voice\":\"mms-tts-eng\"}");
    assert_true(same_body(&one, &two));
    at_test_resp_free(&one);
    at_test_resp_free(&two);
    expect_error("{\"input\":\"\u65e5\u672c\u8a9e\",\"voice\":\"mms-tts-eng\"}", 400, "nothing");
    expect_error("{\"input\":\"hi\",\"voice\":\"mms-tts-eng\",\"speaker_id\":3}", 400, "one speaker");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(speaks_with_flite_and_espeak),
        cmocka_unit_test(openai_voice_names_and_speed),
        cmocka_unit_test(pcm_format),
        cmocka_unit_test(every_format_decodes),
        cmocka_unit_test(aac_format),
        cmocka_unit_test(sse_speech_events),
        cmocka_unit_test(voices_listed),
        cmocka_unit_test(bad_inputs),
        cmocka_unit_test(punctuation_run_is_survived),
        cmocka_unit_test(invalid_utf8_is_not_echoed_raw),
        cmocka_unit_test(client_vanishing_mid_stream_is_survived),
    };
    const struct CMUnitTest neural[] = {
        cmocka_unit_test(neural_voice_listed_first_for_its_language),
        cmocka_unit_test(neural_options),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return failed + cmocka_run_group_tests(neural, setup_neural, teardown_neural);
}
