"""Reference for the preprocessor's speed: a frozen 4-layer generator of ELECTRA-base width
corrupting batches in PyTorch + transformers (bf16 autocast, SDPA), logits only at the masked
positions, tempered sampling with torch.multinomial.

    python3 scripts/bench/reference_corrupt.py [--aux-layers 4] [--batch-size 128] [--seq-len 512]

Prints the median sequences per second after warm-up, and a `RESULT ` JSON line.
"""
import argparse
import json
import statistics
import time

import torch
from transformers import ElectraConfig, ElectraForMaskedLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aux-layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--temperature", type=float, default=1.5)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = ElectraConfig(vocab_size=args.vocab, hidden_size=768, num_hidden_layers=args.aux_layers,
                        num_attention_heads=12, intermediate_size=3072, embedding_size=768)
    cfg._attn_implementation = "sdpa"
    model = ElectraForMaskedLM(cfg).to(device).eval()
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(1000, args.vocab, (args.batch_size, args.seq_len), generator=g).to(device)
    attn = torch.ones_like(ids)
    n_mask = round(0.15 * (args.seq_len - 2))

    @torch.inference_mode()
    def step():
        scores = torch.rand(ids.shape, device=device)
        scores[:, 0] = 2.0
        scores[:, -1] = 2.0
        pos = scores.topk(n_mask, dim=1, largest=False).indices  # [B, M]
        masked = ids.scatter(1, pos, 103)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = model.electra(input_ids=masked, attention_mask=attn).last_hidden_state
            h = hidden.gather(1, pos.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
            logits = model.generator_lm_head(model.generator_predictions(h))
        probs = torch.softmax(logits.float() / args.temperature, dim=-1)
        sampled = torch.multinomial(probs.view(-1, args.vocab), 1).view(pos.shape)
        out = ids.scatter(1, pos, sampled)
        return (out != ids).to(torch.int8).cpu(), out.cpu()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"reference corruption ({args.aux_layers}-layer base-width generator, batch {args.batch_size}, "
          f"seq {args.seq_len}, {device}): median {args.batch_size/med:.0f} seq/s")
    print("RESULT " + json.dumps({"what": "reference_corrupt", "aux_layers": args.aux_layers, "device": str(device),
                                  "batch_size": args.batch_size, "seq_len": args.seq_len, "seq_per_s": args.batch_size / med}))


if __name__ == "__main__":
    main()
