#!/usr/bin/python3
"""maas's MoE forward pass against the NumPy reference: llama with experts
(Mixtral layout), qwen2moe (shared expert) and qwen3moe, 8 experts, top 2,
expert width 128, each in F32, q8_0, q4_k_m, q5_0 and q6_k. The comparison,
tolerances and their justification are those of test_forward.py.

Exit 0 pass, 1 fail, 77 skip.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_forward  # noqa: E402

if __name__ == "__main__":
    test_forward.main(test_forward.MOE_CONFIGS)
