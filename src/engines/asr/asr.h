/* asr.h - the speech recognition engine interface.
 *
 * A service holds one or more at_asr engines (pocketsphinx, whisper, ...).
 * Audio is always 16 kHz mono float32 in [-1, 1]; conversion happens in
 * core/audio before it reaches an engine.
 *
 * Two ways in:
 *   - at_asr_transcribe(): a whole file, returns segments.
 *   - at_asr_stream_*(): feed PCM as it arrives; the engine calls back with
 *     partial (unconfirmed) and final segments.  Each stream owns its own
 *     decoder state; many streams may share one engine concurrently.
 *
 * Thread-safety: at_asr_transcribe() and at_asr_stream_open() may be called
 * from several threads at once on the same engine.  One stream is used by
 * one thread at a time. */
#ifndef AT_ENGINES_ASR_H
#define AT_ENGINES_ASR_H

#include <stddef.h>

#include "core/error.h"

#define AT_ASR_SAMPLE_RATE 16000

typedef struct at_asr_options {
    const char *language; /* ISO 639-1 ("en"), NULL or "" = engine default / auto */
    int translate;        /* 1 = translate to English (whisper "translate" task) */
    const char *prompt;   /* initial prompt / context, may be NULL */
    float temperature;    /* 0 = deterministic */
    /* Fallback (whisper): a window whose text is too repetitive or too
     * improbable is decoded again at temperature + k * temperature_inc up
     * to 1.0.  0 = OpenAI's 0.2; < 0 = no fallback (one decode per
     * window, bounded work). */
    float temperature_inc;
    int max_tokens; /* tokens per 30 s window; <= 0: the model's limit (224) */
    int beam_size;  /* <= 1 = greedy */
    /* Whisper's decoding options, by the names OpenAI's transcribe() and
     * faster-whisper give them; 0 / NULL keep the defaults. */
    const float *temperatures; /* the whole fallback schedule (overrides temperature, temperature_inc) */
    int n_temperatures;
    int best_of;                /* samples at temperature > 0 (default: beam_size, or 1) */
    float patience;             /* beam search patience (default 1.0) */
    float length_penalty;       /* > 0: Google's ((5 + length) / 6) ^ penalty; 0: the mean log probability */
    const int *suppress_tokens; /* token ids suppressed besides the default set */
    int n_suppress_tokens;
    int no_default_suppress;      /* 1: suppress_tokens replaces "-1" (non-speech symbols) */
    int no_condition_on_previous; /* 1: each window decoded without the previous text */
    int vad_filter;      /* 1: voice activity detection over the whole file first; only speech is decoded */
    int word_timestamps; /* engines that can, report words */
    /* > 0 (seconds): whisper skips silence around what looks hallucinated
     * (OpenAI's hallucination_silence_threshold; it aligns words for it) */
    float hallucination_silence_threshold;
    /* at_asr_transcribe() polls this between units of work (pocketsphinx:
     * every second of audio; whisper: every window and decoder step) and stops with
     * AT_E_CANCELLED when it returns nonzero: the client is gone.  Opening a
     * stream polls it while waiting for a shared resource (a pocketsphinx
     * decoder being loaded).  NULL: never cancelled. */
    int (*cancelled)(void *user);
    void *cancel_user;
    /* at_asr_transcribe() calls this with each segment as the engine
     * finishes it (text valid during the call), so an answer can stream;
     * nonzero stops the work with AT_E_CANCELLED.  NULL: not called. */
    int (*on_segment)(void *user, const char *text, double start, double end);
    void *segment_user;
} at_asr_options;

typedef struct at_asr_word {
    char *text;
    double start, end; /* seconds from the start of the audio/stream */
    float prob;        /* 0..1, or -1 if unknown */
} at_asr_word;

