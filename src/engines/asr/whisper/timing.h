/* timing.h - word timestamps from a Whisper decoder's cross-attention, as
 * OpenAI's timing.py computes them (whisper.cpp's DTW timestamps follow
 * the same steps).
 *
 * The decoder is run once more over the window's text; the attention its
 * alignment heads pay to the audio is turned into a token x frame matrix
 * (softmax over frames, standardised over tokens, median filtered,
 * averaged over heads); dynamic time warping finds the monotonic path
 * through it, and each word starts where the path reaches its first
 * token.  Independent of the network: the scores come in as numbers. */
#ifndef AT_ENGINES_ASR_WHISPER_TIMING_H
#define AT_ENGINES_ASR_WHISPER_TIMING_H

#include <stddef.h>

#include "core/error.h"
#include "engines/asr/whisper/tokenizer.h"

#define AT_WTIMING_MEDFILT 7 /* OpenAI's median filter width */

/* Median filter of odd width along each row of rows x cols, with the rows
 * padded by reflection; rows of at most width/2 values stay unchanged. */
void at_wtiming_median(float *x, int rows, int cols, int width);

/* Dynamic time warping through cost (n x m, row-major): the path from
 * (0, 0) to (n-1, m-1) of least total cost moving down, right or
 * diagonally, with OpenAI's tie order.  Writes the path (at most n+m-1
 * steps) to rows/cols; returns its length, or a negative error. */
int at_wtiming_dtw(const float *cost, int n, int m, int *rows, int *cols, at_err *err);

/* The alignment matrix: qk holds n_heads x n_tok x n_cols scores; the
 * first n_frames columns are used.  Writes rows row0..row0+n_rows-1 of
 * the mean over heads into out (n_rows x n_frames). */
int at_wtiming_matrix(const float *qk, int n_heads, int n_tok, int n_cols, int n_frames, int row0, int n_rows,
                      float *out, at_err *err);

/* One word of a window's text. */
typedef struct at_wtiming_word {
    char *text;        /* with its leading space, as decoded */
    int tok0, n_tok;   /* its tokens: text tokens tok0..tok0+n_tok-1 */
    double start, end; /* seconds from the window's start */
    float probability;
} at_wtiming_word;

/* Splits text tokens into words as OpenAI's tokenizer does: at spaces and
 * punctuation, or, for languages written without spaces (lang: zh, ja,
 * th, lo, my, yue), at every whole character.  *words is malloc'd. */
int at_wtiming_split(const at_wtok *tok, const char *lang, const int *text, int n_text,
                     at_wtiming_word **words, int *n_words, at_err *err);

/* find_alignment: text tokens text[0..n_text) were decoded after a
 * prefix of sot_len tokens plus <|notimestamps|>; qk has the scores of
 * the sequence prefix + notimestamps + text + eot (n_tok = sot_len +
 * n_text + 2 rows) and probs[t] the probability of token t+1 at t.
 * n_frames: encoder positions of the window's audio.  Words get times
 * from the window's start. */
int at_wtiming_align(const at_wtok *tok, const char *lang, const float *qk, int n_heads, int n_cols,
                     int n_frames, int sot_len, const int *text, int n_text, const float *probs,
                     at_wtiming_word **words, int *n_words, at_err *err);

/* OpenAI's punctuation merging: opening marks join the next word, closing
 * marks the previous one (emptied words keep n_tok 0 and text ""). */
void at_wtiming_merge_punctuation(at_wtiming_word *w, int n);

/* 1 when word (as written, leading space and all) is in OpenAI's
 * punctuation, the opening and closing marks above, as Python's `in`
 * tests a string: "" is. */
int at_wtiming_is_punctuation(const char *word);

void at_wtiming_words_free(at_wtiming_word *w, int n);

#endif
