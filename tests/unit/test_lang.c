/* core/lang: three-letter language codes to ISO 639-1, as the engines'
 * sources spell them (Apertium modes, OPUS-MT and NLLB models, MMS-TTS
 * voices). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/lang.h"

static void three_letter_codes(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        /* ISO 639-3, as Apertium and MMS-TTS name languages */
        {"eng", "en"},
        {"spa", "es"},
        {"deu", "de"},
        {"fra", "fr"},
        {"nld", "nl"},
        {"cat", "ca"},
        {"nob", "nb"},
        {"nno", "nn"},
        {"nor", "no"},
        {"sme", "se"},
        {"srd", "sc"},
        {"hbs", "sh"},
        {"zul", "zu"},
        {"afr", "af"},
        {"arg", "an"},
        /* ISO 639-2/B, as some OPUS-MT models are named */
        {"ger", "de"},
        {"fre", "fr"},
        {"dut", "nl"},
        {"cze", "cs"},
        {"gre", "el"},
        {"rum", "ro"},
        {"baq", "eu"},
        {"per", "fa"},
        {"chi", "zh"},
        /* members of macrolanguages that models use for the language */
        {"cmn", "zh"},
        {"arb", "ar"},
        {"swh", "sw"},
        {"pes", "fa"},
        {"zsm", "ms"},
        {"npi", "ne"},
        {"lvs", "lv"},
        {"jap", "ja"},
        /* case does not matter */
        {"SPA", "es"},
        {"Eng", "en"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = at_lang_iso1(cases[i][0]);
        if (!got || strcmp(got, cases[i][1]) != 0)
            fail_msg("%s -> %s, expected %s", cases[i][0], got ? got : "NULL", cases[i][1]);
    }
}

static void codes_without_a_two_letter_form(void **state)
{
    (void)state;
    /* no ISO 639-1 code, unknown, or not three letters */
    static const char *const none[] = {"ast", "frp",  "oci_aran",  "xyz", "es",
                                       "",    "engl", "e\xc3\xa9", "aaa", "zzz"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++)
        if (at_lang_iso1(none[i])) fail_msg("'%s' -> %s, expected NULL", none[i], at_lang_iso1(none[i]));
    assert_null(at_lang_iso1(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(three_letter_codes),
        cmocka_unit_test(codes_without_a_two_letter_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
