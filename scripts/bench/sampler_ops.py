"""Cost of the pieces of the corruption's device work, in PyTorch, on one GPU: the auxiliary
model's forward, the vocabulary projection (30,522 columns vs a padded 30,720), and the
candidate formulations of exact tempered sampling over the [N, V] logits of N masked positions.
This is how the preprocessor's sampler (shared/src/corruption/sampling.rs) was chosen; it times ops only.

    python3 scripts/bench/sampler_ops.py [--batch-size 128] [--seq-len 512]

Prints one line per measured piece (median of CUDA-event timings after warm-up) and the
agreement between the sampler formulations on the same logits and uniforms.
"""
import argparse
import statistics

import torch


def timed(fn, warmup=3, iters=15):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def old_sampler(logits32, t, u, chunk):
    """The sampler before: fp32 log_softmax, entropy, fp64 cumsum, searchsorted, chunked."""
    n, v = logits32.shape
    ids, top1, ent = [], [], []
    for s in range(0, n, chunk):
        c = logits32[s:s + chunk]
        z = c.float() / t
        logp = z.log_softmax(-1)
        p = logp.exp()
        ent.append(-(p * logp.clamp_min(torch.finfo(torch.float32).min)).sum(-1))
        cdf = p.double().cumsum(-1)
        target = u[s:s + chunk, None] * cdf[:, -1:]
        ids.append(torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_max(v - 1))
        top1.append(c.max(-1).indices)
    return torch.cat(ids), torch.cat(top1), torch.cat(ent)


