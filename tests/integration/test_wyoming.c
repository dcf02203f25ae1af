/* Wyoming, as Home Assistant's integration speaks it, against the
 * asr_streaming and tts binaries: events written byte for byte as the
 * protocol's documentation defines them (a JSON line, optional additional
 * data, optional payload), answers read by a parser of this test's own. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

static at_test_proc asr, tts;
static int asr_wy, tts_wy;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int setup(void **state)
{
    (void)state;
    char a[16], t[16];
    asr_wy = free_port();
    tts_wy = free_port();
    snprintf(a, sizeof a, "%d", asr_wy);
    snprintf(t, sizeof t, "%d", tts_wy);
    const char *aargs[] = {
        "--host", "127.0.0.1",           "--port", "0", "--wyoming-port", a, "--max-streams",
        "2",      "--max-audio-seconds", "20",     NULL};
    const char *targs[] = {"--host", "127.0.0.1", "--port", "0", "--wyoming-port", t, NULL};
    if (at_test_spawn(&asr, "asr_streaming", aargs, 1, 120) != 0) return -1;
    if (at_test_spawn(&tts, "tts", targs, 1, 60) != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int bad = at_test_stop(&asr, 15) != 0;
    bad |= at_test_stop(&tts, 15) != 0;
    return bad ? -1 : 0;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_raw(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* An event as Wyoming 1.x clients write it: data as additional data. */
static void send_event(int fd, const char *type, const char *data_json, const void *payload, size_t len)
{
    char line[512];
    int n;
    if (data_json && payload)
        n = snprintf(line, sizeof line,
                     "{\"type\": \"%s\", \"version\": \"1.5.4\", \"data_length\": %zu, "
                     "\"payload_length\": %zu}\n",
                     type, strlen(data_json), len);
    else if (data_json)
        n = snprintf(line, sizeof line, "{\"type\": \"%s\", \"version\": \"1.5.4\", \"data_length\": %zu}\n",
                     type, strlen(data_json));
    else
        n = snprintf(line, sizeof line, "{\"type\": \"%s\"}\n", type);
    send_raw(fd, line, (size_t)n);
    if (data_json) send_raw(fd, data_json, strlen(data_json));
    if (payload) send_raw(fd, payload, len);
}

typedef struct event {
    char type[64];
    cJSON *data;
    unsigned char *payload;
    size_t len;
} event;

static int read_n(int fd, void *p, size_t n, int timeout_ms)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, timeout_ms) <= 0) return -1;
        ssize_t r = recv(fd, (char *)p + got, n - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* 1 with an event, 0 when the server closed. */
static int read_event(int fd, event *ev, int timeout_ms)
{
    memset(ev, 0, sizeof *ev);
    char line[65536];
    size_t n = 0;
    for (;;) {
        if (read_n(fd, line + n, 1, timeout_ms) != 0) return 0;
        if (line[n] == '\n') break;
        assert_true(++n < sizeof line);
    }
    line[n] = '\0';
    cJSON *h = cJSON_Parse(line);
    assert_non_null(h);
    snprintf(ev->type, sizeof ev->type, "%s", cJSON_GetObjectItem(h, "type")->valuestring);
    const cJSON *dl = cJSON_GetObjectItem(h, "data_length"), *pl = cJSON_GetObjectItem(h, "payload_length");
    cJSON *d = cJSON_GetObjectItem(h, "data");
    ev->data = d ? cJSON_Duplicate(d, 1) : cJSON_CreateObject();
    if (dl && dl->valueint > 0) {
        char *buf = calloc(1, (size_t)dl->valueint + 1);
        assert_int_equal(read_n(fd, buf, (size_t)dl->valueint, timeout_ms), 0);
        cJSON *more = cJSON_Parse(buf);
        assert_non_null(more);
        for (cJSON *it = more->child; it; it = it->next)
            cJSON_AddItemToObject(ev->data, it->string, cJSON_Duplicate(it, 1));
        cJSON_Delete(more);
        free(buf);
    }
    if (pl && pl->valueint > 0) {
        ev->len = (size_t)pl->valueint;
        ev->payload = malloc(ev->len);
        assert_int_equal(read_n(fd, ev->payload, ev->len, timeout_ms), 0);
    }
    cJSON_Delete(h);
    return 1;
}

static void event_free(event *ev)
{
    cJSON_Delete(ev->data);
    free(ev->payload);
}

static const char *str(const event *ev, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(ev->data, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void describe_gives_info(void **state)
{
    (void)state;
    int fd = dial(asr_wy);
    send_event(fd, "describe", NULL, NULL, 0);
    event ev;
    assert_int_equal(read_event(fd, &ev, 10000), 1);
    assert_string_equal(ev.type, "info");
    const cJSON *prog = cJSON_GetArrayItem(cJSON_GetObjectItem(ev.data, "asr"), 0);
    assert_non_null(prog);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(prog, "installed")));
    const cJSON *model = cJSON_GetArrayItem(cJSON_GetObjectItem(prog, "models"), 0);
    assert_string_equal(cJSON_GetObjectItem(model, "name")->valuestring, "pocketsphinx");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(model, "attribution"), "url"));
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(model, "languages"), 0)->valuestring, "en");
    event_free(&ev);
    close(fd);

    fd = dial(tts_wy);
    send_event(fd, "describe", NULL, NULL, 0);
    assert_int_equal(read_event(fd, &ev, 10000), 1);
    assert_string_equal(ev.type, "info");
    const cJSON *voices =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev.data, "tts"), 0), "voices");
    assert_true(cJSON_GetArraySize(voices) > 10); /* flite's and espeak-ng's */
    int slt = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, voices) slt |= strcmp(cJSON_GetObjectItem(v, "name")->valuestring, "slt") == 0;
    assert_true(slt);
    event_free(&ev);
    close(fd);
}

