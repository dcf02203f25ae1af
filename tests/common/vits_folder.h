/* vits_folder.h - Hugging Face VITS voice folders for tests, made from a
 * random-weight model in tests/data (the vits-mini oracle, or one of
 * tests/data/vits) and a tokenizer fixture of tests/data/vits/tokenizer,
 * laid out as users download them: a voice the tts engines load like a
 * real one. */
#ifndef AT_TESTS_COMMON_VITS_FOLDER_H
#define AT_TESTS_COMMON_VITS_FOLDER_H

/* Makes /tmp/at-vits-XXXXXX/<name> with links to tests/data/<model>'s
 * config.json and model.safetensors and to tests/data/<tok>'s vocab.json
 * and tokenizer_config.json (paths under $AT_SOURCE_DIR, else "."; an
 * absolute model or tok path is taken as is).  Returns the voice folder
 * (malloc'd), or NULL with a message on stderr. */
char *at_test_vits_folder(const char *name, const char *model, const char *tok);
/* Removes what at_test_vits_folder made, and frees dir. */
void at_test_vits_folder_remove(char *dir);

#endif
