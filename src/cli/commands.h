/* commands.h - CLI commands that live in their own files. */
#ifndef AT_CLI_COMMANDS_H
#define AT_CLI_COMMANDS_H

/* audio-translator translate-speech IN --from L --to L -o OUT.wav ... */
int at_cli_translate_speech(int argc, char **argv);

#endif
