#!/usr/bin/env python3
"""Builds the SentencePiece training corpus and test sentences from the
translated message catalogs (/usr/share/locale/*/LC_MESSAGES/*.mo).

Usage: make_corpus.py OUTDIR   (writes OUTDIR/train.txt, OUTDIR/test.txt,
OUTDIR/test_counts.txt).  Deterministic: a fixed seed and sorted inputs."""
import glob, gettext, os, random, sys, unicodedata

GROUPS = {
    "latin": ["fr", "de", "es", "pt", "cs", "pl", "vi", "ro", "hu", "tr"],
    "cyrillic": ["ru", "uk", "bg", "sr", "be"],
    "greek": ["el"],
    "arabic": ["ar", "fa"],
    "cjk": ["zh_CN", "zh_TW", "ja", "ko"],
    "devanagari": ["hi", "mr", "ne"],
}
PER_GROUP_TEST = 1900
TRAIN_BYTES = 4 << 20


def catalog_lines(locale):
    out = []
    for mo in sorted(glob.glob(f"/usr/share/locale/{locale}/LC_MESSAGES/*.mo")):
        try:
            with open(mo, "rb") as f:
                cat = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        for k in sorted(cat, key=repr):
            v = cat[k]
            if not isinstance(v, str) or not k:
                continue
            for line in v.split("\n"):
                line = line.strip()
                if len(line) >= 8:
                    out.append(line)
    return out


def main():
    outdir = sys.argv[1]
    rng = random.Random(20240610)
    train, test, counts = [], [], []
    for group, locales in GROUPS.items():
        lines = []
        for loc in locales:
            lines.extend(catalog_lines(loc))
        lines = sorted(set(lines))
        rng.shuffle(lines)
        t = lines[:PER_GROUP_TEST]
        test.extend(t)
        train.extend(lines[PER_GROUP_TEST // 2:])  # half of the test lines are unseen
        counts.append(f"{group}\t{len(t)}\t{len(lines)}")
    rng.shuffle(train)
    size, keep = 0, []
    for line in train:
        size += len(line.encode()) + 1
        if size > TRAIN_BYTES:
            break
        keep.append(line)
    # Hand-written edge cases: odd whitespace, NFKC-relevant forms, rare
    # characters, user-defined symbols, mixed scripts.
    special = [
        "  leading and   inner   spaces  ",
        "\ttabs\tand\u3000ideographic\u3000spaces\t",
        "no\u00a0break\u00a0space and thin\u2009space",
        "Ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ１２３！ｘ",
        "ﬁnance ﬂow ﬀ ﬃ ﬄ ligatures",
        "① ② ⑩ ㎏ ㎞ ℃ № ™ ½ ⅓ Ⅻ",
        "e\u0301te\u0301 cafe\u0301 (combining accents)",
        "ﾊﾝｶｸ ｶﾀｶﾅ half-width katakana",
        "emoji 😀🎉👍🏽 and 𠀀𠀁 rare CJK 𪚥",
        "zero\u200bwidth\u200djoiner\u200cnon-joiner\ufeffbom",
        "control\x01\x02\x1f chars",
        "carriage\rreturn",
        "<sep> user [MASK] symbols <sep><sep> http://x",
        "mixed Ελληνικά русский 中文 العربية हिन्दी text",
        "ＵＲＬ：ｈｔｔｐ：／／ｅｘａｍｐｌｅ．ｃｏｍ",
        "Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ",
        "ᄀ\u1161\u11a8 decomposed hangul 한국어",
        "ﻻ ﻼ ﷺ ﷲ arabic presentation forms",
        "क़ ख़ ग़ nukta forms",
        " ",
        "   ",
        "a",
        "▁already▁escaped▁",
        "x" * 300,
        "ααααααααααααααααααααααααααααααααααααααααα",
        "数字１２３４５６７８９０和ｆｕｌｌ",
    ]
    for i in range(200):  # random mixes of characters from the test lines
        a, b = rng.choice(test), rng.choice(test)
        s = a[: rng.randrange(1, len(a) + 1)] + rng.choice([" ", "  ", "\t", "", "\u3000"]) + b
        special.append(s)
    with open(os.path.join(outdir, "train.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(keep) + "\n")
    with open(os.path.join(outdir, "test.txt"), "wb") as f:
        for line in test + special:
            f.write(line.replace("\n", " ").encode("utf-8") + b"\n")
        # Invalid UTF-8 (spm replaces each bad byte with U+FFFD).
        for bad in [b"bad \xff byte", b"lone \xc3 lead", b"overlong \xc0\xaf slash",
                    b"surrogate \xed\xa0\x80 x", b"truncated \xf0\x9f\x98", b"\x80\x81\x82 cont",
                    b"mix \xe2\x96 \xe2\x96\x81 ok", b"\xfe\xff\xf8"]:
            f.write(bad + b"\n")
    with open(os.path.join(outdir, "test_counts.txt"), "w") as f:
        f.write("\n".join(counts) + f"\nspecial\t{len(special) + 8}\ntrain_lines\t{len(keep)}\n")


main()
