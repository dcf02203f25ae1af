/* clips.c - LibriVox clips as one stream (clips.h). */
#include "clips.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "core/audio.h"

float *at_test_librivox_stream(int n_clips, double lead_s, double pause_s, size_t *n,
                               double *clip_end)
{
    static const char *const ids[AT_TEST_N_CLIPS] = {"0870", "0880", "0890", "0920", "0930"};
    if (n_clips < 1 || n_clips > AT_TEST_N_CLIPS) n_clips = AT_TEST_N_CLIPS;
    size_t lead = (size_t)(lead_s * 16000), pause = (size_t)(pause_s * 16000);
    float *pcm = calloc(lead, sizeof *pcm);
    size_t len = lead;
    for (int i = 0; pcm && i < n_clips; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/sense_and_sensibility_01_austen_64kb-%s.wav",
                 at_test_librivox_dir(), ids[i]);
        at_audio a;
        at_err err;
        if (at_audio_decode_file(p, 0, &a, &err) || at_audio_resample(&a, 16000, &err)) {
            fprintf(stderr, "%s: %s\n", p, err.msg);
            free(pcm);
            return NULL;
        }
        float *grown = realloc(pcm, (len + a.n + pause) * sizeof *pcm);
        if (!grown) {
            at_audio_free(&a);
            free(pcm);
            return NULL;
        }
        pcm = grown;
        memcpy(pcm + len, a.samples, a.n * sizeof *pcm);
        len += a.n;
        if (clip_end) clip_end[i] = (double)len / 16000;
        memset(pcm + len, 0, pause * sizeof *pcm);
        len += pause;
        at_audio_free(&a);
    }
    *n = len;
    return pcm;
}