def two_level(logits, t, u, block, sums64=True, entropy="bmm"):
    """Block sums, search the block, then a fp64 scan of that one block."""
    n, vp = logits.shape
    nb = vp // block
    m, top1 = logits.max(-1)
    a = 1.0 / t
    x = torch.add((m.float() * -a).unsqueeze(1), logits, alpha=a)
    if entropy == "bmm":
        e = x.exp()
        dot = torch.bmm(e.unsqueeze(1), x.unsqueeze(2)).view(n)
    else:
        e = x.exp_()
        dot = torch.xlogy(e, e).sum(-1)
    if sums64:
        e64 = e.double()
        bs = e64.view(n, nb, block).sum(-1)
    else:
        e64 = None
        bs = e.view(n, nb, block).sum(-1).double()
    cb = bs.cumsum(-1)
    total = cb[:, -1]
    ent = (total.log() - dot.double() / total).float()
    target = (u * total).unsqueeze(1)
    blk = torch.searchsorted(cb, target, right=True).clamp_max(nb - 1)
    prev = torch.where(blk > 0, cb.gather(1, (blk - 1).clamp_min(0)), torch.zeros_like(target))
    src = e64 if e64 is not None else e
    rows = src.view(n, nb, block).gather(1, blk.view(n, 1, 1).expand(n, 1, block)).view(n, block)
    cs = rows.double().cumsum(-1) + prev
    j = torch.searchsorted(cs, target, right=True)
    # Rounding may leave the block's own scan just below its reduced sum: take its last
    # non-zero token then.
    last_nz = block - 1 - (rows.flip(-1) > 0).int().argmax(-1, keepdim=True)
    j = torch.where(j >= block, last_nz, j)
    return (blk * block + j).view(n), top1, ent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--temperature", type=float, default=1.5)
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    m = round(0.15 * (args.seq_len - 2))
    n = args.batch_size * m
    v, block = args.vocab, 256
    vp = (v + block - 1) // block * block
    print(f"N = {n} masked rows ({args.batch_size} x {m}), V = {v}, padded {vp}")

    # The aux model's forward (transformers, 4 layers of base width) and its pieces.
    try:
        from transformers import ElectraConfig, ElectraForMaskedLM
        cfg = ElectraConfig(vocab_size=v, hidden_size=768, num_hidden_layers=4, num_attention_heads=12,
                            intermediate_size=3072, embedding_size=768)
        cfg._attn_implementation = "sdpa"
        model = ElectraForMaskedLM(cfg).to(dev).eval()
        ids = torch.randint(1000, v, (args.batch_size, args.seq_len), device=dev)
        attn = torch.ones_like(ids)
        pos = torch.rand(ids.shape, device=dev).topk(m, dim=1).indices

        @torch.inference_mode()
        def fwd():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model.electra(input_ids=ids, attention_mask=attn).last_hidden_state

        hidden = fwd()
        print(f"transformers encoder forward 4 layers: {timed(fwd):.2f} ms")
        h = hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, 768)).reshape(n, 768)

        @torch.inference_mode()
        def head():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return model.generator_lm_head(model.generator_predictions(h))

        print(f"transformers MLM head on N rows: {timed(head):.2f} ms")
        del model
    except Exception as err:  # noqa: BLE001
        print(f"transformers part skipped: {err}")

    hb = torch.randn(n, 768, device=dev, dtype=torch.bfloat16)
    w = (torch.randn(v, 768, device=dev) * 0.05).bfloat16()
    bias = torch.zeros(v, device=dev).bfloat16()
    wp = torch.cat([w, torch.zeros(vp - v, 768, device=dev, dtype=torch.bfloat16)])
    bp = torch.cat([bias, torch.full((vp - v,), torch.finfo(torch.bfloat16).min, device=dev, dtype=torch.bfloat16)])
    print(f"decoder GEMM N x 768 x {v}: {timed(lambda: torch.nn.functional.linear(hb, w, bias)):.2f} ms")
    print(f"decoder GEMM N x 768 x {vp}: {timed(lambda: torch.nn.functional.linear(hb, wp, bp)):.2f} ms")

    logits = torch.nn.functional.linear(hb, w, bias) * 8  # spread like a trained model's
    logits_p = torch.cat([logits, torch.full((n, vp - v), torch.finfo(torch.bfloat16).min, device=dev, dtype=torch.bfloat16)], 1)
    u = torch.rand(n, device=dev, dtype=torch.float64)
    t = args.temperature
    l32 = logits.float()
    print(f"cast bf16 -> fp32 logits: {timed(lambda: logits.float()):.2f} ms")
    print(f"reference softmax + multinomial: "
          f"{timed(lambda: torch.multinomial(torch.softmax(logits.float() / t, -1), 1)):.2f} ms")
    chunk = (1 << 30) // (24 * v)
    print(f"old sampler (chunk {chunk} rows): {timed(lambda: old_sampler(l32, t, u, chunk)):.2f} ms")
    print(f"old sampler (one chunk): {timed(lambda: old_sampler(l32, t, u, n)):.2f} ms")
    for s64 in (True, False):
        for ent in ("bmm", "xlogy"):
            ms = timed(lambda: two_level(logits_p, t, u, block, s64, ent))
            print(f"two-level sums64={s64} entropy={ent}: {ms:.2f} ms")
    parts = {
        "max_dim bf16": lambda: logits_p.max(-1),
        "x = add(-a m, z, alpha=a)": lambda: torch.add(torch.zeros(n, 1, device=dev), logits_p, alpha=1 / t),
        "exp fp32": lambda: l32.exp(),
        "bmm entropy dot": lambda: torch.bmm(l32.unsqueeze(1), l32.unsqueeze(2)),
        "to double": lambda: l32.double(),
        "cumsum fp64 (full)": lambda: l32.double().cumsum(-1),
        "log_softmax fp32": lambda: l32.log_softmax(-1),
    }
    for name, fn in parts.items():
        print(f"  {name}: {timed(fn):.2f} ms")

    a_ids, a_top, a_ent = old_sampler(l32, t, u, chunk)
    b_ids, b_top, b_ent = two_level(logits_p, t, u, block, True, "bmm")
    c_ids, _, c_ent = two_level(logits_p, t, u, block, True, "xlogy")
    print(f"agreement old vs two-level: ids {(a_ids == b_ids).float().mean().item():.6f} "
          f"({(a_ids != b_ids).sum().item()} differ), top1 {(a_top == b_top).float().mean().item():.6f}, "
          f"entropy max diff {(a_ent - b_ent).abs().max().item():.2e}, xlogy {(a_ent - c_ent).abs().max().item():.2e}, "
          f"ids bmm vs xlogy differ {(b_ids != c_ids).sum().item()}")
    print(f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
