/* The asr_streaming service, run as its own binary: OpenAI transcriptions
 * on real LibriVox speech, the live WebSocket stream, and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "core/audio.h"
#include "wer.h"

static at_test_proc proc;
static int port;

#define N_CLIPS 5
static char clip_path[N_CLIPS][512];
static char clip_text[N_CLIPS][512];

static void load_transcripts(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/transcription", at_test_librivox_dir());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int i = 0;
    while (i < N_CLIPS && fgets(line, sizeof line, f)) {
        char *open = strrchr(line, '('), *close = strrchr(line, ')');
        char *s = strstr(line, "<s>"), *e = strstr(line, "</s>");
        if (!open || !close || !s || !e) continue;
        *close = '\0';
        *e = '\0';
        snprintf(clip_path[i], sizeof clip_path[i], "%s/%s.wav", at_test_librivox_dir(), open + 1);
        snprintf(clip_text[i], sizeof clip_text[i], "%s", s + 3);
        i++;
    }
    fclose(f);
    assert_int_equal(i, N_CLIPS);
}

static int setup(void **state)
{
    (void)state;
    load_transcripts();
    const char *args[] = {"--host", "127.0.0.1",      "--port", "0", "--max-body-mb", "4", "--max-streams",
                          "2",      "--idle-timeout", "10",     NULL};
    if (at_test_spawn(&proc, "asr_streaming", args, 1, 120) != 0) return -1;
    port = proc.ports[0];
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return at_test_stop(&proc, 15) == 0 ? 0 : -1;
}

/* The upload with form fields: pairs of name, value, NULL-ended. */
static at_test_resp transcribe_fields(const void *file, size_t len, const char *filename,
                                      const char *const *fields)
{
    at_test_form f;
    at_test_form_init(&f);
    if (file) at_test_form_file(&f, "file", filename, "application/octet-stream", file, len);
    for (int i = 0; fields[i]; i += 2) at_test_form_field(&f, fields[i], fields[i + 1]);
    char hdr[256];
    at_test_form_finish(&f, hdr, sizeof hdr);
    at_test_resp r;
    assert_int_equal(at_test_http(port, "POST", "/v1/audio/transcriptions", hdr, f.data, f.len, &r), 0);
    at_test_form_free(&f);
    return r;
}

static at_test_resp transcribe(const void *file, size_t len, const char *filename, const char *fmt,
                               const char *extra_field, const char *extra_val)
{
    const char *fields[8];
    int n = 0;
    if (!extra_field || strcmp(extra_field, "model") != 0) fields[n++] = "model", fields[n++] = "whisper-1";
    if (fmt) fields[n++] = "response_format", fields[n++] = fmt;
    if (extra_field) fields[n++] = extra_field, fields[n++] = extra_val;
    fields[n] = NULL;
    return transcribe_fields(file, len, filename, fields);
}

/* "text" fields of a JSON body, crudely: enough for the flat responses. */
static char *json_text(const char *body)
{
    const char *p = strstr(body, "\"text\":\"");
    if (!p) return strdup("");
    p += 8;
    const char *e = strchr(p, '"');
    return strndup(p, (size_t)(e - p));
}

static void librivox_word_error_rate(void **state)
{
    (void)state;
    double total_err = 0, total_words = 0;
    for (int i = 0; i < N_CLIPS; i++) {
        size_t len;
        unsigned char *wav = at_test_read_file(clip_path[i], &len);
        assert_non_null(wav);
        at_test_resp r = transcribe(wav, len, "clip.wav", "json", NULL, NULL);
        assert_int_equal(r.status, 200);
        char *hyp = json_text((char *)r.body);
        double wer = at_test_wer(clip_text[i], hyp);
        size_t words = 0;
        for (const char *p = clip_text[i]; *p; p++)
            if (*p != ' ' && (p == clip_text[i] || p[-1] == ' ')) words++;
        total_err += wer * words;
        total_words += words;
        printf("# clip %d: WER %.1f%%\n#   ref: %s\n#   hyp: %s\n", i, wer * 100, clip_text[i], hyp);
        free(hyp);
        at_test_resp_free(&r);
        free(wav);
    }
    double wer = total_err / total_words;
    printf("# LibriVox word error rate through the service: %.1f%% over %.0f words\n", wer * 100,
           total_words);
    /* pocketsphinx en-us measures about 36% here; fail if it regresses. */
    assert_true(wer < 0.45);
}

