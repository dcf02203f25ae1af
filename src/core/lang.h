/* lang.h - language codes: the two-letter ISO 639-1 code of a three-letter
 * one, as the engines' sources spell them (Apertium's mode names, OPUS-MT
 * and NLLB model names, MMS-TTS voice names), so that every service names
 * a language the same way. */
#ifndef AT_CORE_LANG_H
#define AT_CORE_LANG_H

/* The ISO 639-1 code ("es") of a three-letter code: ISO 639-3 ("spa"),
 * ISO 639-2/B ("ger", "fre", "dut", as OPUS-MT names some models), or a
 * member of a macrolanguage that models use for it ("cmn", "arb", "swh",
 * "pes", "zsm").  Case-insensitive.  NULL when the code has no two-letter
 * form or is not in the table (which holds the languages our engines and
 * the common models offer). */
const char *at_lang_iso1(const char *code3);

#endif
