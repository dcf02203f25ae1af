/* nmt_folder.h - Hugging Face translation folders for tests, made from
 * the oracles' random-weight models (tests/data/oracles) and the
 * SentencePiece fixtures (tests/data/spm), laid out as users download
 * them: a model the translate engines load like a real one. */
#ifndef AT_TESTS_COMMON_NMT_FOLDER_H
#define AT_TESTS_COMMON_NMT_FOLDER_H

/* Writes /tmp/at-nmt-XXXXXX/<name>: for kind "marian", marian-mini's
 * config.json and weights, source.spm = target.spm = tests/data/spm's
 * <spm>.model, and a vocab.json giving the pieces the model's ids; for
 * "m2m100", m2m100-mini with sentencepiece.bpe.model and a vocab.json
 * short enough that the 100 "__xx__" language tokens after it fit in the
 * model's vocabulary.  Returns the folder (malloc'd), or NULL with a
 * message on stderr. */
char *at_test_nmt_folder(const char *kind, const char *name, const char *spm);
/* The same with extra vocabulary entries (NULL-terminated; Marian's
 * ">>cmn_Hans<<" target tokens), given the ids just below <pad>. */
char *at_test_nmt_folder_tokens(const char *kind, const char *name, const char *spm,
                                const char *const *extra);
/* Removes what at_test_nmt_folder wrote, and frees dir. */
void at_test_nmt_folder_remove(char *dir);

#endif