typedef struct at_asr_segment {
    char *text;           /* UTF-8, owned by the result */
    double start, end;    /* seconds from the start of the audio/stream */
    float avg_logprob;    /* 0 if unknown */
    float no_speech_prob; /* 0 if unknown */
    /* Whisper's: the window's first mel frame (OpenAI's "seek"), the
     * tokens decoded for the segment, the temperature that produced them
     * and the text's compression ratio (0 / NULL if unknown) */
    int seek;
    int *tokens; /* owned by the result */
    size_t n_tokens;
    float temperature, compression_ratio;
    at_asr_word *words; /* may be NULL */
    size_t n_words;
} at_asr_segment;

typedef struct at_asr_result {
    at_asr_segment *segments;
    size_t n_segments;
    char language[16]; /* detected or requested language */
    double duration;   /* seconds of audio processed */
    /* set by at_asr_transcribe from at_asr_options.on_segment: told of
     * each segment at_asr_result_add adds */
    int (*on_segment)(void *user, const char *text, double start, double end);
    void *segment_user;
} at_asr_result;

/* A language code's name as OpenAI's API writes it ("en" -> "english");
 * the code itself when it is not one of Whisper's 100 languages. */
const char *at_asr_language_name(const char *code);

/* Joined text of all segments, separated by single spaces; caller frees. */
char *at_asr_result_text(const at_asr_result *r);
void at_asr_result_free(at_asr_result *r);
/* Appends a segment (deep copy of text).  Used by engines. */
int at_asr_result_add(at_asr_result *r, const char *text, double start, double end, at_err *err);

/* A streaming event: a partial hypothesis (may change) or a final segment. */
typedef struct at_asr_event {
    int is_final;
    const char *text;     /* valid only during the callback */
    double start, end;    /* seconds from stream start */
    const char *language; /* the language heard ("en"), NULL if the engine does not tell */
} at_asr_event;

/* Return nonzero from the callback to cancel the stream (client gone). */
typedef int (*at_asr_event_cb)(void *user, const at_asr_event *ev);

typedef struct at_asr_engine at_asr_engine;
typedef struct at_asr_stream at_asr_stream;

/* The vtable an engine implements.  `impl` is the engine's private state;
 * `st` a stream's private state. */
typedef struct at_asr_ops {
    const char *name; /* "pocketsphinx", "whisper" */
    void (*destroy)(void *impl);
    int (*transcribe)(void *impl, const float *pcm, size_t n, const at_asr_options *opt, at_asr_result *out,
                      at_err *err);
    void *(*stream_open)(void *impl, const at_asr_options *opt, at_err *err);
    int (*stream_feed)(void *st, const float *pcm, size_t n, at_asr_event_cb cb, void *user, at_err *err);
    /* Flushes pending audio: emits the remaining final segments. */
    int (*stream_finish)(void *st, at_asr_event_cb cb, void *user, at_err *err);
    void (*stream_close)(void *st);
    /* NULL-terminated list of supported languages (static storage). */
    const char *const *(*languages)(void *impl);
} at_asr_ops;

/* Wraps an implementation; takes ownership of impl (destroyed with the
 * engine, also on failure). */
at_asr_engine *at_asr_engine_new(const at_asr_ops *ops, void *impl, at_err *err);
void at_asr_engine_free(at_asr_engine *e);
const char *at_asr_engine_name(const at_asr_engine *e);
const char *const *at_asr_engine_languages(const at_asr_engine *e);
int at_asr_engine_supports_language(const at_asr_engine *e, const char *lang);

int at_asr_transcribe(at_asr_engine *e, const float *pcm, size_t n, const at_asr_options *opt,
                      at_asr_result *out, at_err *err);

at_asr_stream *at_asr_stream_open(at_asr_engine *e, const at_asr_options *opt, at_err *err);
/* n == 0 (pcm may be NULL) adds no audio but still delivers the events
 * that are ready: a remote engine reads what its service has sent since
 * (callers that wait for audio call this now and then); local engines have
 * nothing pending and return at once. */
int at_asr_stream_feed(at_asr_stream *s, const float *pcm, size_t n, at_asr_event_cb cb, void *user,
                       at_err *err);
int at_asr_stream_finish(at_asr_stream *s, at_asr_event_cb cb, void *user, at_err *err);
void at_asr_stream_close(at_asr_stream *s);

#endif