/* The LibriVox clip the tests speak: "he was not an ill disposed young
 * man", 16 kHz mono. */
static int16_t *austen_clip(size_t *n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sense_and_sensibility_01_austen_64kb-0880.wav", at_test_librivox_dir());
    int rate;
    int16_t *pcm = at_test_read_wav16(path, n, &rate);
    assert_non_null(pcm);
    assert_int_equal(rate, 16000);
    return pcm;
}

static void begin_utterance(int fd, const char *fmt)
{
    send_event(fd, "transcribe", "{\"language\": \"en\"}", NULL, 0);
    send_event(fd, "audio-start", fmt, NULL, 0);
}

/* Reads the next event: a transcript that holds the clip's words. */
static void expect_clip_transcript(int fd)
{
    event ev;
    assert_int_equal(read_event(fd, &ev, 60000), 1);
    if (strcmp(ev.type, "transcript") != 0) fail_msg("got %s: %s", ev.type, str(&ev, "text"));
    print_message("transcript: %s\n", str(&ev, "text"));
    assert_non_null(strstr(str(&ev, "text"), "young man"));
    event_free(&ev);
}

static const char mono16k[] = "{\"rate\": 16000, \"width\": 2, \"channels\": 1}";

/* Sends the clip as audio-chunks of 100 ms, each sample `up` times in
 * `ch` channels (1, 1: as it is). */
static void send_clip_chunks(int fd, const char *fmt, const int16_t *pcm, size_t n, size_t up, size_t ch)
{
    size_t step = 1600;
    int16_t *chunk = malloc(step * up * ch * sizeof *chunk);
    assert_non_null(chunk);
    for (size_t off = 0; off < n; off += step) {
        size_t k = n - off < step ? n - off : step;
        for (size_t i = 0; i < k * up; i++)
            for (size_t c = 0; c < ch; c++) chunk[i * ch + c] = pcm[off + i / up];
        send_event(fd, "audio-chunk", fmt, chunk, k * up * ch * sizeof *chunk);
    }
    free(chunk);
}

/* transcribe, audio-start, 100 ms chunks of a LibriVox clip, audio-stop:
 * the transcript holds its words. */
