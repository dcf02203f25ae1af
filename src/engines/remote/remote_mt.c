/* remote_mt.c - at_mt over the translate service (LibreTranslate API). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engines/remote/http_client.h"
#include "engines/remote/remote.h"

typedef struct remote_mt {
    char base[600];
    char key[300]; /* "" for none */
    at_mt_pair *pairs;
    size_t n_pairs;
} remote_mt;

static void rmt_destroy(void *impl)
{
    remote_mt *m = impl;
    if (!m) return;
    free(m->pairs);
    free(m);
}

static int rmt_translate(void *impl, const char *source, const char *target, const char *text, char **out,
                         at_err *err)
{
    remote_mt *m = impl;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "q", text);
    cJSON_AddStringToObject(req, "source", source);
    cJSON_AddStringToObject(req, "target", target);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    if (!body) return at_err_set(err, AT_E_NOMEM, "out of memory");
    cJSON *o = at_remote_json(m->base, m->key, "/translate", body, 4u << 20, 60, err);
    free(body);
    if (!o) return err->code ? err->code : AT_E_IO;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "translatedText");
    int rc = 0;
    if (!cJSON_IsString(t))
        rc = at_err_set(err, AT_E_IO, "translate answered without translatedText");
    else if (!(*out = strdup(t->valuestring)))
        rc = at_err_set(err, AT_E_NOMEM, "out of memory");
    cJSON_Delete(o);
    return rc;
}

static const at_mt_pair *rmt_pairs(void *impl, size_t *n)
{
    remote_mt *m = impl;
    *n = m->n_pairs;
    return m->pairs;
}

static const at_mt_ops rmt_ops = {
    .name = "remote-translate",
    .destroy = rmt_destroy,
    .translate = rmt_translate,
    .pairs = rmt_pairs,
};

at_mt_engine *at_mt_remote_new(const char *base_url, const char *api_key, at_err *err)
{
    char host[256], path[256];
    int port;
    if (at_url_parse(base_url, host, sizeof host, &port, path, sizeof path, err) != 0) return NULL;
    remote_mt *m = calloc(1, sizeof *m);
    if (!m) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(m->base, sizeof m->base, "http://%s:%d%s", host, port, path);
    snprintf(m->key, sizeof m->key, "%s", api_key ? api_key : "");
    /* The pairs are fetched once: the service's models do not change while
     * it runs. */
    cJSON *langs = at_remote_json(m->base, m->key, "/languages", NULL, 1u << 20, 10, err);
    if (!cJSON_IsArray(langs)) {
        if (langs) at_err_set(err, AT_E_IO, "%s/languages: not a list", m->base);
        cJSON_Delete(langs);
        rmt_destroy(m);
        return NULL;
    }
    size_t cap = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, langs) cap += (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(l, "targets"));
    m->pairs = calloc(cap + 1, sizeof *m->pairs);
    if (!m->pairs) {
        cJSON_Delete(langs);
        rmt_destroy(m);
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    cJSON_ArrayForEach(l, langs)
    {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(l, "code");
        const cJSON *t;
        if (!cJSON_IsString(code)) continue;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(l, "targets"))
        {
            if (!cJSON_IsString(t) || m->n_pairs >= cap) continue;
            at_mt_pair *p = &m->pairs[m->n_pairs++];
            snprintf(p->source, sizeof p->source, "%s", code->valuestring);
            snprintf(p->target, sizeof p->target, "%s", t->valuestring);
        }
    }
    cJSON_Delete(langs);
    return at_mt_engine_new(&rmt_ops, m, err);
}
