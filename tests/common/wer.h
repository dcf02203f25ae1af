/* wer.h - word error rate for tests that check what a user would read.
 *
 * Both strings are normalised the same way before comparison: lower-cased
 * (ASCII), punctuation removed except apostrophes inside words, split on
 * whitespace.  The WER is (substitutions + deletions + insertions) divided
 * by the number of reference words, from a word-level Levenshtein
 * alignment; it can exceed 1.0 when the hypothesis has many extra words. */
#ifndef AT_TESTS_COMMON_WER_H
#define AT_TESTS_COMMON_WER_H

#include <stddef.h>

/* Returns the WER in [0, inf); an empty reference gives 0.0 for an empty
 * hypothesis and 1.0 otherwise; -1.0 if memory runs out.  NULL = "". */
double at_test_wer(const char *ref, const char *hyp);

/* Number of words after normalisation (handy for assertions). */
size_t at_test_word_count(const char *s);

#endif