static void response_formats(void **state)
{
    (void)state;
    size_t len;
    unsigned char *wav = at_test_read_file(clip_path[1], &len);
    at_test_resp r = transcribe(wav, len, "a.wav", "text", NULL, NULL);
    assert_int_equal(r.status, 200);
    char ct[64];
    at_test_header(&r, "content-type", ct, sizeof ct);
    assert_non_null(strstr(ct, "text/plain"));
    assert_non_null(strcasestr((char *)r.body, "man"));
    at_test_resp_free(&r);

    r = transcribe(wav, len, "a.wav", "srt", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(strncmp((char *)r.body, "1\n00:00:0", 9) == 0);
    assert_non_null(strstr((char *)r.body, " --> "));
    at_test_resp_free(&r);

    r = transcribe(wav, len, "a.wav", "vtt", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(strncmp((char *)r.body, "WEBVTT", 6) == 0);
    at_test_resp_free(&r);

    r = transcribe(wav, len, "a.wav", "verbose_json", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr((char *)r.body, "\"segments\":[{"));
    assert_non_null(strstr((char *)r.body, "\"duration\":"));
    assert_non_null(strstr((char *)r.body, "\"language\":\"english\""));
    at_test_resp_free(&r);
    free(wav);
}

/* timestamp_granularities[] as the OpenAI SDK sends it: one field per
 * value; words at the top level (and in each segment), in time order. */
static void word_timestamps(void **state)
{
    (void)state;
    size_t len;
    unsigned char *wav = at_test_read_file(clip_path[1], &len);
    const char *word[] = {"response_format", "verbose_json", "timestamp_granularities[]", "word", NULL};
    const char *both[] = {"response_format",
                          "verbose_json",
                          "timestamp_granularities[]",
                          "segment",
                          "timestamp_granularities[]",
                          "word",
                          NULL};
    at_test_resp r = transcribe_fields(wav, len, "a.wav", word);
    assert_int_equal(r.status, 200);
    cJSON *o = cJSON_Parse((char *)r.body);
    assert_non_null(o);
    const cJSON *words = cJSON_GetObjectItem(o, "words"), *w;
    assert_true(cJSON_IsArray(words) && cJSON_GetArraySize(words) >= 3);
    assert_null(cJSON_GetObjectItem(o, "segments")); /* "word" alone, as OpenAI answers */
    double prev = 0, dur = cJSON_GetObjectItem(o, "duration")->valuedouble;
    cJSON_ArrayForEach(w, words)
    {
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItem(w, "word"));
        double a = cJSON_GetObjectItem(w, "start")->valuedouble,
               b = cJSON_GetObjectItem(w, "end")->valuedouble;
        assert_true(text && text[0] && text[0] != ' ');
        assert_true(a >= prev && a <= b && b <= dur + 0.01);
        prev = a;
    }
    cJSON_Delete(o);
    at_test_resp_free(&r);
    r = transcribe_fields(wav, len, "a.wav", both);
    assert_int_equal(r.status, 200);
    o = cJSON_Parse((char *)r.body);
    const cJSON *seg = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "segments"), 0);
    assert_non_null(seg);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(seg, "words")) >= 1);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(o, "words")) >= 3);
    cJSON_Delete(o);
    at_test_resp_free(&r);
    /* the default has no words anywhere */
    r = transcribe(wav, len, "a.wav", "verbose_json", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_null(strstr((char *)r.body, "\"words\""));
    at_test_resp_free(&r);
    free(wav);
}

