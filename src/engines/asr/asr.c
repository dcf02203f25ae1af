#include "engines/asr/asr.h"

#include <stdlib.h>
#include <string.h>

struct at_asr_engine {
    const at_asr_ops *ops;
    void *impl;
};

struct at_asr_stream {
    at_asr_engine *engine;
    void *st;
};

at_asr_engine *at_asr_engine_new(const at_asr_ops *ops, void *impl, at_err *err)
{
    at_asr_engine *e = calloc(1, sizeof *e);
    if (!e) {
        if (ops && ops->destroy) ops->destroy(impl);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    e->ops = ops;
    e->impl = impl;
    return e;
}

void at_asr_engine_free(at_asr_engine *e)
{
    if (!e) return;
    if (e->ops->destroy) e->ops->destroy(e->impl);
    free(e);
}

const char *at_asr_engine_name(const at_asr_engine *e) { return e->ops->name; }

const char *const *at_asr_engine_languages(const at_asr_engine *e)
{
    static const char *const none[] = {NULL};
    return e->ops->languages ? e->ops->languages(e->impl) : none;
}

int at_asr_engine_supports_language(const at_asr_engine *e, const char *lang)
{
    if (!lang || !*lang) return 1;
    for (const char *const *l = at_asr_engine_languages(e); *l; l++)
        if (strcmp(*l, lang) == 0) return 1;
    return 0;
}

const char *at_asr_language_name(const char *code)
{
    /* Whisper's languages, named as OpenAI's tokenizer.LANGUAGES names them */
    static const char *const names[][2] = {
        {"en", "english"},        {"zh", "chinese"},     {"de", "german"},        {"es", "spanish"},
        {"ru", "russian"},        {"ko", "korean"},      {"fr", "french"},        {"ja", "japanese"},
        {"pt", "portuguese"},     {"tr", "turkish"},     {"pl", "polish"},        {"ca", "catalan"},
        {"nl", "dutch"},          {"ar", "arabic"},      {"sv", "swedish"},       {"it", "italian"},
        {"id", "indonesian"},     {"hi", "hindi"},       {"fi", "finnish"},       {"vi", "vietnamese"},
        {"he", "hebrew"},         {"uk", "ukrainian"},   {"el", "greek"},         {"ms", "malay"},
        {"cs", "czech"},          {"ro", "romanian"},    {"da", "danish"},        {"hu", "hungarian"},
        {"ta", "tamil"},          {"no", "norwegian"},   {"th", "thai"},          {"ur", "urdu"},
        {"hr", "croatian"},       {"bg", "bulgarian"},   {"lt", "lithuanian"},    {"la", "latin"},
        {"mi", "maori"},          {"ml", "malayalam"},   {"cy", "welsh"},         {"sk", "slovak"},
        {"te", "telugu"},         {"fa", "persian"},     {"lv", "latvian"},       {"bn", "bengali"},
        {"sr", "serbian"},        {"az", "azerbaijani"}, {"sl", "slovenian"},     {"kn", "kannada"},
        {"et", "estonian"},       {"mk", "macedonian"},  {"br", "breton"},        {"eu", "basque"},
        {"is", "icelandic"},      {"hy", "armenian"},    {"ne", "nepali"},        {"mn", "mongolian"},
        {"bs", "bosnian"},        {"kk", "kazakh"},      {"sq", "albanian"},      {"sw", "swahili"},
        {"gl", "galician"},       {"mr", "marathi"},     {"pa", "punjabi"},       {"si", "sinhala"},
        {"km", "khmer"},          {"sn", "shona"},       {"yo", "yoruba"},        {"so", "somali"},
        {"af", "afrikaans"},      {"oc", "occitan"},     {"ka", "georgian"},      {"be", "belarusian"},
        {"tg", "tajik"},          {"sd", "sindhi"},      {"gu", "gujarati"},      {"am", "amharic"},
        {"yi", "yiddish"},        {"lo", "lao"},         {"uz", "uzbek"},         {"fo", "faroese"},
        {"ht", "haitian creole"}, {"ps", "pashto"},      {"tk", "turkmen"},       {"nn", "nynorsk"},
        {"mt", "maltese"},        {"sa", "sanskrit"},    {"lb", "luxembourgish"}, {"my", "myanmar"},
        {"bo", "tibetan"},        {"tl", "tagalog"},     {"mg", "malagasy"},      {"as", "assamese"},
        {"tt", "tatar"},          {"haw", "hawaiian"},   {"ln", "lingala"},       {"ha", "hausa"},
        {"ba", "bashkir"},        {"jw", "javanese"},    {"su", "sundanese"},     {"yue", "cantonese"},
    };
    for (size_t i = 0; code && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(names[i][0], code) == 0) return names[i][1];
    return code;
}

int at_asr_transcribe(at_asr_engine *e, const float *pcm, size_t n, const at_asr_options *opt,
                      at_asr_result *out, at_err *err)
{
    memset(out, 0, sizeof *out);
    if (!e->ops->transcribe)
        return at_err_set(err, AT_E_UNSUPPORTED, "engine %s cannot transcribe files", e->ops->name);
    out->on_segment = opt ? opt->on_segment : NULL;
    out->segment_user = opt ? opt->segment_user : NULL;
    int rc = e->ops->transcribe(e->impl, pcm, n, opt, out, err);
    out->on_segment = NULL;
    if (rc == 0 && out->duration == 0) out->duration = (double)n / AT_ASR_SAMPLE_RATE;
    return rc;
}

at_asr_stream *at_asr_stream_open(at_asr_engine *e, const at_asr_options *opt, at_err *err)
{
    if (!e->ops->stream_open) {
        at_err_set(err, AT_E_UNSUPPORTED, "engine %s cannot stream", e->ops->name);
        return NULL;
    }
    at_asr_stream *s = calloc(1, sizeof *s);
    if (!s) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    s->engine = e;
    s->st = e->ops->stream_open(e->impl, opt, err);
    if (!s->st) {
        free(s);
        return NULL;
    }
    return s;
}

int at_asr_stream_feed(at_asr_stream *s, const float *pcm, size_t n, at_asr_event_cb cb, void *user,
                       at_err *err)
{
    return s->engine->ops->stream_feed(s->st, pcm, n, cb, user, err);
}

int at_asr_stream_finish(at_asr_stream *s, at_asr_event_cb cb, void *user, at_err *err)
{
    return s->engine->ops->stream_finish(s->st, cb, user, err);
}

void at_asr_stream_close(at_asr_stream *s)
{
    if (!s) return;
    s->engine->ops->stream_close(s->st);
    free(s);
}

char *at_asr_result_text(const at_asr_result *r)
{
    size_t len = 1;
    for (size_t i = 0; i < r->n_segments; i++) len += strlen(r->segments[i].text) + 1;
    char *s = malloc(len), *p = s;
    if (!s) return NULL;
    for (size_t i = 0; i < r->n_segments; i++) {
        const char *t = r->segments[i].text;
        while (*t == ' ') t++; /* engines may lead with a space */
        if (!*t) continue;
        if (p != s) *p++ = ' ';
        size_t l = strlen(t);
        memcpy(p, t, l);
        p += l;
    }
    *p = '\0';
    return s;
}

int at_asr_result_add(at_asr_result *r, const char *text, double start, double end, at_err *err)
{
    at_asr_segment *ns = realloc(r->segments, (r->n_segments + 1) * sizeof *ns);
    if (!ns) return at_err_set(err, AT_E_NOMEM, "out of memory");
    r->segments = ns;
    at_asr_segment *seg = &ns[r->n_segments];
    memset(seg, 0, sizeof *seg);
    seg->text = strdup(text ? text : "");
    if (!seg->text) return at_err_set(err, AT_E_NOMEM, "out of memory");
    seg->start = start;
    seg->end = end;
    r->n_segments++;
    if (r->on_segment && r->on_segment(r->segment_user, seg->text, start, end) != 0)
        return at_err_set(err, AT_E_CANCELLED, "cancelled");
    return 0;
}

void at_asr_result_free(at_asr_result *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_segments; i++) {
        free(r->segments[i].text);
        for (size_t w = 0; w < r->segments[i].n_words; w++) free(r->segments[i].words[w].text);
        free(r->segments[i].words);
        free(r->segments[i].tokens);
    }
    free(r->segments);
    memset(r, 0, sizeof *r);
}
