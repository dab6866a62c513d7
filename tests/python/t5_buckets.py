"""Prints transformers' T5 relative-position buckets as JSON, for tests/tests/paper.rs:

    python t5_buckets.py NUM_BUCKETS MAX_DISTANCE LO HI

gives `T5Attention._relative_position_bucket(arange(LO, HI + 1), bidirectional=True, ...)`.
"""

import json
import sys

import torch
from transformers.models.t5.modeling_t5 import T5Attention

num_buckets, max_distance, lo, hi = (int(a) for a in sys.argv[1:5])
relative = torch.arange(lo, hi + 1, dtype=torch.long)
buckets = T5Attention._relative_position_bucket(
    relative, bidirectional=True, num_buckets=num_buckets, max_distance=max_distance
)
print(json.dumps(buckets.tolist()))