/* The same speech at other rates and in stereo must give the same words. */
static void other_rates_and_stereo_are_converted(void **state)
{
    (void)state;
    size_t n;
    int rate;
    int16_t *pcm = at_test_read_wav16(clip_path[1], &n, &rate);
    assert_int_equal(rate, 16000);
    static const int rates[] = {8000, 11025, 22050, 44100, 48000};
    float *f = malloc(n * sizeof *f);
    at_audio_s16_to_f32(pcm, n, f);
    for (size_t k = 0; k < sizeof rates / sizeof rates[0]; k++) {
        int R = rates[k], ch = (k % 2) ? 2 : 1;
        /* Band-limited resampling (soxr) makes what a real recorder would. */
        at_audio a = {malloc(n * sizeof *f), n, 16000};
        memcpy(a.samples, f, n * sizeof *f);
        at_err err;
        assert_int_equal(at_audio_resample(&a, R, &err), 0);
        size_t m = a.n;
        int16_t *o = malloc(m * (size_t)ch * sizeof *o);
        int16_t *mono = malloc(m * sizeof *mono);
        at_audio_f32_to_s16(a.samples, m, mono);
        for (size_t i = 0; i < m; i++)
            for (int c = 0; c < ch; c++) o[i * ch + c] = mono[i];
        free(mono);
        at_audio_free(&a);
        size_t len;
        unsigned char *wav = at_test_wav_bytes(o, m, R, ch, &len);
        at_test_resp r = transcribe(wav, len, "x.wav", "json", NULL, NULL);
        if (r.status != 200) fail_msg("%d Hz x%d -> %d %s", R, ch, r.status, r.body);
        char *hyp = json_text((char *)r.body);
        double wer = at_test_wer(clip_text[1], hyp);
        printf("# %d Hz, %d channel(s): WER %.0f%% (%s)\n", R, ch, wer * 100, hyp);
        /* 8 kHz keeps only telephone bandwidth: the wideband model loses
         * words there, but must still hear speech. */
        if (R == 8000)
            assert_true(strlen(hyp) > 0);
        else
            assert_true(wer < 0.5);
        free(hyp);
        at_test_resp_free(&r);
        free(wav);
        free(o);
    }
    free(f);
    free(pcm);
}

static void expect_upload_error(const void *file, size_t len, const char *field, const char *val, int status,
                                const char *words)
{
    at_test_resp r = transcribe(file, len, "x.wav", NULL, field, val);
    if (r.status != status) fail_msg("got %d %s, expected %d", r.status, r.body, status);
    assert_non_null(strstr((char *)r.body, "\"error\""));
    if (words && !strcasestr((char *)r.body, words)) fail_msg("%s lacks '%s'", r.body, words);
    at_test_resp_free(&r);
}

