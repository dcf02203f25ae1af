#!/usr/bin/python3
"""Writes the small random-weight VitsModel folders the tests load
(tests/nn/test_vits_model.c): paths the oracle (tests/data/oracles/vits-mini)
does not take.

  multi-speaker/  2 speakers (speaker embedding, every conditioning layer),
                  the stochastic duration predictor, f32, weight norm stored
                  as weight_g / weight_v
  plain-dp/       the plain duration predictor, an even ffn_kernel_size,
                  wavenet_dilation_rate 2, bf16, every weight folded

Run from anywhere: /usr/bin/python3 tests/data/vits/make_models.py
(numpy only; the values come from fixed seeds, so the files are the same
each time)."""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def config(**over):
    c = {
        "model_type": "vits", "vocab_size": 12, "hidden_size": 16, "num_hidden_layers": 1,
        "num_attention_heads": 2, "window_size": 2, "use_bias": True, "ffn_dim": 24, "ffn_kernel_size": 3,
        "flow_size": 8, "hidden_act": "relu", "layer_norm_eps": 1e-5,
        "use_stochastic_duration_prediction": True, "duration_predictor_kernel_size": 3,
        "duration_predictor_filter_channels": 12, "depth_separable_num_layers": 2,
        "depth_separable_channels": 2, "duration_predictor_flow_bins": 4, "duration_predictor_tail_bound": 5.0,
        "duration_predictor_num_flows": 2, "prior_encoder_num_flows": 2, "prior_encoder_num_wavenet_layers": 2,
        "wavenet_kernel_size": 3, "wavenet_dilation_rate": 1, "upsample_initial_channel": 16,
        "upsample_rates": [4, 2], "upsample_kernel_sizes": [8, 4], "resblock_kernel_sizes": [3, 5],
        "resblock_dilation_sizes": [[1, 3], [1, 2]], "leaky_relu_slope": 0.1, "num_speakers": 1,
        "speaker_embedding_size": 0, "sampling_rate": 8000, "noise_scale": 0.667, "noise_scale_duration": 0.8,
        "speaking_rate": 1.0,
    }
    c.update(over)
    return c


