#!/usr/bin/env python3
"""Helper of generate.sh.

make_expect.py WORK MODEL random_ids     writes WORK/MODEL.rids: random id
    sequences (every piece type, bytes in any order) for spm_decode.
make_expect.py WORK MODEL expect OUTDIR  writes OUTDIR/MODEL.expect.gz from
    spm_encode's ids and pieces and spm_decode's text:
      "E <crc32 hex>" per test sentence: crc32 of ids "\\t" pieces "\\t"
          decoded, each exactly as the tools print the line;
      "R <ids> <crc32 hex>" per random sequence: crc32 of its decoding.
"""
import gzip, random, sys, zlib


def lines(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n") or not data
    return data.split(b"\n")[:-1]


def vocab_size(work, m):
    return len(lines(f"{work}/{m}.vocab"))


def main():
    work, m, mode = sys.argv[1:4]
    if mode == "random_ids":
        n = vocab_size(work, m)
        rng = random.Random(m)
        pieces = [l.split(b"\t")[0] for l in lines(f"{work}/{m}.vocab")]
        newline = pieces.index(b"<0x0A>") if b"<0x0A>" in pieces else -1
        with open(f"{work}/{m}.rids", "w") as f:
            for _ in range(400):
                k = rng.randrange(1, 12)
                ids = []
                for _ in range(k):
                    r = rng.random()
                    ids.append(rng.randrange(0, 8) if r < 0.25 else rng.randrange(0, min(n, 300)) if r < 0.5
                               else rng.randrange(0, n))
                # <0x0A> would split the decoded line
                ids = [i for i in ids if i != newline] or [n - 1]
                f.write(" ".join(map(str, ids)) + "\n")
        return
    if mode == "expect":
        out = sys.argv[4]
        ids, pcs, dec = (lines(f"{work}/{m}.{e}") for e in ("ids", "pieces", "decoded"))
        rids, rdec = lines(f"{work}/{m}.rids"), lines(f"{work}/{m}.rdecoded")
        n_test = len(lines(f"{work}/test.txt"))
        assert len(ids) == len(pcs) == len(dec) == n_test, (len(ids), len(pcs), len(dec), n_test)
        assert len(rids) == len(rdec)
        with gzip.GzipFile(f"{out}/{m}.expect.gz", "wb", 9, mtime=0) as f:
            for a, b, c in zip(ids, pcs, dec):
                f.write(b"E %08x\n" % zlib.crc32(a + b"\t" + b + b"\t" + c))
            for a, c in zip(rids, rdec):
                f.write(b"R %s %08x\n" % (a.replace(b" ", b","), zlib.crc32(c)))
        return
    raise SystemExit("unknown mode " + mode)


main()