static void bad_uploads(void **state)
{
    (void)state;
    size_t len;
    unsigned char *wav = at_test_read_file(clip_path[1], &len);
    expect_upload_error(NULL, 0, NULL, NULL, 400, "file"); /* missing file */
    expect_upload_error("", 0, NULL, NULL, 400, "empty");  /* empty file */
    const char junk[] = "this is not audio at all, just some text pretending to be a file";
    expect_upload_error(junk, sizeof junk, NULL, NULL, 415, NULL); /* non-audio */
    expect_upload_error(wav, 30, NULL, NULL, 400, NULL);           /* truncated header */
    expect_upload_error(wav, len, "response_format", "mp4", 400, "response_format");
    expect_upload_error(wav, len, "model", "gpt-99", 400, "pocketsphinx");
    expect_upload_error(wav, len, "language", "fr", 400, "language");
    expect_upload_error(wav, len, "timestamp_granularities[]", "word", 400, "verbose_json");
    expect_upload_error(wav, len, "timestamp_granularities[]", "char", 400, "'word' and 'segment'");
    expect_upload_error(wav, len, "hallucination_silence_threshold", "soon", 400, "hallucination_silence");
    /* a WAV cut in half still decodes what is there or says truncated: never 5xx */
    at_test_resp r = transcribe(wav, len / 2, "half.wav", "json", NULL, NULL);
    assert_true(r.status == 200 || r.status == 400);
    at_test_resp_free(&r);
    free(wav);

    /* not multipart at all */
    at_test_resp j;
    assert_int_equal(at_test_http(port, "POST", "/v1/audio/transcriptions",
                                  "Content-Type: application/json\r\n", "{}", 2, &j),
                     0);
    assert_int_equal(j.status, 400);
    at_test_resp_free(&j);
    /* malformed multipart: boundary never closed */
    const char *bad = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc";
    assert_int_equal(at_test_http(port, "POST", "/v1/audio/transcriptions",
                                  "Content-Type: multipart/form-data; boundary=XYZ\r\n", bad, strlen(bad),
                                  &j),
                     0);
    assert_int_equal(j.status, 400);
    assert_non_null(strstr((char *)j.body, "multipart"));
    at_test_resp_free(&j);
    /* over the 4 MiB body limit */
    size_t big = 5u << 20;
    unsigned char *b = calloc(1, big);
    assert_int_equal(at_test_http(port, "POST", "/v1/audio/transcriptions",
                                  "Content-Type: multipart/form-data; boundary=XYZ\r\n", b, big, &j),
                     0);
    assert_int_equal(j.status, 413);
    at_test_resp_free(&j);
    free(b);
    /* translations need whisper */
    at_test_form f;
    at_test_form_init(&f);
    size_t wl;
    unsigned char *w2 = at_test_read_file(clip_path[1], &wl);
    at_test_form_file(&f, "file", "a.wav", "audio/wav", w2, wl);
    char hdr[256];
    at_test_form_finish(&f, hdr, sizeof hdr);
    assert_int_equal(at_test_http(port, "POST", "/v1/audio/translations", hdr, f.data, f.len, &j), 0);
    assert_int_equal(j.status, 400);
    assert_non_null(strstr((char *)j.body, "whisper"));
    at_test_resp_free(&j);
    at_test_form_free(&f);
    free(w2);
}

/* ---- streaming ---- */

static void send_config(at_test_ws *ws, int rate)
{
    char cfg[256];
    snprintf(cfg, sizeof cfg,
             "{\"type\":\"config\",\"language\":\"en\",\"sample_rate\":%d,\"encoding\":\"pcm16\"}", rate);
    assert_int_equal(at_test_ws_send(ws, 1, cfg, strlen(cfg)), 0);
}

static double num_field(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(json, k);
    return p ? atof(p + strlen(k)) : NAN;
}

static void streams_clips_in_100ms_frames(void **state)
{
    (void)state;
    double total_err = 0, total_words = 0;
    for (int c = 0; c < N_CLIPS; c++) {
        size_t n;
        int rate;
        int16_t *pcm = at_test_read_wav16(clip_path[c], &n, &rate);
        at_test_ws ws;
        assert_int_equal(at_test_ws_connect(&ws, port, "/v1/stream", NULL), 0);
        send_config(&ws, rate);
        size_t frame = (size_t)rate / 10;
        for (size_t i = 0; i < n; i += frame) {
            size_t m = n - i < frame ? n - i : frame;
            assert_int_equal(at_test_ws_send(&ws, 2, pcm + i, m * 2), 0);
        }
        assert_int_equal(at_test_ws_send(&ws, 1, "{\"type\":\"end\"}", 14), 0);
        int partials = 0, finals = 0, summary = 0, ready = 0;
        double last_end = 0;
        char text[2048] = "";
        for (;;) {
            char *d;
            size_t l;
            int op = at_test_ws_recv(&ws, &d, &l, 30000);
            if (op != 1) {
                free(d);
                if (op == 8)
                    assert_int_equal(ws.close_code, 1000);
                else
                    fail_msg("stream ended without a close frame (%d)", op);
                break;
            }
            if (strstr(d, "\"type\":\"ready\""))
                ready++;
            else if (strstr(d, "\"type\":\"partial\""))
                partials++;
            else if (strstr(d, "\"type\":\"final\"")) {
                double s = num_field(d, "start"), e = num_field(d, "end");
                /* every final says which language was heard */
                assert_non_null(strstr(d, "\"language\":\"en\""));
                assert_true(s >= last_end - 0.05);
                assert_true(e >= s);
                assert_true(e <= (double)n / rate + 0.1);
                last_end = e;
                char *t = json_text(d);
                if (*text && *t) strcat(text, " ");
                strncat(text, t, sizeof text - strlen(text) - 2);
                free(t);
                finals++;
            } else if (strstr(d, "\"type\":\"summary\"")) {
                summary++;
                assert_int_equal((int)num_field(d, "segments"), finals);
                assert_true(fabs(num_field(d, "duration") - (double)n / rate) < 0.01);
            }
            free(d);
        }
        at_test_ws_close(&ws);
        assert_int_equal(ready, 1);
        assert_int_equal(summary, 1);
        assert_true(finals >= 1);
        double wer = at_test_wer(clip_text[c], text);
        size_t words = 0;
        for (const char *p = clip_text[c]; *p; p++)
            if (*p != ' ' && (p == clip_text[c] || p[-1] == ' ')) words++;
        total_err += wer * words;
        total_words += words;
        printf("# stream %d: %d partials, %d finals, WER %.0f%%: %s\n", c, partials, finals, wer * 100, text);
        free(pcm);
    }
    printf("# streamed LibriVox WER: %.1f%%\n", 100 * total_err / total_words);
    assert_true(total_err / total_words < 0.45);
}