def tensors(c, rng, weight_norm):
    """name -> array, every tensor the loader reads (no posterior encoder)."""
    t = {}
    d, F = c["hidden_size"], c["flow_size"]

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def conv(name, cout, cin, k, bias=True, wn=False, transposed=False):
        shape = (cin, cout, k) if transposed else (cout, cin, k)
        w = normal(shape, 1.0 / np.sqrt(shape[1] * k))
        if wn and weight_norm:
            t[name + ".weight_g"] = np.abs(normal((shape[0], 1, 1), 1.0)) + 0.5
            t[name + ".weight_v"] = w
        else:
            t[name + ".weight"] = w
        if bias:
            t[name + ".bias"] = normal((cout,), 0.1)

    def norm(name, n):
        t[name + ".weight"] = (1 + normal((n,), 0.1)).astype(np.float32)
        t[name + ".bias"] = normal((n,), 0.1)

    def dds(pfx):
        for i in range(c["depth_separable_num_layers"]):
            conv(f"{pfx}.convs_dilated.{i}", d, 1, c["duration_predictor_kernel_size"])
            conv(f"{pfx}.convs_pointwise.{i}", d, d, 1)
            norm(f"{pfx}.norms_1.{i}", d)
            norm(f"{pfx}.norms_2.{i}", d)

    spk = c["speaker_embedding_size"]
    t["text_encoder.embed_tokens.weight"] = normal((c["vocab_size"], d), 0.5)
    hd = d // c["num_attention_heads"]
    for i in range(c["num_hidden_layers"]):
        p = f"text_encoder.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[f"{p}.attention.{proj}.weight"] = normal((d, d), 1.0 / np.sqrt(d))
            t[f"{p}.attention.{proj}.bias"] = normal((d,), 0.1)
        t[f"{p}.attention.emb_rel_k"] = normal((1, 2 * c["window_size"] + 1, hd), hd ** -0.5)
        t[f"{p}.attention.emb_rel_v"] = normal((1, 2 * c["window_size"] + 1, hd), hd ** -0.5)
        norm(f"{p}.layer_norm", d)
        norm(f"{p}.final_layer_norm", d)
        conv(f"{p}.feed_forward.conv_1", c["ffn_dim"], d, c["ffn_kernel_size"])
        conv(f"{p}.feed_forward.conv_2", d, c["ffn_dim"], c["ffn_kernel_size"])
    conv("text_encoder.project", 2 * F, d, 1)

    if spk:
        conv("duration_predictor.cond", d, spk, 1)
    if c["use_stochastic_duration_prediction"]:
        conv("duration_predictor.conv_pre", d, d, 1)
        conv("duration_predictor.conv_proj", d, d, 1)
        dds("duration_predictor.conv_dds")
        # log-durations around 1 (a few frames a token)
        t["duration_predictor.flows.0.translate"] = np.array([[-1.0], [0.0]], np.float32)
        t["duration_predictor.flows.0.log_scale"] = normal((2, 1), 0.1)
        bins = c["duration_predictor_flow_bins"]
        for f in range(1, c["duration_predictor_num_flows"] + 1):
            conv(f"duration_predictor.flows.{f}.conv_pre", d, 1, 1)
            conv(f"duration_predictor.flows.{f}.conv_proj", 3 * bins - 1, d, 1)
            dds(f"duration_predictor.flows.{f}.conv_dds")
    else:
        fc, k = c["duration_predictor_filter_channels"], c["duration_predictor_kernel_size"]
        conv("duration_predictor.conv_1", fc, d, k)
        norm("duration_predictor.norm_1", fc)
        conv("duration_predictor.conv_2", fc, fc, k)
        norm("duration_predictor.norm_2", fc)
        conv("duration_predictor.proj", 1, fc, 1)
        t["duration_predictor.proj.bias"] = np.array([1.0], np.float32)

    L = c["prior_encoder_num_wavenet_layers"]
    for f in range(c["prior_encoder_num_flows"]):
        p = f"flow.flows.{f}"
        conv(f"{p}.conv_pre", d, F // 2, 1)
        conv(f"{p}.conv_post", F // 2, d, 1)
        for i in range(L):
            conv(f"{p}.wavenet.in_layers.{i}", 2 * d, d, c["wavenet_kernel_size"], wn=True)
            conv(f"{p}.wavenet.res_skip_layers.{i}", 2 * d if i < L - 1 else d, d, 1, wn=True)
        if spk:
            conv(f"{p}.wavenet.cond_layer", 2 * d * L, spk, 1, wn=True)

    ch = c["upsample_initial_channel"]
    conv("decoder.conv_pre", ch, F, 7)
    if spk:
        conv("decoder.cond", ch, spk, 1)
    nk = len(c["resblock_kernel_sizes"])
    for s, (u, k) in enumerate(zip(c["upsample_rates"], c["upsample_kernel_sizes"])):
        conv(f"decoder.upsampler.{s}", ch // 2, ch, k, transposed=True)
        ch //= 2
        for j, (kk, dils) in enumerate(zip(c["resblock_kernel_sizes"], c["resblock_dilation_sizes"])):
            for i in range(len(dils)):
                conv(f"decoder.resblocks.{s * nk + j}.convs1.{i}", ch, ch, kk)
                conv(f"decoder.resblocks.{s * nk + j}.convs2.{i}", ch, ch, kk)
    conv("decoder.conv_post", 1, ch, 7, bias=False)
    if c["num_speakers"] > 1:
        t["embed_speaker.weight"] = normal((c["num_speakers"], spk), 1.0)
    return t


def bf16(x):
    """float32 -> bfloat16 bits, rounded to nearest even."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path, t, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(t):
        a = t[name]
        raw = (bf16(a) if dtype == "BF16" else a.astype(np.float16 if dtype == "F16" else np.float32)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make(name, cfg, seed, weight_norm, dtype):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    write_safetensors(os.path.join(out, "model.safetensors"), tensors(cfg, np.random.default_rng(seed), weight_norm),
                      dtype)


make("multi-speaker", config(num_speakers=2, speaker_embedding_size=8), 1, True, "F32")
make("plain-dp", config(use_stochastic_duration_prediction=False, ffn_kernel_size=2, wavenet_dilation_rate=2),
     2, False, "BF16")
