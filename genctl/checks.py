"""The numbers every request and command shares: sample counts, seeds and the per-call sample limit.

Below the runtime, training and the fronts alike, so ``genctl train --seed`` and a served request's
``seed`` are refused by the same line.
"""
from __future__ import annotations

import numpy as np

from genctl.errors import ConditionError

MAX_SAMPLES = 65536  # rows * n per call: the batch dim's limit in every exported graph (torch.export.Dim max)


def check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ConditionError("-n (samples per condition)", got=repr(n), expected="a positive integer")
    return int(n)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ConditionError("--seed", got=seed, expected="an integer in [0, 2**63)")
    return int(seed)
