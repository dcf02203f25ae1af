#!/bin/sh
# Regenerates the SentencePiece fixtures of tests/nn/test_spm.c and
# test_nmt_tokenizer.c.  Needs Debian's `sentencepiece` (spm_train,
# spm_encode, spm_decode) and python3; see README.txt.  Deterministic up to
# spm_train's multithreading (the committed models are the reference).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$(mktemp -d)}
python3 "$here/make_corpus.py" "$work"

train() { # name type vocab extra...
    name=$1 type=$2 vocab=$3
    shift 3
    spm_train --input="$work/train.txt" --model_prefix="$work/$name" --model_type="$type" \
        --vocab_size="$vocab" --num_threads=2 --input_sentence_size=200000 \
        --shuffle_input_sentence=true --minloglevel=2 "$@" >/dev/null 2>&1
}
train uni_nfkc unigram 3000 --user_defined_symbols='<sep>,[MASK],http' --control_symbols='<ctl>'
train uni_nfkc_bf unigram 3000 --byte_fallback=true
train uni_id unigram 3000 --normalization_rule_name=identity --remove_extra_whitespaces=false
train uni_id_bf unigram 3000 --normalization_rule_name=identity --byte_fallback=true \
    --treat_whitespace_as_suffix=true
train bpe_nfkc bpe 3000 --user_defined_symbols='<sep>,[MASK],http' --control_symbols='<ctl>'
train bpe_nfkc_bf bpe 3000 --byte_fallback=true
train bpe_id bpe 3000 --normalization_rule_name=identity
train bpe_id_bf bpe 3000 --normalization_rule_name=identity --byte_fallback=true \
    --add_dummy_prefix=false

for m in uni_nfkc uni_nfkc_bf uni_id uni_id_bf bpe_nfkc bpe_nfkc_bf bpe_id bpe_id_bf; do
    spm_encode --model="$work/$m.model" --output_format=id <"$work/test.txt" >"$work/$m.ids"
    spm_encode --model="$work/$m.model" --output_format=piece <"$work/test.txt" >"$work/$m.pieces"
    spm_decode --model="$work/$m.model" --input_format=id <"$work/$m.ids" >"$work/$m.decoded"
    python3 "$here/make_expect.py" "$work" "$m" random_ids
    spm_decode --model="$work/$m.model" --input_format=id <"$work/$m.rids" >"$work/$m.rdecoded"
    python3 "$here/make_expect.py" "$work" "$m" expect "$here"
    gzip -9n <"$work/$m.model" >"$here/$m.model.gz"
done
gzip -9n <"$work/test.txt" >"$here/sentences.txt.gz"
cp "$work/test_counts.txt" "$here/sentence_counts.txt"
echo "fixtures written to $here (work files in $work)"
