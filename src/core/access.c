/* access.c - API keys, token-bucket rate limits and CORS origins.
 *
 * Buckets live in a fixed table (BUCKETS entries, found by a 64-bit hash
 * of "key:..." or "addr:..."), so a flood of distinct addresses costs no
 * memory: when a probe window is full its least recently used bucket is
 * reused, which at worst forgives that caller some requests. */
#include "core/access.h"

#include "core/clock.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define BUCKETS  4096
#define PROBE    16
#define MAX_KEYS 4096
#define KEY_MIN  8
#define KEY_MAX  256

typedef struct bucket {
    uint64_t id; /* 0 = free */
    double tokens;
    double last; /* seconds, CLOCK_MONOTONIC */
} bucket;

struct at_access {
    char **keys;
    size_t n_keys;
    double key_per_min, addr_per_min;
    int metrics_need_key;
    char *cors; /* "" when off */
    pthread_mutex_t mu;
    bucket buckets[BUCKETS];
};

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    size_t k = strspn(s, " \t");
    if (k) memmove(s, s + k, strlen(s + k) + 1);
}

static int read_keys(at_access *a, const char *path, at_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return at_err_set(err, AT_E_IO, "cannot read the API keys file %s", path);
    char line[1024];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = at_err_set(err, AT_E_INVALID, "%s:%d: line too long", path, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        trim(line);
        if (!line[0]) continue;
        size_t n = strlen(line);
        if (n < KEY_MIN || n > KEY_MAX || strpbrk(line, " \t"))
            rc = at_err_set(err, AT_E_INVALID, "%s:%d: a key is one word of %d to %d characters", path,
                            lineno, KEY_MIN, KEY_MAX);
        else if (a->n_keys >= MAX_KEYS)
            rc = at_err_set(err, AT_E_INVALID, "%s: more than %d keys", path, MAX_KEYS);
        else {
            char **nk = realloc(a->keys, (a->n_keys + 1) * sizeof *nk);
            char *k = strdup(line);
            if (!nk || !k) {
                free(k);
                if (nk) a->keys = nk;
                rc = at_err_set(err, AT_E_NOMEM, "out of memory");
            } else {
                a->keys = nk;
                a->keys[a->n_keys++] = k;
            }
        }
    }
    fclose(f);
    if (!rc && a->n_keys == 0) rc = at_err_set(err, AT_E_INVALID, "the API keys file %s holds no key", path);
    return rc;
}

at_access *at_access_new(const at_access_config *cfg, at_err *err)
{
    at_access *a = calloc(1, sizeof *a);
    if (!a) {
        at_err_set(err, AT_E_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    a->key_per_min = cfg->key_per_min > 0 ? cfg->key_per_min : 0;
    a->addr_per_min = cfg->addr_per_min > 0 ? cfg->addr_per_min : 0;
    a->metrics_need_key = cfg->metrics_need_key;
    a->cors = strdup(cfg->cors_origins ? cfg->cors_origins : "");
    if (!a->cors || (cfg->keys_file && cfg->keys_file[0] && read_keys(a, cfg->keys_file, err) != 0)) {
        if (!a->cors) at_err_set(err, AT_E_NOMEM, "out of memory");
        at_access_free(a);
        return NULL;
    }
    return a;
}

void at_access_free(at_access *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n_keys; i++) free(a->keys[i]);
    free(a->keys);
    free(a->cors);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int at_access_keys_required(const at_access *a) { return a && a->n_keys > 0; }

int at_access_path_guarded(const at_access *a, const char *path)
{
    if (!at_access_keys_required(a)) return 0;
    if (strcmp(path, "/health") == 0 || strcmp(path, "/ready") == 0) return 0;
    if (strcmp(path, "/metrics") == 0) return a->metrics_need_key;
    return 1;
}

int at_access_key_valid(const at_access *a, const char *key)
{
    if (!a || !key) return 0;
    size_t n = strlen(key);
    int found = 0;
    /* every key is compared in full, whatever matched: the time taken
     * tells nothing about how close a guess was */
    for (size_t i = 0; i < a->n_keys; i++) {
        const char *k = a->keys[i];
        size_t kn = strlen(k);
        unsigned char diff = (unsigned char)(kn != n);
        for (size_t j = 0; j < kn; j++) diff |= (unsigned char)(k[j] ^ (j < n ? key[j] : 0));
        found |= diff == 0;
    }
    return found;
}

static uint64_t hash_id(const char *kind, const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = kind; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    for (const char *p = s; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h ? h : 1;
}

/* Locked.  The bucket of id, refilled to now; a new one starts full. */
static bucket *find_bucket(at_access *a, uint64_t id, double per_min, double now)
{
    size_t start = (size_t)(id % BUCKETS);
    bucket *victim = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        bucket *b = &a->buckets[(start + i) % BUCKETS];
        if (b->id == id) {
            b->tokens += (now - b->last) * per_min / 60.0;
            if (b->tokens > per_min) b->tokens = per_min;
            b->last = now;
            return b;
        }
        /* a free slot, else the least recently used */
        if (!victim || (victim->id != 0 && (b->id == 0 || b->last < victim->last))) victim = b;
    }
    victim->id = id;
    victim->tokens = per_min;
    victim->last = now;
    return victim;
}

/* Locked.  Seconds until the bucket holds a token (0 if it does now). */
static int wait_of(const bucket *b, double per_min)
{
    if (b->tokens >= 1.0) return 0;
    double s = (1.0 - b->tokens) * 60.0 / per_min;
    int w = (int)s;
    return w < s ? w + 1 : (w > 0 ? w : 1);
}

int at_access_take(at_access *a, const char *key, const char *addr, const char **which)
{
    if (!a) return 0;
    double now = at_now_s();
    pthread_mutex_lock(&a->mu);
    bucket *kb = NULL, *ab = NULL;
    int wait = 0;
    if (a->key_per_min > 0 && key) {
        kb = find_bucket(a, hash_id("key:", key), a->key_per_min, now);
        if ((wait = wait_of(kb, a->key_per_min)) > 0 && which) *which = "key";
    }
    if (!wait && a->addr_per_min > 0 && addr) {
        ab = find_bucket(a, hash_id("addr:", addr), a->addr_per_min, now);
        if ((wait = wait_of(ab, a->addr_per_min)) > 0 && which) *which = "address";
    }
    if (!wait) { /* a refused request costs nothing */
        if (kb) kb->tokens -= 1.0;
        if (ab) ab->tokens -= 1.0;
    }
    pthread_mutex_unlock(&a->mu);
    return wait;
}

const char *at_access_cors(const at_access *a, const char *origin)
{
    if (!a || !a->cors[0] || !origin || !origin[0]) return NULL;
    if (strcmp(a->cors, "*") == 0) return "*";
    size_t n = strlen(origin);
    for (const char *p = a->cors; *p;) {
        p += strspn(p, " ,");
        size_t m = strcspn(p, ",");
        size_t t = m;
        while (t && p[t - 1] == ' ') t--;
        if (t == n && strncasecmp(p, origin, n) == 0) return origin;
        p += m;
    }
    return NULL;
}

const char *at_access_bearer(const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return NULL;
    const char *k = authorization + 7;
    k += strspn(k, " ");
    return *k ? k : NULL;
}