static void transcribes_a_stream_of_chunks(void **state)
{
    (void)state;
    size_t n;
    int16_t *pcm = austen_clip(&n);
    int fd = dial(asr_wy);
    begin_utterance(fd, mono16k);
    send_clip_chunks(fd, mono16k, pcm, n, 1, 1);
    send_event(fd, "audio-stop", "{\"timestamp\": 0}", NULL, 0);
    expect_clip_transcript(fd);
    /* the connection serves another utterance (Home Assistant reuses it) */
    send_event(fd, "audio-start", mono16k, NULL, 0);
    send_event(fd, "audio-chunk", mono16k, pcm, 16000 * 2);
    send_event(fd, "audio-stop", NULL, NULL, 0);
    event ev;
    assert_int_equal(read_event(fd, &ev, 60000), 1);
    assert_string_equal(ev.type, "transcript");
    event_free(&ev);
    close(fd);
    free(pcm);
}

/* Any rate from 8 to 192 kHz in up to 8 channels: each chunk is made
 * 16 kHz mono as it comes, so the utterance's memory does not grow with
 * its format (before, these were refused: kept as sent until audio-stop,
 * an hour of 192 kHz in 8 channels would have taken 11 GB).  The clip at
 * 96 kHz (each sample six times) in 6 channels. */
static void transcribes_any_rate_and_channels(void **state)
{
    (void)state;
    size_t n;
    int16_t *pcm = austen_clip(&n);
    int fd = dial(asr_wy);
    const char *fmt = "{\"rate\": 96000, \"width\": 2, \"channels\": 6}";
    begin_utterance(fd, fmt);
    send_clip_chunks(fd, fmt, pcm, n, 6, 6);
    send_event(fd, "audio-stop", NULL, NULL, 0);
    expect_clip_transcript(fd);
    close(fd);
    free(pcm);
}

/* A client that shuts its sending side after audio-stop (`nc -N`) gets
 * its transcript; before, the end of its input was taken for a client
 * gone and the transcription was cancelled: it got nothing. */
