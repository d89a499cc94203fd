"""Seeds derived from one base seed, so the same flags give the same run whatever the worker count."""

from __future__ import annotations

import numpy as np


def derive_seed(*keys: int) -> int:
    """A 31-bit seed determined by `keys` (e.g. base seed, episode index, attempt), well mixed."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0] & 0x7FFFFFFF)

