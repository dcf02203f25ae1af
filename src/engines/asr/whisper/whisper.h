/* whisper.h - Whisper speech recognition in C (ggml .bin and Hugging Face
 * safetensors weights), exposed as an at_asr engine. */
#ifndef AT_ENGINES_ASR_WHISPER_H
#define AT_ENGINES_ASR_WHISPER_H

#include "engines/asr/asr.h"

/* model_path: a whisper.cpp ggml .bin file or a Hugging Face folder.
 * n_threads <= 0: number of online CPUs. */
at_asr_engine *at_asr_whisper_new(const char *model_path, int n_threads,
                                  at_err *err);

/* `audio-translator whisper-check ...`: argv[0] is "whisper-check". */
int at_whisper_check_main(int argc, char **argv);

#endif