static void stream_protocol_errors(void **state)
{
    (void)state;
    char *d;
    size_t l;
    /* audio before configuration */
    at_test_ws ws;
    assert_int_equal(at_test_ws_connect(&ws, port, "/v1/stream", NULL), 0);
    int16_t zeros[1600] = {0};
    at_test_ws_send(&ws, 2, zeros, sizeof zeros);
    assert_int_equal(at_test_ws_recv(&ws, &d, &l, 10000), 1);
    assert_non_null(strstr(d, "\"type\":\"error\""));
    assert_non_null(strstr(d, "configuration"));
    free(d);
    assert_int_equal(at_test_ws_recv(&ws, &d, &l, 10000), 8);
    assert_int_equal(ws.close_code, 1008);
    free(d);
    at_test_ws_close(&ws);
    /* malformed JSON, bad rate, bad encoding */
    static const char *const bad[] = {"{not json", "{\"sample_rate\":4000}", "{\"sample_rate\":96000}",
                                      "{\"encoding\":\"mp3\"}", "{\"language\":\"de\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(at_test_ws_connect(&ws, port, "/v1/stream", NULL), 0);
        at_test_ws_send(&ws, 1, bad[i], strlen(bad[i]));
        assert_int_equal(at_test_ws_recv(&ws, &d, &l, 10000), 1);
        if (!strstr(d, "\"type\":\"error\"")) fail_msg("%s -> %s", bad[i], d);
        free(d);
        assert_int_equal(at_test_ws_recv(&ws, &d, &l, 10000), 8);
        free(d);
        at_test_ws_close(&ws);
    }
}

/* One limit story: every request the server admits (--max-inflight) finds
 * a pocketsphinx decoder.  Six transcriptions at once with --max-inflight 6
 * all succeed; the decoder pool used to be --max-streams + 2, so half of
 * them got 503 "all 3 pocketsphinx decoders are busy". */
typedef struct {
    int port;
    const char *hdr;
    const at_test_form *f;
    int rc, status;
} par_call;

static void *par_post(void *arg) /* no assertions off the main thread */
{
    par_call *c = arg;
    at_test_resp r;
    c->rc = at_test_http(c->port, "POST", "/v1/audio/transcriptions", c->hdr, c->f->data, c->f->len, &r);
    if (c->rc == 0) {
        c->status = r.status;
        at_test_resp_free(&r);
    }
    return NULL;
}

