/* subtitle.c - SRT and WebVTT writers.
 *
 * Times are rounded once to whole milliseconds and then split, so a value
 * like 1.9996 s becomes 00:00:02,000 rather than 00:00:01,1000.  Cue text
 * is cleaned so it cannot break the cue structure: line endings become
 * \n, blank lines (which end a cue) are dropped, and for WebVTT the
 * characters & < > are escaped (which also rules out a "-->" in text). */
#include "core/subtitle.h"

#include "core/strbuf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds -> whole milliseconds; negative/NaN -> 0, absurd values capped
 * (about 11 years) so the arithmetic cannot overflow. */
static long long to_ms(double t)
{
    if (!(t > 0)) return 0;
    double ms = floor(t * 1000.0 + 0.5);
    if (ms > 359999999999.0) ms = 359999999999.0;
    return (long long)ms;
}

static void fmt_time(char out[32], long long ms, char sep)
{
    long long h = ms / 3600000;
    int m = (int)(ms / 60000 % 60), s = (int)(ms / 1000 % 60), f = (int)(ms % 1000);
    snprintf(out, 32, "%02lld:%02d:%02d%c%03d", h, m, s, sep, f);
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends cleaned text line by line (each line trimmed, empty lines
 * dropped); returns 0 if nothing printable was left. */
static int put_text(at_strbuf *b, const char *text, int vtt)
{
    int lines = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "\r\n");
        size_t s = 0, e = len;
        while (s < e && is_space(p[s])) s++;
        while (e > s && is_space(p[e - 1])) e--;
        if (s < e) {
            if (lines++) at_strbuf_put(b, "\n", 1);
            for (size_t i = s; i < e; i++) {
                char c = p[i];
                if (vtt && c == '&')
                    at_strbuf_str(b, "&amp;");
                else if (vtt && c == '<')
                    at_strbuf_str(b, "&lt;");
                else if (vtt && c == '>')
                    at_strbuf_str(b, "&gt;");
                else
                    at_strbuf_put(b, &c, 1);
            }
        }
        p += len;
        if (*p) p++;
    }
    return lines > 0;
}

static char *render(const at_cue *cues, size_t n, int vtt)
{
    at_strbuf b = {0};
    if (vtt) at_strbuf_str(&b, "WEBVTT\n\n");
    size_t num = 0;
    for (size_t i = 0; cues && i < n; i++) {
        const char *t = cues[i].text;
        if (!t) continue;
        /* Render text into a scratch buffer first to learn if it is empty. */
        at_strbuf tb = {0};
        int has = put_text(&tb, t, vtt);
        if (!has || tb.oom) {
            if (tb.oom) b.oom = 1;
            at_strbuf_free(&tb);
            continue;
        }
        long long s = to_ms(cues[i].start), e = to_ms(cues[i].end);
        if (e < s) e = s;
        char ts[32], te[32], idx[32];
        fmt_time(ts, s, vtt ? '.' : ',');
        fmt_time(te, e, vtt ? '.' : ',');
        if (!vtt) {
            snprintf(idx, sizeof idx, "%zu\n", ++num);
            at_strbuf_str(&b, idx);
        }
        at_strbuf_str(&b, ts);
        at_strbuf_str(&b, " --> ");
        at_strbuf_str(&b, te);
        at_strbuf_put(&b, "\n", 1);
        at_strbuf_put(&b, tb.p, tb.n);
        at_strbuf_str(&b, "\n\n");
        at_strbuf_free(&tb);
    }
    return at_strbuf_take(&b); /* "" (SRT) when no cue has text */
}

char *at_subtitle_srt(const at_cue *cues, size_t n) { return render(cues, n, 0); }

char *at_subtitle_vtt(const at_cue *cues, size_t n) { return render(cues, n, 1); }
