#!/usr/bin/env python3
"""make_fixtures.py - the VITS tokenizer fixtures of tests/data/vits/tokenizer.

Writes small voice folders (vocab.json + tokenizer_config.json modelled on
the real ones) and cases.json, the ids tests/engines/test_vits_tokenizer.c
expects for each text.  The ids come from `Ref` below, a transcription of
transformers' VitsTokenizer (models/vits/tokenization_vits.py) and of the
parts of PreTrainedTokenizer.tokenize() it goes through (special tokens
split the text, then _tokenize and convert_tokens_to_ids).  Phonemes come
from the real phonemizer package (3.3.0, bootphon/phonemizer) run on the
system's libespeak-ng; it is not installed here, so point --phonemizer-src
at a checkout of its sources: the few modules it imports that this Python
lacks (joblib, segments, dlinfo, a newer typing_extensions) are stubbed.

Two id lists per case: "python" is what transformers gives (null where it
yields None: a character outside the vocabulary when nothing filtered it;
ids past the vocabulary for a special token vocab.json lacks), "ids" what
we give instead (such characters and tokens dropped before the blanks go
in, see src/engines/tts/vits/tokenizer.h).  Where Python gives no None the
two are equal; the script checks that.

    /usr/bin/python3 tests/data/vits/tokenizer/make_fixtures.py --phonemizer-src DIR

The phonemes depend on the espeak-ng version: these are espeak-ng 1.51
(Debian 12's libespeak-ng1 1.51+dfsg-10).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

# facebook/mms-tts-eng's vocab.json: the 38 characters, in id order (the ids
# agree with transformers' test_tokenizer_integration for that model).
MMS_ENG = ["k", "'", "z", "y", "u", "d", "h", "e", "s", "w", "–", "3", "c", "p", "-", "1", "j", "m", "i", " ",
           "f", "l", "o", "0", "b", "r", "a", "4", "2", "n", "_", "x", "v", "t", "q", "5", "6", "g"]

# The original VITS symbols (jaywalnut310/vits text/symbols.py) of
# kakao-enterprise/vits-ljs and vits-vctk: pad "_" is id 0.  The IPA list
# holds "'" twice: a dict keeps the later id, at the first position.
VITS_PAD = "_"
VITS_PUNCT = ';:,.!?¡¿—…"«»“” '
VITS_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VITS_IPA = "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘'̩'ᵻ"
VITS_SYMBOLS = [VITS_PAD] + list(VITS_PUNCT) + list(VITS_LETTERS) + list(VITS_IPA)

# transformers' test_tokenization_vits.py vocabulary (pad and unk in it).
HF_TEST = "k ' z y u d h e s w – 3 c p - 1 j m i X f l o 0 b r a 4 2 n _ x v t q 5 6 g ț ţ < > | <pad> <unk>".split(" ")


def mms_config(language, **kw):
    c = {"add_blank": True, "clean_up_tokenization_spaces": True, "is_uroman": False, "language": language,
         "model_max_length": 1000000000000000019884624838656, "normalize": True, "pad_token": "<pad>",
         "phonemize": False, "tokenizer_class": "VitsTokenizer", "unk_token": "<unk>"}
    c.update(kw)
    return c


def voices():
    eng = {c: i for i, c in enumerate(MMS_ENG)}
    hf = dict(zip(HF_TEST, range(len(HF_TEST))))
    hf[" "] = hf.pop("X")
    ron = {c: i for i, c in enumerate(["_", " ", "a", "ă", "â", "b", "c", "d", "e", "f", "g", "h", "i", "î", "j", "k",
                                       "l", "m", "n", "o", "p", "r", "s", "ş", "t", "ţ", "u", "v", "x", "z", "'", "-"])}
    ljs = {s: i for i, s in enumerate(VITS_SYMBOLS)}
    return {
        "mms-eng": (eng, mms_config("eng")),
        "mms-eng-noblank": (eng, mms_config("eng", add_blank=False)),
        "mms-ron": (ron, mms_config("ron")),
        "mms-uroman": (eng, mms_config("kor", is_uroman=True)),
        "hf-test": (hf, {"add_blank": True, "normalize": False, "phonemize": False, "pad_token": "<pad>",
                         "unk_token": "<unk>", "tokenizer_class": "VitsTokenizer"}),
        "hf-test-norm": (hf, {"add_blank": True, "normalize": True, "phonemize": False, "pad_token": "<pad>",
                              "unk_token": "<unk>", "tokenizer_class": "VitsTokenizer"}),
        "vits-ljs": (ljs, {"add_blank": True, "clean_up_tokenization_spaces": True, "is_uroman": False,
                           "language": "en-us", "normalize": True, "pad_token": VITS_PAD, "phonemize": True,
                           "tokenizer_class": "VitsTokenizer", "unk_token": "<unk>"}),
    }


class Ref:
    """VitsTokenizer as transformers runs it (tokenize + convert_tokens_to_ids)."""

    def __init__(self, encoder, config, phonemize_fn):
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.language = config.get("language")
        self.add_blank = config.get("add_blank", True)
        self.normalize = config.get("normalize", True)
        self.phonemize = config.get("phonemize", True)
        self.is_uroman = config.get("is_uroman", False)
        self.phonemize_fn = phonemize_fn
        # PreTrainedTokenizer adds the special tokens (unk before pad); one
        # already in the vocabulary keeps its id, others get new ones.
        self.added = {}
        nxt = len(encoder)
        for key, default in (("unk_token", "<unk>"), ("pad_token", "<pad>")):
            tok = config.get(key, default)
            if not tok or tok in self.added:
                continue
            if tok in encoder:
                self.added[tok] = encoder[tok]
            else:
                self.added[tok] = nxt
                nxt += 1
        self.unk_token = config.get("unk_token", "<unk>")

    def normalize_text(self, input_string):
        all_vocabulary = list(self.encoder.keys()) + list(self.added.keys())
        filtered_text = ""
        i = 0
        while i < len(input_string):
            found_match = False
            for word in all_vocabulary:
                if input_string[i: i + len(word)] == word:
                    filtered_text += word
                    i += len(word)
                    found_match = True
                    break
            if not found_match:
                filtered_text += input_string[i].lower()
                i += 1
        return filtered_text

    def prepare(self, text):
        if self.normalize:
            text = self.normalize_text(text)
        if self.language == "ron":
            text = text.replace("ț", "ţ")
        if re.search(r"[^\x00-\x7F]", text) and self.is_uroman:
            raise ValueError("uroman")
        if self.phonemize:
            text = self.phonemize_fn(text)
            text = re.sub(r"\s+", " ", text)
        elif self.normalize:
            text = "".join(list(filter(lambda char: char in self.encoder, text))).strip()
        return text

    def split(self, text):
        """Trie.split: leftmost, then longest, added token."""
        out, start, i = [], 0, 0
        while i < len(text):
            best = None
            for tok in self.added:
                if text.startswith(tok, i) and (best is None or len(tok) > len(best)):
                    best = tok
            if best is None:
                i += 1
                continue
            out += [text[start:i], best]
            i += len(best)
            start = i
        out.append(text[start:])
        return [p for p in out if p]

    def encode(self, text, ours):
        """(ids, how many of them are not blanks)"""
        text = self.prepare(text)
        ids, real = [], 0
        for piece in self.split(text):
            if piece in self.added:
                tid = self.added[piece]
                if ours and piece not in self.encoder:
                    continue
                ids.append(tid)
                real += 1
                continue
            chars = list(piece)
            if ours:  # drop what Python cannot convert, before the blanks
                chars = [c for c in chars if c in self.encoder or self.unk_token in self.encoder]
                if not chars:
                    continue
            tokens = chars
            real += len(chars)
            if self.add_blank:
                tokens = [self.decoder.get(0)] * (len(chars) * 2 + 1)
                tokens[1::2] = chars
            for tok in tokens:
                if tok in self.added:
                    ids.append(self.added[tok])
                else:
                    ids.append(self.encoder.get(tok, self.encoder.get(self.unk_token)))
        return ids, real


def load_phonemizer(src):
    stubs = tempfile.mkdtemp()
    lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libespeak-ng.so.1")
    files = {
        "dlinfo.py": "class DLInfo:\n    def __init__(self, lib):\n        self.path = %r\n" % lib,
        "joblib.py": "def Parallel(*a, **k):\n    raise RuntimeError('stub')\ndef delayed(f):\n    return f\n",
        "segments.py": "class Profile: pass\nclass Tokenizer: pass\n__version__ = '2.2.0'\n",
        "typing_extensions.py": "from typing import *\nfrom typing import TypeAlias, Literal, Union\n",
    }
    for name, body in files.items():
        with open(os.path.join(stubs, name), "w") as f:
            f.write(body)
    sys.path[:0] = [src, stubs]
    os.environ.setdefault("PHONEMIZER_ESPEAK_LIBRARY", lib)
    from phonemizer import phonemize  # noqa: E402
    return lambda text: phonemize(text, language="en-us", backend="espeak", strip=True,
                                  preserve_punctuation=True, with_stress=True)


# transformers' tests/models/vits/test_tokenization_vits.py, test_tokenizer_integration
# (facebook/mms-tts-eng at a pinned revision), padding (38) removed: checks MMS_ENG and Ref.
HF_SEQS = [
    "BERT is designed to pre-train deep bidirectional representations from unlabeled text by jointly "
    "conditioning on both left and right context in all layers.",
    "The quick brown fox! Jumps over the lazy dog...",
    "We use k as our padding token",
]
HF_IDS = [
[0, 24, 0, 7, 0, 25, 0, 33, 0, 19, 0, 18, 0, 8, 0, 19, 0, 5, 0, 7, 0, 8, 0, 18, 0, 37, 0, 29, 0, 7, 0, 5, 0, 19, 0, 33, 0, 22, 0, 19, 0, 13, 0, 25, 0, 7, 0, 14, 0, 33, 0, 25, 0, 26, 0, 18, 0, 29, 0, 19, 0, 5, 0, 7, 0, 7, 0, 13, 0, 19, 0, 24, 0, 18, 0, 5, 0, 18, 0, 25, 0, 7, 0, 12, 0, 33, 0, 18, 0, 22, 0, 29, 0, 26, 0, 21, 0, 19, 0, 25, 0, 7, 0, 13, 0, 25, 0, 7, 0, 8, 0, 7, 0, 29, 0, 33, 0, 26, 0, 33, 0, 18, 0, 22, 0, 29, 0, 8, 0, 19, 0, 20, 0, 25, 0, 22, 0, 17, 0, 19, 0, 4, 0, 29, 0, 21, 0, 26, 0, 24, 0, 7, 0, 21, 0, 7, 0, 5, 0, 19, 0, 33, 0, 7, 0, 31, 0, 33, 0, 19, 0, 24, 0, 3, 0, 19, 0, 16, 0, 22, 0, 18, 0, 29, 0, 33, 0, 21, 0, 3, 0, 19, 0, 12, 0, 22, 0, 29, 0, 5, 0, 18, 0, 33, 0, 18, 0, 22, 0, 29, 0, 18, 0, 29, 0, 37, 0, 19, 0, 22, 0, 29, 0, 19, 0, 24, 0, 22, 0, 33, 0, 6, 0, 19, 0, 21, 0, 7, 0, 20, 0, 33, 0, 19, 0, 26, 0, 29, 0, 5, 0, 19, 0, 25, 0, 18, 0, 37, 0, 6, 0, 33, 0, 19, 0, 12, 0, 22, 0, 29, 0, 33, 0, 7, 0, 31, 0, 33, 0, 19, 0, 18, 0, 29, 0, 19, 0, 26, 0, 21, 0, 21, 0, 19, 0, 21, 0, 26, 0, 3, 0, 7, 0, 25, 0, 8, 0],
[0, 33, 0, 6, 0, 7, 0, 19, 0, 34, 0, 4, 0, 18, 0, 12, 0, 0, 0, 19, 0, 24, 0, 25, 0, 22, 0, 9, 0, 29, 0, 19, 0, 20, 0, 22, 0, 31, 0, 19, 0, 16, 0, 4, 0, 17, 0, 13, 0, 8, 0, 19, 0, 22, 0, 32, 0, 7, 0, 25, 0, 19, 0, 33, 0, 6, 0, 7, 0, 19, 0, 21, 0, 26, 0, 2, 0, 3, 0, 19, 0, 5, 0, 22, 0, 37, 0],
[0, 9, 0, 7, 0, 19, 0, 4, 0, 8, 0, 7, 0, 19, 0, 0, 0, 19, 0, 26, 0, 8, 0, 19, 0, 22, 0, 4, 0, 25, 0, 19, 0, 13, 0, 26, 0, 5, 0, 5, 0, 18, 0, 29, 0, 37, 0, 19, 0, 33, 0, 22, 0, 0, 0, 7, 0, 29, 0],
]


# (voice, text): character voices first, then the phoneme voice.
CASES = [
    ("mms-eng", "BERT is designed to pre-train deep bidirectional representations from unlabeled text by jointly "
                "conditioning on both left and right context in all layers."),
    ("mms-eng", "The quick brown fox! Jumps over the lazy dog..."),
    ("mms-eng", "We use k as our padding token"),
    ("mms-eng", "Hello, World! It's 2 o'clock – OK?"),
    ("mms-eng", "  Ça va TRÈS bien, merci.  "),
    ("mms-eng", "İstanbul"),
    ("mms-eng", "a <unk> b <pad> c"),
    ("mms-eng", "tab\tand\nnewline"),
    ("mms-eng", ""),
    ("mms-eng", "   "),
    ("mms-eng", "!!! ??? ;;"),
    ("mms-eng", "日本語"),
    ("mms-eng-noblank", "Hello, World!"),
    ("mms-ron", "Vițs țară Ţara ȚARA"),
    ("mms-uroman", "hello world"),
    ("mms-uroman", "이봐 무슨 일이야"),
    ("hf-test", "VITS; is a model for t-t-s!"),
    ("hf-test", "a<pad>b<unk>c"),
    ("hf-test", "<pad>"),
    ("hf-test-norm", "VITS; is a model for t-t-s!"),  # transformers' test_normalization: "vits is a model for t-t-s"
    ("hf-test-norm", "A<PAD><pad>b|<unk>"),
    ("vits-ljs", "Hello, world."),
    ("vits-ljs", "The quick brown fox jumps over the lazy dog!"),
    ("vits-ljs", "I have 2 cats."),
    ("vits-ljs", "HELLO World"),
    ("vits-ljs", "It costs $3.50, on 12/05/2023; really?!"),
    ("vits-ljs", ", hello"),
    ("vits-ljs", "Wait... what?"),
    ("vits-ljs", "First line.\n\nSecond line, here!\n"),
    ("vits-ljs", "He said: «Bonjour» — (quietly) [twice] {ok} “yes” ¿no? ¡sí!"),
    ("vits-ljs", "Café déjà vu, naïve Zoë."),
    ("vits-ljs", "state-of-the-art don't   stop\tnow"),
    ("vits-ljs", "...!?"),
    ("vits-ljs", "a, b; c: d."),
    ("vits-ljs", ""),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phonemizer-src", required=True, help="folder holding the phonemizer package sources")
    args = ap.parse_args()
    phon = load_phonemizer(args.phonemizer_src)
    vs = voices()
    for name, (vocab, config) in vs.items():
        os.makedirs(os.path.join(HERE, name), exist_ok=True)
        with open(os.path.join(HERE, name, "vocab.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(vocab, indent=2, ensure_ascii=False) + "\n")
        with open(os.path.join(HERE, name, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    eng = Ref(vs["mms-eng"][0], vs["mms-eng"][1], phon)
    for text, ids in zip(HF_SEQS, HF_IDS):
        assert eng.encode(text, ours=False)[0] == ids, text
    out = []
    for voice, text in CASES:
        vocab, config = vs[voice]
        ref = Ref(vocab, config, phon)
        case = {"voice": voice, "text": text}
        if config.get("phonemize", True):
            case["phonemes"] = phon(text)
        try:
            py = ref.encode(text, ours=False)[0]
            ours, real = ref.encode(text, ours=True)
        except ValueError:
            case["error"] = "unsupported"
            out.append(case)
            continue
        if real == 0:
            case["error"] = "invalid"
        if None not in py and all(i < len(vocab) for i in py):
            assert py == ours, (voice, text)
        else:
            case["python"] = py
        case["ids"] = ours
        out.append(case)
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in out) + "\n]\n")
    # the tool's own view, for the record (same library, trace output)
    ver = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    print("wrote %d cases (%s)" % (len(out), ver or "espeak-ng CLI not installed"))


if __name__ == "__main__":
    main()
