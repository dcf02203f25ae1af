#!/usr/bin/env python3
"""Writes the pytorch_model.bin fixtures of tests/nn/test_torch_pickle.c.

Run once, from the repository root, with Debian's python3-torch and numpy
(the outputs are committed; CI has no torch):

    /usr/bin/python3 tests/data/torch/generate.py

- f32.bin, f16.bin, bf16.bin: small state dicts saved with torch.save to a
  path (torch 1.13 names the zip's top folder after the file: "f32/").
- archive.bin: the same saved to a buffer (top folder "archive/", what
  newer torch always writes); archive-byteorder.bin adds newer torch's
  "byteorder" record ("little").
- shared.bin: tied weights (two names, one storage) and views at nonzero
  storage offsets.
- expected.json: every tensor of those files, its dtype, shape and values
  (f16/bf16 values are exact in a float64).
- marian-mini-bin/: tests/data/oracles/marian-mini/model.safetensors as
  pytorch_model.bin (same dtype, the tied embeddings sharing one storage)
  with its config.json.
- bad/*.bin: hostile and broken files, each refused with a message.
- legacy.bin: torch's pre-1.6 format (not a zip), refused.
- many_storages.bin: one tensor after 600 storages read through the memo
  (the value table grows while a persistent id is read).
"""
import collections
import io
import json
import os
import shutil
import struct
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
ORACLE = os.path.join(ROOT, "tests", "data", "oracles", "marian-mini")

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def small_state(dtype):
    g = torch.Generator().manual_seed(7)
    sd = collections.OrderedDict()
    sd["layer.weight"] = torch.randn(3, 4, generator=g).to(dtype)
    sd["layer.bias"] = torch.randn(3, generator=g).to(dtype)
    sd["norm.weight"] = torch.randn(2, 2, 2, generator=g).to(dtype)
    sd["scalar"] = torch.tensor(1.5, dtype=dtype)
    sd["four.d"] = torch.randn(1, 2, 3, 2, generator=g).to(dtype)
    return sd


def shared_state():
    g = torch.Generator().manual_seed(11)
    emb = torch.randn(5, 4, generator=g)
    sd = collections.OrderedDict()
    sd["shared.weight"] = emb
    sd["lm_head.weight"] = emb  # tied: the same tensor
    sd["rows.tail"] = emb[2:]  # a view at storage offset 8
    sd["row.3"] = emb[3]  # offset 12, one dimension
    flat = torch.randn(24, generator=g)
    sd["flat.a"] = flat[:6].view(2, 3)
    sd["flat.b"] = flat[6:].view(3, 6)  # offset 6, shape of its own
    return sd


def describe(sd):
    out = []
    for k, t in sd.items():
        out.append({"name": k, "dtype": DTYPES[t.dtype], "shape": list(t.shape),
                    "values": [float(x) for x in t.detach().to(torch.float64).flatten().tolist()]})
    return out


def read_safetensors(path):
    """safetensors without the package: u64 header length, JSON, data."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    base = 8 + n
    np_types = {"F32": np.float32, "F16": np.float16}
    sd = collections.OrderedDict()
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b0, b1 = v["data_offsets"]
        if v["dtype"] == "BF16":
            raw = np.frombuffer(b[base + b0:base + b1], dtype=np.int16).copy()
            t = torch.from_numpy(raw).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(b[base + b0:base + b1], dtype=np_types[v["dtype"]]).copy())
        sd[k] = t.reshape(v["shape"])
    return sd


def marian_bin():
    sd = read_safetensors(os.path.join(ORACLE, "model.safetensors"))
    # tie what transformers ties when the bytes say so: one storage, several
    # names, as save_pretrained's pytorch_model.bin has them
    tied = ["model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
            "lm_head.weight"]
    for k in tied[1:]:
        if k in sd and torch.equal(sd[k], sd[tied[0]]):
            sd[k] = sd[tied[0]]
    out = os.path.join(HERE, "marian-mini-bin")
    os.makedirs(out, exist_ok=True)
    torch.save(sd, os.path.join(out, "pytorch_model.bin"))
    shutil.copy(os.path.join(ORACLE, "config.json"), out)
    return sum(1 for k in tied[1:] if sd.get(k) is sd[tied[0]])


def put(z, name, data, compress=False, skew=0):
    """Writes an entry whose data starts at a multiple of 64, as torch's
    writer does (padding in an extra field), plus skew bytes."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    start = z.fp.tell() + 30 + len(name.encode())
    pad = (skew - (start + 4)) % 64
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    z.writestr(info, data)