static void half_closed_client_gets_its_transcript(void **state)
{
    (void)state;
    size_t n;
    int16_t *pcm = austen_clip(&n);
    int fd = dial(asr_wy);
    begin_utterance(fd, mono16k);
    send_event(fd, "audio-chunk", mono16k, pcm, n * 2);
    send_event(fd, "audio-stop", NULL, NULL, 0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    expect_clip_transcript(fd);
    close(fd);
    free(pcm);
}

static void synthesizes_audio_events(void **state)
{
    (void)state;
    int fd = dial(tts_wy);
    send_event(fd, "synthesize",
               "{\"text\": \"Hello from the kitchen. The lights are on.\", \"voice\": "
               "{\"name\": \"slt\"}}",
               NULL, 0);
    event ev;
    assert_int_equal(read_event(fd, &ev, 30000), 1);
    assert_string_equal(ev.type, "audio-start");
    int rate = cJSON_GetObjectItem(ev.data, "rate")->valueint;
    assert_int_equal(rate, 16000);
    assert_int_equal(cJSON_GetObjectItem(ev.data, "width")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(ev.data, "channels")->valueint, 1);
    event_free(&ev);
    size_t bytes = 0;
    int chunks = 0;
    for (;;) {
        assert_int_equal(read_event(fd, &ev, 30000), 1);
        if (strcmp(ev.type, "audio-stop") == 0) break;
        assert_string_equal(ev.type, "audio-chunk");
        bytes += ev.len;
        chunks++;
        event_free(&ev);
    }
    event_free(&ev);
    double secs = (double)bytes / 2 / rate;
    print_message("%d chunks, %.2f s\n", chunks, secs);
    assert_true(chunks >= 2); /* a sentence at a time */
    assert_true(secs > 1.5 && secs < 8);
    /* by language, on the same connection */
    send_event(fd, "synthesize", "{\"text\": \"Hola.\", \"voice\": {\"language\": \"es\"}}", NULL, 0);
    assert_int_equal(read_event(fd, &ev, 30000), 1);
    assert_string_equal(ev.type, "audio-start");
    assert_int_equal(cJSON_GetObjectItem(ev.data, "rate")->valueint, 22050);
    event_free(&ev);
    close(fd);
}

static void expect_error_event(int fd, const char *code)
{
    event ev;
    assert_int_equal(read_event(fd, &ev, 10000), 1);
    if (strcmp(ev.type, "error") != 0 || strcmp(str(&ev, "code"), code) != 0)
        fail_msg("expected error %s, got %s %s", code, ev.type, str(&ev, "text"));
    assert_true(strlen(str(&ev, "text")) > 5);
    event_free(&ev);
}

/* Each mistake gets the protocol's error event; a connection that can
 * still be followed stays open. */
static void bad_input_gets_error_events(void **state)
{
    (void)state;
    int fd = dial(asr_wy);
    send_event(fd, "audio-chunk", "{\"rate\": 16000, \"width\": 2, \"channels\": 1}", "\0\0\0\0", 4);
    expect_error_event(fd, "bad_order");
    send_event(fd, "audio-stop", NULL, NULL, 0);
    expect_error_event(fd, "bad_order");
    send_event(fd, "audio-start", "{\"rate\": 16000, \"width\": 3, \"channels\": 1}", NULL, 0);
    expect_error_event(fd, "bad_audio_format");
    send_event(fd, "audio-start", "{\"rate\": 384000, \"width\": 2, \"channels\": 1}", NULL, 0);
    expect_error_event(fd, "bad_audio_format");
    send_event(fd, "audio-start", "{\"rate\": 16000, \"width\": 2, \"channels\": 9}", NULL, 0);
    expect_error_event(fd, "bad_audio_format");
    send_event(fd, "audio-start", "{\"rate\": 16000, \"width\": 2, \"channels\": 1}", NULL, 0);
    send_event(fd, "audio-stop", NULL, NULL, 0);
    expect_error_event(fd, "bad_audio"); /* nothing between them */
    {
        /* past --max-audio-seconds (20) the utterance is dropped */
        static int16_t second[8000];
        const char *f8 = "{\"rate\": 8000, \"width\": 2, \"channels\": 1}";
        send_event(fd, "audio-start", f8, NULL, 0);
        for (int i = 0; i < 21; i++) send_event(fd, "audio-chunk", f8, second, sizeof second);
        expect_error_event(fd, "audio_too_long");
        send_event(fd, "audio-stop", NULL, NULL, 0);
        expect_error_event(fd, "bad_order");
    }
    send_event(fd, "transcribe", "{\"name\": \"no-such-model\"}", NULL, 0);
    expect_error_event(fd, "unknown_model");
    send_event(fd, "transcribe", "{\"language\": \"xx\"}", NULL, 0);
    expect_error_event(fd, "unsupported_language");
    send_event(fd, "synthesize", "{\"text\": \"hi\"}", NULL, 0);
    expect_error_event(fd, "unknown_event");
    /* still served after all that */
    send_event(fd, "describe", NULL, NULL, 0);
    event ev;
    assert_int_equal(read_event(fd, &ev, 10000), 1);
    assert_string_equal(ev.type, "info");
    event_free(&ev);
    close(fd);

    fd = dial(tts_wy);
    send_event(fd, "synthesize", "{\"text\": \"hi\", \"voice\": {\"name\": \"nobody\"}}", NULL, 0);
    expect_error_event(fd, "unknown_voice");
    send_event(fd, "synthesize", "{\"text\": \"  \"}", NULL, 0);
    expect_error_event(fd, "bad_request");
    close(fd);

    /* events that cannot be followed: an error, then the connection ends */
    static const char *const broken[] = {
        "{\"type\": \"audio-chunk\", \"payload_length\": 999999999}\n", /* oversize */
        "this is not json\n", "{\"type\": \"audio-chunk\", \"data_length\": -4}\n",
        "{\"data\": {}}\n", /* no type */
    };
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        fd = dial(asr_wy);
        send_raw(fd, broken[i], strlen(broken[i]));
        expect_error_event(fd, "bad_event");
        assert_int_equal(read_event(fd, &ev, 10000), 0); /* closed */
        close(fd);
    }
    /* the service is fine */
    at_test_resp r;
    assert_int_equal(at_test_http(asr.ports[0], "GET", "/health", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    at_test_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(describe_gives_info),
        cmocka_unit_test(transcribes_a_stream_of_chunks),
        cmocka_unit_test(transcribes_any_rate_and_channels),
        cmocka_unit_test(half_closed_client_gets_its_transcript),
        cmocka_unit_test(synthesizes_audio_events),
        cmocka_unit_test(bad_input_gets_error_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
