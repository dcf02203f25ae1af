#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets that need built inputs
(tests/fuzz/seeds/<target>); run from anywhere, stdlib only.

fuzz_server: one request per file as a client sends it, the first byte
choosing the service ('0' asr_streaming, '1' translate, '2' tts,
'3' pipeline).  WebSocket frames are masked with a zero key, so the
payloads stay readable and easy for the fuzzer to mutate.
fuzz_onnx: small hand-encoded ONNX protobufs.
fuzz_tokenizer: a byte-level BPE tokenizer.json with every byte, then text
and token ids.  fuzz_subtitle: timed segments.  fuzz_mt_text: sentences."""
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


def main():
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