def rezip(src, dst, extra=None, compress=None):
    """Copies a torch zip entry by entry, adding or deflating entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for i in zin.infolist():
            put(zout, i.filename, zin.read(i.filename), compress=bool(compress and i.filename.endswith(compress)))
        for k, v in (extra or {}).items():
            put(zout, k, v)


# --- hand-written pickles (protocol 2 opcodes) -----------------------------

def u(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i1(x):
    return b"K" + bytes([x])


def long1(x):
    b = x.to_bytes(8, "little", signed=True)
    return b"\x8a\x08" + b


def tup(*items):
    return b"(" + b"".join(items) + b"t"


STORAGE = {"F": b"ctorch\nFloatStorage\n", "L": b"ctorch\nLongStorage\n"}


def persid(key, numel, kind="F"):
    return tup(u("storage"), STORAGE[kind], u(key), u("cpu"), long1(numel)) + b"Q"


def tensor(key, numel, offset, size, stride, kind="F"):
    return (b"ctorch._utils\n_rebuild_tensor_v2\n" +
            tup(persid(key, numel, kind), long1(offset), tup(*[long1(s) for s in size]),
                tup(*[long1(s) for s in stride]), b"\x89", b"ccollections\nOrderedDict\n)R") + b"R")


def state(*entries):
    body = b"".join(u(k) + v for k, v in entries)
    return b"\x80\x02ccollections\nOrderedDict\n)R(" + body + b"u."


def archive(pkl, storages=None, name="archive", extra=None, skew=0):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if pkl is not None:
            put(z, name + "/data.pkl", pkl)
        for k, v in (storages or {}).items():
            put(z, name + "/data/" + k, v, skew=skew)
        put(z, name + "/version", b"3\n")
        for k, v in (extra or {}).items():
            put(z, k, v)
    return buf.getvalue()


def bad_files():
    six = {"0": np.arange(6, dtype=np.float32).tobytes()}
    ok = tensor("0", 6, 0, [2, 3], [3, 1])
    files = {
        # code execution attempts: refused by name, never run
        "os_system": archive(b"\x80\x02cos\nsystem\n" + u("echo pwned") + b"\x85R."),
        "builtins_eval": archive(state(("x", b"cbuiltins\neval\n" + u("1") + b"\x85R"))),
        "getattr": archive(b"\x80\x02c__builtin__\ngetattr\n."),
        "stack_global": archive(b"\x80\x04" + b"\x8c\x02os\x8c\x06system\x93" + b"."),
        "inst": archive(b"\x80\x02(ios\nsystem\n."),
        # REDUCE on something other than the rebuilders
        "reduce_storage": archive(b"\x80\x02ctorch\nFloatStorage\n)R."),
        "reduce_string": archive(b"\x80\x02" + u("os.system") + b")R."),
        # BINPERSID on something other than ('storage', type, key, loc, n)
        "persid_short": archive(state(("w", b"ctorch._utils\n_rebuild_tensor_v2\n" +
                                       tup(tup(u("storage"), STORAGE["F"], u("0"), u("cpu")) + b"Q") + b"R")), six),
        "persid_tag": archive(b"\x80\x02" + tup(u("module"), STORAGE["F"], u("0"), u("cpu"), i1(6)) + b"Q.", six),
        "persid_missing": archive(state(("w", tensor("7", 6, 0, [6], [1]))), six),
        # sizes that do not fit
        "storage_too_big": archive(state(("w", tensor("0", 7, 0, [7], [1]))), six),
        "view_past_end": archive(state(("w", tensor("0", 6, 4, [3], [1]))), six),
        "negative_size": archive(state(("w", tensor("0", 6, 0, [-1, 3], [3, 1]))), six),
        "huge_size": archive(state(("w", tensor("0", 6, 0, [1 << 40], [1]))), six),
        "overflow_size": archive(state(("w", tensor("0", 6, 0, [(1 << 31) - 1] * 4, [1, 1, 1, 1]))), six),
        "negative_offset": archive(state(("w", tensor("0", 6, -2, [2], [1]))), six),
        "non_contiguous": archive(state(("w", tensor("0", 6, 0, [2, 3], [1, 2]))), six),
        "five_dims": archive(state(("w", tensor("0", 6, 0, [1, 1, 1, 2, 3], [6, 6, 6, 3, 1]))), six),
        "int64": archive(state(("ok", ok), ("ids", tensor("1", 2, 0, [2], [1], "L"))),
                         {"0": six["0"], "1": np.arange(2, dtype=np.int64).tobytes()}),
        # structure
        "no_pickle": archive(None, six),
        "truncated_pickle": archive(state(("w", ok))[:60], six),
        "deep_marks": archive(b"\x80\x02" + b"(" * 1000 + b"."),
        "deep_stack": archive(b"\x80\x02" + b"]" * 70000 + b"."),
        "deep_tuples": archive(b"\x80\x02N" + b"\x85" * 10000 + b"."),
        "not_a_dict": archive(b"\x80\x02]" + ok + b"a.", six),
        "not_a_tensor": archive(state(("w", i1(3)))),
        "memo_unset": archive(b"\x80\x02h\x05."),
        "big_endian": archive(state(("w", ok)), six, extra={"archive/byteorder": b"big"}),
        "two_pickles": archive(state(("w", ok)), six, extra={"other/data.pkl": state()}),
        "unaligned": archive(state(("w", ok)), six, skew=2),
    }
    # a pickle byte changed after the CRC was computed
    b = bytearray(archive(state(("w", ok)), six))
    at = bytes(b).index(b"_rebuild_tensor_v2")
    b[at] = ord("X")
    files["bad_crc"] = bytes(b)
    out = os.path.join(HERE, "bad")
    os.makedirs(out, exist_ok=True)
    for k, v in files.items():
        with open(os.path.join(out, k + ".bin"), "wb") as f:
            f.write(v)
    # deflated storages cannot be used in place
    rezip(os.path.join(HERE, "f32.bin"), os.path.join(out, "compressed.bin"), compress="data/0")
    # a truncated zip: no central directory
    with open(os.path.join(HERE, "f32.bin"), "rb") as f:
        b = f.read()
    with open(os.path.join(out, "truncated_zip.bin"), "wb") as f:
        f.write(b[:len(b) // 2])


def many_storages():
    """A state dict whose pickle reads 600 persistent ids from one memoised
    tuple before its tensor: a storage value is created at every value
    count from about 12 to 612, so the value table grows (at 256 and 512)
    while a persistent id is being read."""
    pid = tup(u("storage"), STORAGE["F"], u("0"), u("cpu"), long1(6))
    spare = b"](" + pid + b"q\x01Q" + b"h\x01Q" * 600 + b"e"
    pkl = (b"\x80\x02ccollections\nOrderedDict\n)R" + spare + b"b(" + u("w") +
           tensor("0", 6, 0, [2, 3], [3, 1]) + b"u.")
    with open(os.path.join(HERE, "many_storages.bin"), "wb") as f:
        f.write(archive(pkl, {"0": struct.pack("<6f", *range(6))}))


def main():
    expected = {}
    for name, dt in (("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)):
        sd = small_state(dt)
        torch.save(sd, os.path.join(HERE, name + ".bin"))
        expected[name] = describe(sd)
    sd = small_state(torch.float32)
    buf = io.BytesIO()
    torch.save(sd, buf)
    with open(os.path.join(HERE, "archive.bin"), "wb") as f:
        f.write(buf.getvalue())
    expected["archive"] = describe(sd)
    rezip(os.path.join(HERE, "archive.bin"), os.path.join(HERE, "archive-byteorder.bin"),
          extra={"archive/byteorder": "little"})
    expected["archive-byteorder"] = describe(sd)
    sd = shared_state()
    torch.save(sd, os.path.join(HERE, "shared.bin"))
    expected["shared"] = describe(sd)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    torch.save(small_state(torch.float32), os.path.join(HERE, "legacy.bin"), _use_new_zipfile_serialization=False)
    tied = marian_bin()
    bad_files()
    many_storages()
    # every fixture loads back in torch as written (the hostile ones aside)
    for name in ("f32", "f16", "bf16", "archive", "archive-byteorder", "shared"):
        back = torch.load(os.path.join(HERE, name + ".bin"))
        assert [k["name"] for k in expected[name]] == list(back.keys()), name
    print("torch", torch.__version__, "; marian-mini tied names:", tied)


if __name__ == "__main__":
    main()
