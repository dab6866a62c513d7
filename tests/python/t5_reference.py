"""transformers' T5 relative positions for tests/tests/paper.rs, in one process (importing
transformers is the slow part):

    python t5_reference.py < request.json

The request {"buckets": [[NUM_BUCKETS, MAX_DISTANCE, LO, HI], ...], "bias": {"max_distance": M,
"s": S, "table": [[...] * HEADS] * NUM_BUCKETS}} gets {"buckets": [[...], ...], "bias": [...]}:
`T5Attention._relative_position_bucket(arange(LO, HI + 1), bidirectional=True, ...)` for each
bucket request, and the table loaded into a bidirectional (encoder) `T5Attention` with a relative
attention bias, `compute_bias(S, S)[0]`: [HEADS][S][S], entry [h][i][j] the bias of query i
attending to key j.
"""

import json
import sys

import torch
from transformers import T5Config
from transformers.models.t5.modeling_t5 import T5Attention

request = json.load(sys.stdin)
buckets = [
    T5Attention._relative_position_bucket(
        torch.arange(lo, hi + 1, dtype=torch.long), bidirectional=True,
        num_buckets=num_buckets, max_distance=max_distance,
    ).tolist()
    for num_buckets, max_distance, lo, hi in request["buckets"]
]
b = request["bias"]
table = torch.tensor(b["table"], dtype=torch.float32)
num_buckets, heads = table.shape
config = T5Config(
    d_model=8 * heads, d_kv=8, num_heads=heads, relative_attention_num_buckets=num_buckets,
    relative_attention_max_distance=b["max_distance"], is_decoder=False,
)
attention = T5Attention(config, has_relative_attention_bias=True)
with torch.no_grad():
    attention.relative_attention_bias.weight.copy_(table)
    bias = attention.compute_bias(b["s"], b["s"])
print(json.dumps({"buckets": buckets, "bias": bias[0].tolist()}))
