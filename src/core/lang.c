/* lang.c - three-letter language codes to ISO 639-1. */
#include "core/lang.h"

#include <ctype.h>
#include <string.h>

/* Sorted by the three-letter code (binary search). */
static const char *const iso3to1[][2] = {
    {"afr", "af"}, {"amh", "am"}, {"ara", "ar"}, {"arb", "ar"}, {"arg", "an"}, {"baq", "eu"}, {"bel", "be"},
    {"ben", "bn"}, {"bos", "bs"}, {"bre", "br"}, {"bul", "bg"}, {"cat", "ca"}, {"ces", "cs"}, {"chi", "zh"},
    {"cmn", "zh"}, {"cym", "cy"}, {"cze", "cs"}, {"dan", "da"}, {"deu", "de"}, {"dut", "nl"}, {"ell", "el"},
    {"eng", "en"}, {"epo", "eo"}, {"est", "et"}, {"eus", "eu"}, {"fao", "fo"}, {"fas", "fa"}, {"fin", "fi"},
    {"fra", "fr"}, {"fre", "fr"}, {"ger", "de"}, {"gle", "ga"}, {"glg", "gl"}, {"gre", "el"}, {"guj", "gu"},
    {"hbs", "sh"}, {"heb", "he"}, {"hin", "hi"}, {"hrv", "hr"}, {"hun", "hu"}, {"hye", "hy"}, {"ind", "id"},
    {"isl", "is"}, {"ita", "it"}, {"jap", "ja"}, {"jpn", "ja"}, {"kan", "kn"}, {"kat", "ka"}, {"kaz", "kk"},
    {"khm", "km"}, {"kor", "ko"}, {"lao", "lo"}, {"lav", "lv"}, {"lit", "lt"}, {"lvs", "lv"}, {"mal", "ml"},
    {"mar", "mr"}, {"mkd", "mk"}, {"mlt", "mt"}, {"msa", "ms"}, {"mya", "my"}, {"nep", "ne"}, {"nld", "nl"},
    {"nno", "nn"}, {"nob", "nb"}, {"nor", "no"}, {"npi", "ne"}, {"oci", "oc"}, {"pan", "pa"}, {"per", "fa"},
    {"pes", "fa"}, {"pol", "pl"}, {"por", "pt"}, {"ron", "ro"}, {"rum", "ro"}, {"rus", "ru"}, {"sin", "si"},
    {"slk", "sk"}, {"slv", "sl"}, {"sme", "se"}, {"som", "so"}, {"spa", "es"}, {"sqi", "sq"}, {"srd", "sc"},
    {"srp", "sr"}, {"swa", "sw"}, {"swe", "sv"}, {"swh", "sw"}, {"tam", "ta"}, {"tat", "tt"}, {"tel", "te"},
    {"tgl", "tl"}, {"tha", "th"}, {"tur", "tr"}, {"ukr", "uk"}, {"urd", "ur"}, {"uzb", "uz"}, {"vie", "vi"},
    {"xho", "xh"}, {"yor", "yo"}, {"zho", "zh"}, {"zsm", "ms"}, {"zul", "zu"},
};

const char *at_lang_iso1(const char *code3)
{
    if (!code3 || strlen(code3) != 3) return NULL;
    char low[4];
    for (int i = 0; i < 4; i++) low[i] = (char)tolower((unsigned char)code3[i]);
    size_t lo = 0, hi = sizeof iso3to1 / sizeof iso3to1[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(iso3to1[mid][0], low);
        if (c == 0) return iso3to1[mid][1];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
