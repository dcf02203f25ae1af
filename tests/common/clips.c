/* clips.c - LibriVox clips as one stream (clips.h). */
#include "clips.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

int16_t *at_test_librivox_stream16(int n_clips, double lead_s, double pause_s, size_t *n, double *clip_end)
{
    static const char *const ids[AT_TEST_N_CLIPS] = {"0870", "0880", "0890", "0920", "0930"};
    if (n_clips < 1 || n_clips > AT_TEST_N_CLIPS) n_clips = AT_TEST_N_CLIPS;
    size_t lead = (size_t)(lead_s * 16000), pause = (size_t)(pause_s * 16000);
    int16_t *pcm = calloc(lead + 1, sizeof *pcm);
    size_t len = lead;
    for (int i = 0; pcm && i < n_clips; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/sense_and_sensibility_01_austen_64kb-%s.wav", at_test_librivox_dir(),
                 ids[i]);
        size_t k;
        int rate = 0;
        int16_t *clip = at_test_read_wav16(p, &k, &rate);
        int16_t *grown = clip && rate == 16000 ? realloc(pcm, (len + k + pause) * sizeof *pcm) : NULL;
        if (!grown) {
            fprintf(stderr, "%s: unreadable, or not 16 kHz mono PCM16\n", p);
            free(clip);
            free(pcm);
            return NULL;
        }
        pcm = grown;
        memcpy(pcm + len, clip, k * sizeof *pcm);
        len += k;
        if (clip_end) clip_end[i] = (double)len / 16000;
        memset(pcm + len, 0, pause * sizeof *pcm);
        len += pause;
        free(clip);
    }
    *n = len;
    return pcm;
}

float *at_test_librivox_stream(int n_clips, double lead_s, double pause_s, size_t *n, double *clip_end)
{
    int16_t *s = at_test_librivox_stream16(n_clips, lead_s, pause_s, n, clip_end);
    float *f = s ? malloc((*n + 1) * sizeof *f) : NULL;
    for (size_t i = 0; f && i < *n; i++) f[i] = (float)s[i] / 32768.0f;
    free(s);
    return f;
}