static void admitted_requests_find_a_decoder(void **state)
{
    (void)state;
    at_test_proc p;
    const char *args[] = {"--host", "127.0.0.1",     "--port", "0", "--max-inflight",
                          "6",      "--max-streams", "1",      NULL};
    assert_int_equal(at_test_spawn(&p, "asr_streaming", args, 1, 60), 0);
    size_t len;
    unsigned char *wav = at_test_read_file(clip_path[0], &len);
    assert_non_null(wav);
    at_test_form f;
    at_test_form_init(&f);
    at_test_form_file(&f, "file", "a.wav", "audio/wav", wav, len);
    at_test_form_field(&f, "model", "pocketsphinx");
    char hdr[256];
    at_test_form_finish(&f, hdr, sizeof hdr);
    enum { N = 6 };
    par_call c[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        c[i] = (par_call){p.ports[0], hdr, &f, -1, 0};
        assert_int_equal(pthread_create(&th[i], NULL, par_post, &c[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += c[i].rc == 0 && c[i].status == 200;
    }
    print_message("%d of %d concurrent transcriptions answered 200\n", ok, N);
    assert_int_equal(ok, N);
    at_test_form_free(&f);
    free(wav);
    assert_int_equal(at_test_stop(&p, 15), 0);
}

/* A frame whose header declares a terabyte is refused with 1009 as soon
 * as its first bytes arrive, not after the server has buffered up to its
 * message limit. */
static void huge_frame_header_is_refused_at_once(void **state)
{
    (void)state;
    at_test_ws ws;
    assert_int_equal(at_test_ws_connect(&ws, port, "/v1/stream", NULL), 0);
    unsigned char fr[14 + 64] = {0x82, 0x80 | 127};
    uint64_t len = (uint64_t)1 << 40;
    for (int i = 0; i < 8; i++) fr[2 + i] = (unsigned char)(len >> (56 - 8 * i));
    /* mask 0: the payload bytes go as they are */
    assert_int_equal(write(ws.fd, fr, sizeof fr), (ssize_t)sizeof fr);
    char *data = NULL;
    size_t n = 0;
    int op;
    while ((op = at_test_ws_recv(&ws, &data, &n, 3000)) == 1 || op == 2) free(data);
    free(data);
    assert_int_equal(op, 8);
    assert_int_equal(ws.close_code, 1009);
    at_test_ws_close(&ws);
}

static void vanished_client_and_stream_limit(void **state)
{
    (void)state;
    size_t n;
    int rate;
    int16_t *pcm = at_test_read_wav16(clip_path[0], &n, &rate);
    /* Two streams fill the limit of 2; the third is refused with 503. */
    at_test_ws a, b, c;
    assert_int_equal(at_test_ws_connect(&a, port, "/v1/stream", NULL), 0);
    assert_int_equal(at_test_ws_connect(&b, port, "/v1/stream", NULL), 0);
    send_config(&a, rate);
    send_config(&b, rate);
    at_test_resp refused;
    assert_int_equal(at_test_ws_connect(&c, port, "/v1/stream", &refused), 503);
    char ra[16];
    assert_true(at_test_header(&refused, "retry-after", ra, sizeof ra));
    assert_non_null(strstr((char *)refused.body, "too many"));
    at_test_resp_free(&refused);
    /* a vanishes mid-utterance; b too, abruptly */
    at_test_ws_send(&a, 2, pcm, n);
    at_test_ws_send(&b, 2, pcm, n / 2);
    at_test_ws_close(&a);
    at_test_ws_close(&b);
    free(pcm);
    /* Their slots are freed: a new stream is accepted within a few seconds. */
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        int rc = at_test_ws_connect(&c, port, "/v1/stream", NULL);
        if (rc == 0)
            ok = 1;
        else
            usleep(100000);
    }
    assert_true(ok);
    at_test_ws_close(&c);
    /* and the service still transcribes */
    size_t len;
    unsigned char *wav = at_test_read_file(clip_path[1], &len);
    at_test_resp r = transcribe(wav, len, "a.wav", "json", NULL, NULL);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
    free(wav);
    /* metrics saw the audio */
    assert_int_equal(at_test_http(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr((char *)r.body, "audio_seconds_processed_total{service=\"asr\"}"));
    assert_non_null(strstr((char *)r.body, "http_rejected_total"));
    at_test_resp_free(&r);
}

/* Requests on worker threads as /metrics counts them (/metrics itself
 * answers on the event loop and is not among them). */
static int requests_in_flight(void)
{
    at_test_resp r;
    if (at_test_http(port, "GET", "/metrics", NULL, NULL, 0, &r) != 0 || !r.body) return -1;
    int total = 0;
    for (const char *l = (const char *)r.body; (l = strstr(l, "http_requests_in_flight{")); l++) {
        const char *v = strchr(l, '}');
        if (v) total += atoi(v + 1);
    }
    at_test_resp_free(&r);
    return total;
}

/* An upload whose client goes away while it is transcribed stops being
 * worked on: 4 minutes of audio (over a minute of pocketsphinx) leave the
 * in-flight count soon after the disconnect. */
static void vanished_upload_stops_transcribing(void **state)
{
    (void)state;
    size_t n;
    int rate;
    int16_t *pcm = at_test_read_wav16(clip_path[1], &n, &rate);
    assert_int_equal(rate, 16000);
    /* 8 kHz (every other sample): 4 minutes fit the 4 MB body limit */
    size_t frames = 8000 * 240;
    int16_t *big = malloc(frames * sizeof *big);
    for (size_t i = 0; i < frames; i++) big[i] = pcm[(2 * i) % n];
    size_t wlen;
    unsigned char *wav = at_test_wav_bytes(big, frames, 8000, 1, &wlen);
    at_test_form f;
    at_test_form_init(&f);
    at_test_form_file(&f, "file", "long.wav", "audio/wav", wav, wlen);
    char ctype[256], head[512];
    at_test_form_finish(&f, ctype, sizeof ctype);
    int hl = snprintf(head, sizeof head,
                      "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: t\r\n%s" /* ends in CRLF */
                      "Content-Length: %zu\r\n\r\n",
                      ctype, f.len);
    unsigned char *req = malloc((size_t)hl + f.len);
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, f.data, f.len);
    /* send it all, wait a second for an answer that cannot come yet, hang up */
    at_test_resp r;
    at_test_raw(port, req, (size_t)hl + f.len, &r, 1);
    /* no answer yet: the transcription was still running (by now it may
     * have noticed the hang-up already) */
    assert_int_equal(r.status, 0);
    at_test_resp_free(&r);
    int busy = requests_in_flight();
    assert_true(busy == 0 || busy == 1);
    /* uncancelled it would run for over a minute; the 30 s allowed are for
     * sanitizer builds, where resampling alone takes ~10 s (0.04 s in a
     * release build) */
    int left = -1, waited = 0;
    for (; waited < 300; waited++) {
        left = requests_in_flight();
        if (left == 0) break;
        usleep(100000);
    }
    printf("in flight after the client left: %d (after %.1f s)\n", left, waited / 10.0);
    assert_int_equal(left, 0);
    free(req);
    at_test_form_free(&f);
    free(wav);
    free(big);
    free(pcm);
}

/* A --vad value that is not one of the four is refused before the
 * service starts, with the allowed values in the message. */
static void bad_vad_option(void **st)
{
    (void)st;
    char cmd[1024], out[512];
    /* timeout: a regression that starts the server fails here, not at ctest's limit */
    snprintf(cmd, sizeof cmd, "timeout 10 %s/asr_streaming --port 0 --vad webrtc 2>&1",
             getenv("AT_BUILD_DIR"));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    assert_non_null(strstr(out, "silero, energy, off or auto"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_vad_option),
        cmocka_unit_test(librivox_word_error_rate),
        cmocka_unit_test(response_formats),
        cmocka_unit_test(word_timestamps),
        cmocka_unit_test(other_rates_and_stereo_are_converted),
        cmocka_unit_test(bad_uploads),
        cmocka_unit_test(streams_clips_in_100ms_frames),
        cmocka_unit_test(stream_protocol_errors),
        cmocka_unit_test(huge_frame_header_is_refused_at_once),
        cmocka_unit_test(admitted_requests_find_a_decoder),
        cmocka_unit_test(vanished_client_and_stream_limit),
        cmocka_unit_test(vanished_upload_stops_transcribing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
