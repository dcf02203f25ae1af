// langid_cld2.cc - the C interface of langid.h over CLD2's C++ API.
#include <cstdio> // CLD2's header uses FILE without including it
#include <cstring>

#include <cld2/public/compact_lang_det.h>
#include <cld2/public/encodings.h>

extern "C" {
#include "engines/mt/langid.h"
}

namespace CLD2
{
// declared in CLD2's internal lang_script.h, exported by libcld2
const char *LanguageCode(Language lang);
} // namespace CLD2

extern "C" int at_langid_detect(const char *text, size_t len, at_langid_guess out[3], int *n, at_err *err)
{
    *n = 0;
    if (len > 64u * 1024 * 1024)
        return at_err_set(err, AT_E_TOO_LARGE, "text too long for language detection");
    CLD2::Language lang3[3];
    int percent3[3];
    double score3[3];
    int text_bytes = 0, valid_prefix = 0;
    bool reliable = false;
    CLD2::ExtDetectLanguageSummaryCheckUTF8(text, (int)len, true, NULL, 0, lang3, percent3, score3, NULL,
                                            &text_bytes, &reliable, &valid_prefix);
    if (valid_prefix < (int)len)
        return at_err_set(err, AT_E_INVALID, "the text is not valid UTF-8 (at byte %d)", valid_prefix);
    for (int i = 0; i < 3; i++) {
        if (lang3[i] == CLD2::UNKNOWN_LANGUAGE || percent3[i] <= 0) continue;
        const char *code = CLD2::LanguageCode(lang3[i]);
        if (!code || !code[0]) continue;
        at_langid_guess *g = &out[(*n)++];
        std::snprintf(g->code, sizeof g->code, "%s", code);
        g->confidence = reliable ? percent3[i] : percent3[i] / 2.0;
    }
    return 0;
}
