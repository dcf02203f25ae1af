#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets that need built inputs
(tests/fuzz/seeds/<target>); run from anywhere, stdlib only.

fuzz_server: one request per file as a client sends it, the first byte
choosing the service ('0' asr_streaming, '1' translate, '2' tts,
'3' pipeline).  WebSocket frames are masked with a zero key, so the
payloads stay readable and easy for the fuzzer to mutate.
fuzz_onnx: small hand-encoded ONNX protobufs.
fuzz_tokenizer: a byte-level BPE tokenizer.json with every byte, then text
and token ids.  fuzz_subtitle: timed segments.  fuzz_mt_text: sentences.
fuzz_vits: an 8-byte header, then vocab.json, tokenizer_config.json, text
and a VITS config.json, NUL-separated (see tests/fuzz/fuzz_vits.c)."""
import json
import math
import os
import struct

SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def http(method, path, body=b"", ctype=None, extra=""):
    h = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
    if ctype:
        h += f"Content-Type: {ctype}\r\n"
    if body or method == "POST":
        h += f"Content-Length: {len(body)}\r\n"
    h += extra + "\r\n"
    return h.encode() + body


def frame(opcode, payload):
    n = len(payload)
    if n < 126:
        hdr = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        hdr = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack(">Q", n)
    return hdr + b"\0\0\0\0" + payload


def ws(path, msgs):
    up = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
          "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    out = up
    for m in msgs:
        out += frame(1, m.encode()) if isinstance(m, str) else frame(2, m)
    return out + frame(8, struct.pack(">H", 1000))


def pcm(seconds, rate=16000, hz=440.0):
    n = int(seconds * rate)
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * i / rate)))
                    for i in range(n))


def wav(seconds, rate=16000):
    d = pcm(seconds, rate)
    return (b"RIFF" + struct.pack("<I", 36 + len(d)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" +
            struct.pack("<I", len(d)) + d)


def multipart(fields, boundary="XyZ"):
    out = b""
    for name, value, fname in fields:
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"".encode()
        if fname:
            out += f"; filename=\"{fname}\"\r\nContent-Type: audio/wav".encode()
        out += b"\r\n\r\n" + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, value):
    """A protobuf field: bytes/str as length-delimited, int as varint."""
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def onnx_seeds():
    # TensorProto: dims=1, data_type=2, name=8, raw_data=9, float_data=4
    w = field(1, 2) + field(1, 3) + field(2, 1) + field(8, "w") + field(9, struct.pack("<6f", *range(6)))
    shape = field(1, 2) + field(2, 7) + field(8, "shape") + field(9, struct.pack("<2q", 3, 2))
    # NodeProto: input=1, output=2, name=3, op_type=4, attribute=5
    # AttributeProto: name=1, t=5, g=6, type=20 (4 = TENSOR, 5 = GRAPH)
    const = field(2, "c") + field(4, "Constant") + field(5, field(1, "value") + field(5, w) + field(20, 4))
    mm = field(1, "x") + field(1, "w") + field(2, "y") + field(3, "mm") + field(4, "MatMul")
    sub = field(1, field(1, "c") + field(2, "z") + field(4, "Identity")) + field(2, "then")
    iff = field(1, "cond") + field(2, "z") + field(4, "If") + field(5, field(1, "then_branch") + field(6, sub) +
                                                                   field(20, 5))
    # GraphProto: node=1, name=2, initializer=5; ModelProto: ir_version=1, graph=7
    graph = field(1, const) + field(1, mm) + field(1, iff) + field(2, "g") + field(5, w) + field(5, shape)
    write("fuzz_onnx", "small.onnx", field(1, 8) + field(7, graph))
    write("fuzz_onnx", "initializer_only.onnx", field(1, 7) + field(7, field(5, w)))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tokenizer_seeds():
    m = bytes_to_unicode()
    vocab = {m[b]: i for i, b in enumerate(sorted(m, key=lambda b: ord(m[b])))}
    merges = []
    for a, b in [("t", "h"), ("th", "e"), ("Ġ", "the"), ("i", "n"), ("Ġ", "in"), ("e", "r")]:
        merges.append(f"{a} {b}")
        vocab[a + b] = len(vocab)
    added = [{"id": 320, "content": "<|endoftext|>"}, {"id": 321, "content": "<|startoftranscript|>"}]
    doc = json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": added},
                     ensure_ascii=False).encode()
    ids = struct.pack("<8h", 70, 261, 263, 320, 321, 1000, -1, 200)
    write("fuzz_tokenizer", "bpe", doc + b"\0" + "the thing in there, ça va? 日本".encode() + b"\0" + ids)
    arr = json.dumps({"model": {"vocab": vocab, "merges": [m.split(" ") for m in merges]}},
                     ensure_ascii=False).encode()
    write("fuzz_tokenizer", "merge_pairs", arr + b"\0" + b"inner\xff\xfe text" + b"\0")


def subtitle_seeds():
    def seg(a, b, text):
        t = text.encode()
        return struct.pack("<dd", a, b) + bytes([len(t)]) + t
    write("fuzz_subtitle", "segments", seg(0.0, 1.5, "Hello world.") + seg(1.5, 3.25, " <b>a & b</b>\n\nnext") +
          seg(3600 * 2 + 0.9995, 1.0, "x --> y"))
    write("fuzz_subtitle", "odd_times", seg(float("nan"), float("inf"), "nan") + seg(-5, 1e300, "\u00e9t\u00e9"))


def mt_seeds():
    write("fuzz_mt_text", "en", b"\0The house is big.\nMy brother works in the city.  Tabs\there.")
    write("fuzz_mt_text", "es", b"\1La casa es grande. [ruido] <b>negrita</b> ^$@*#/\\{}")


def wyoming_seeds():
    def ev(t, data=None, payload=b"", header_data=None):
        h = {"type": t, "version": "1.5.4"}
        d = json.dumps(data).encode() if data else b""
        if header_data is not None:
            h["data"] = header_data
        if d:
            h["data_length"] = len(d)
        if payload:
            h["payload_length"] = len(payload)
        return json.dumps(h).encode() + b"\n" + d + payload
    fmt = {"rate": 16000, "width": 2, "channels": 1}
    write("fuzz_wyoming", "describe", ev("describe"))
    write("fuzz_wyoming", "transcribe", ev("transcribe", {"language": "en"}) + ev("audio-start", fmt) +
          ev("audio-chunk", fmt, pcm(0.05)) + ev("audio-stop", {"timestamp": 0}))
    write("fuzz_wyoming", "synthesize", ev("synthesize", {"text": "Hello.", "voice": {"name": "slt"}},
                                           header_data={"text": "overridden"}))
    write("fuzz_wyoming", "old_style", b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, '
          b'"channels": 1}, "payload_length": 4}\n\x00\x01\x02\x03')


# at_vits_random_model's "tiny" voice (src/tools/vits_random_model.c): the
# weights fuzz_vits makes, so this config loads and the altered ones test
# what the loader accepts beside them.
VITS_TINY = {
    "depth_separable_channels": 2, "depth_separable_num_layers": 2, "duration_predictor_filter_channels": 256,
    "duration_predictor_flow_bins": 4, "duration_predictor_kernel_size": 3, "duration_predictor_num_flows": 2,
    "duration_predictor_tail_bound": 5.0, "ffn_dim": 24, "ffn_kernel_size": 3, "flow_size": 8,
    "hidden_act": "relu", "hidden_size": 16, "layer_norm_eps": 1e-05, "leaky_relu_slope": 0.1,
    "model_type": "vits", "noise_scale": 0.667, "noise_scale_duration": 0.8, "num_attention_heads": 2,
    "num_hidden_layers": 1, "num_speakers": 2, "prior_encoder_num_flows": 2, "prior_encoder_num_wavenet_layers": 2,
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "resblock_kernel_sizes": [3, 7, 11],
    "sampling_rate": 8000, "speaker_embedding_size": 8, "speaking_rate": 1.0, "upsample_initial_channel": 32,
    "upsample_kernel_sizes": [8, 8], "upsample_rates": [4, 4], "use_bias": True,
    "use_stochastic_duration_prediction": True, "vocab_size": 12, "wavenet_dilation_rate": 1,
    "wavenet_kernel_size": 3, "window_size": 2}


def vits_seeds():
    def js(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()

    def seed(name, h0, h1, ids, noise, vocab, tok_cfg, text, model_cfg=None):
        # header: tokenizer flags, model flags, 4 ids, the two noise scales
        out = bytes([h0, h1] + ids + noise) + vocab + b"\0" + tok_cfg + b"\0" + text
        if model_cfg is not None:
            out += b"\0" + model_cfg
        write("fuzz_vits", name, out)

    # facebook/mms-tts-eng's characters and config
    mms = js({c: i for i, c in enumerate("k'zyudhesw–3cp-1jmi flo0bra42n_xvtq56g")})
    mms_cfg = js({"add_blank": True, "is_uroman": False, "language": "eng", "normalize": True,
                  "pad_token": "<pad>", "phonemize": False, "unk_token": "<unk>"})
    tiny = dict(VITS_TINY)
    # ids 0..3 of speaker 0 (bits 3-4: speaker + 1), the config's noise
    seed("mms_eng", 0x00, 0x0B, [1, 5, 7, 11], [85, 102], mms, mms_cfg,
         "Hello, World! It's 2024 – ţ.".encode(), js(tiny))
    # kakao-enterprise/vits-ljs: phonemes, pad "_" (also id 0, the blank);
    # the phonemiser spreads whitespace and stress marks; streamed, stopped
    ljs = "_;:,.!?¡¿—…\"«»“” ABCDEFGHIJKLMNOPQRSTUVWXYZ" \
          "abcdefghijklmnopqrstuvwxyzɑɐɒæɔəɛɜɪŋʃʊ" \
          "ʌˈˌːɹθðʒɾ"
    ljs_cfg = js({"add_blank": True, "is_uroman": False, "language": "en-us", "normalize": True,
                  "pad_token": "_", "phonemize": True, "unk_token": "<unk>"})
    alt = dict(tiny, speaking_rate=0.5, noise_scale=0.0, hidden_act="gelu", window_size=0)
    ljs_vocab = js({c: i for i, c in enumerate(ljs)})
    seed("vits_ljs", 1 << 3, 0x21, [3, 9, 0, 0], [0, 255], ljs_vocab, ljs_cfg,
         b"A cat sat, then ran away.", js(alt))
    # the config built in the harness (add_blank, normalize), a decoder
    # with other rates, dilations and slope beside the same weights
    alt = dict(tiny, upsample_rates=[2, 6], resblock_dilation_sizes=[[1, 2, 4], [2], [1, 3]],
               leaky_relu_slope=0.2, wavenet_dilation_rate=3, layer_norm_eps=1e-3, use_bias=False,
               num_speakers=1, speaker_embedding_size=0)
    seed("built_blank", 0x03, 0x0B, [200, 17, 4, 9], [255, 40], mms, b"",
         "ÀBC def İstanbul".encode(), js(alt))
    # shapes that do not fit the weights: the loader refuses; uroman text
    # outside ASCII is refused; unchecked ids
    alt = dict(tiny, vocab_size=38, num_speakers=1)
    uro = js({"add_blank": True, "is_uroman": True, "language": "kor", "normalize": True, "phonemize": False})
    seed("mismatch_uroman", 0x00, 0x07, [0, 9, 30, 250], [10, 10], mms, uro, "한국어 ok".encode(),
         js(alt))
    # Romanian's t comma; a plain duration predictor the weights lack
    ron = js({c: i for i, c in enumerate("_ aăâbcdefghiîjklmnoprsştţuvxz'-")})
    alt = dict(tiny, use_stochastic_duration_prediction=False, resblock_kernel_sizes=[3, 7],
               resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]])
    seed("ron_plain_dp", 0x00, 0x18, [1, 2, 3, 4], [100, 100], ron,
         js({"add_blank": False, "language": "ron", "normalize": True, "phonemize": False}),
         "Țară frumoasă".encode(), js(alt))
    # phonemisers that fail, return nothing or invalid UTF-8; invalid text
    for mode, name in [(3, "phonemizer_fails"), (4, "phonemizer_nothing"), (2, "phonemizer_bad_utf8")]:
        seed(name, 0x05 | mode << 3, 0, [0] * 4, [0, 0], ljs_vocab, b"", b"Some text.")
    seed("text_bad_utf8", 0x00, 0, [0] * 4, [0, 0], mms, mms_cfg, b"abc\xc3(def\xff")


def main():
    vits_seeds()
    wyoming_seeds()
    onnx_seeds()
    tokenizer_seeds()
    subtitle_seeds()
    mt_seeds()
    seeds = {}
    for i, svc in enumerate(["asr", "translate", "tts", "pipeline"]):
        seeds[f"{svc}_health"] = (i, http("GET", "/health"))
        seeds[f"{svc}_ready"] = (i, http("GET", "/ready?verbose=1"))
    seeds["asr_metrics"] = (0, http("GET", "/metrics"))
    seeds["asr_models"] = (0, http("GET", "/v1/models"))
    body, ct = multipart([("model", "pocketsphinx", None), ("response_format", "verbose_json", None),
                          ("language", "en", None), ("file", wav(0.3), "a.wav")])
    seeds["asr_transcribe"] = (0, http("POST", "/v1/audio/transcriptions", body, ct))
    body, ct = multipart([("model", "whisper-1", None), ("response_format", "srt", None),
                          ("file", wav(0.2, 8000), "b.wav")])
    seeds["asr_translate_srt"] = (0, http("POST", "/v1/audio/translations", body, ct))
    body, ct = multipart([("response_format", "verbose_json", None), ("timestamp_granularities[]", "word", None),
                          ("timestamp_granularities[]", "segment", None),
                          ("hallucination_silence_threshold", "1.5", None), ("file", wav(0.3), "w.wav")])
    seeds["asr_words"] = (0, http("POST", "/v1/audio/transcriptions", body, ct))
    seeds["asr_stream"] = (0, ws("/v1/stream?model=pocketsphinx", [
        json.dumps({"type": "config", "language": "en", "sample_rate": 16000, "encoding": "pcm16"}),
        pcm(0.2), json.dumps({"type": "end"})]))
    seeds["asr_stream_stereo"] = (0, ws("/v1/stream", [
        json.dumps({"sample_rate": 8000, "channels": 2}), pcm(0.1, 8000) * 2, "EOS"]))
    seeds["translate_json"] = (1, http("POST", "/translate", json.dumps(
        {"q": "The house is big.", "source": "en", "target": "es", "format": "text"}).encode(),
        "application/json"))
    seeds["translate_array"] = (1, http("POST", "/translate", json.dumps(
        {"q": ["La casa es grande.", "El perro"], "source": "es", "target": "en"}).encode(),
        "application/json"))
    seeds["translate_form"] = (1, http("POST", "/translate", b"q=Hello+world%21&source=en&target=ca",
                                      "application/x-www-form-urlencoded"))
    seeds["translate_languages"] = (1, http("GET", "/languages"))
    seeds["translate_auto_html"] = (1, http("POST", "/translate", json.dumps(
        {"q": "<p>The <b>house</b> &amp; the city</p>", "source": "auto", "target": "ES", "format": "html",
         "alternatives": 1, "api_key": "k"}).encode(), "application/json"))
    seeds["translate_detect"] = (1, http("POST", "/detect", b"q=Bonjour+tout+le+monde",
                                       "application/x-www-form-urlencoded"))
    seeds["translate_settings"] = (1, http("GET", "/frontend/settings"))
    body = json.dumps({"q": "Hello there.", "source": "en", "target": "es"}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    seeds["translate_chunked"] = (1, b"POST /translate HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json"
                                     b"\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer k\r\n\r\n" +
                                  chunked + b"0\r\n\r\n")
    seeds["tts_speech"] = (2, http("POST", "/v1/audio/speech", json.dumps(
        {"model": "tts-1", "input": "Hello.", "voice": "alloy", "response_format": "wav",
         "speed": 1.5}).encode(), "application/json"))
    seeds["tts_speech_pcm"] = (2, http("POST", "/v1/audio/speech", json.dumps(
        {"input": "Hola.", "voice": "es", "response_format": "pcm"}).encode(), "application/json"))
    seeds["tts_voices"] = (2, http("GET", "/v1/voices?language=en"))
    seeds["tts_speech_sse_opus"] = (2, http("POST", "/v1/audio/speech", json.dumps(
        {"input": "Hi there.", "response_format": "opus", "stream_format": "sse", "sample_rate": 16000}).encode(),
        "application/json"))
    seeds["tts_speech_mp3_cors"] = (2, b"OPTIONS /v1/audio/speech HTTP/1.1\r\nHost: fuzz\r\nOrigin: http://a\r\n"
                                       b"Access-Control-Request-Method: POST\r\n\r\n")
    seeds["pipeline_page"] = (3, http("GET", "/"))
    seeds["pipeline_config"] = (3, http("GET", "/v1/config"))
    seeds["pipeline_ws"] = (3, ws("/v1/pipeline", [
        json.dumps({"type": "config", "source": "en", "target": "es", "voice": "es", "speak": True,
                    "sample_rate": 16000, "encoding": "pcm16", "channels": 1, "speed": 1.0}),
        pcm(0.2), json.dumps({"type": "end"})]))
    for name, (svc, data) in seeds.items():
        write("fuzz_server", name, bytes([ord("0") + svc]) + data)


if __name__ == "__main__":
    main()
