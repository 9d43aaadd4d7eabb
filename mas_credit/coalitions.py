"""Coalitions at any team size: bitmask integers, presence rows, and the limits of dense tables.

A coalition is a Python int bitmask (bit i = agent i present): Python ints have no width, so the
same key works for 3 agents and for 128. Arrays of presence ([M, N] bool) are what games and
estimators compute with; `masks_to_bits` / `bits_to_masks` convert, for any N (numpy's int64
holds masks only up to 62 agents, so wider teams go through bytes).

Dense tables [B, 2**N] (every coalition) are the fast path for small teams; above
`DENSE_MAX_AGENTS` a batch carries only the coalitions that were evaluated, and above
`ENUMERATE_MAX_AGENTS` nothing that enumerates all 2**N coalitions is allowed to start.

This module is the ground floor: it imports nothing from the package.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

DENSE_MAX_AGENTS = 10
"""a CreditBatch keeps the dense [B, 2**N] coalition table up to this many agents (1024 columns)"""
ENUMERATE_MAX_AGENTS = 20
"""most agents for which every coalition may be enumerated (2**20 = 1,048,576 per episode)"""
_INT64_AGENTS = 62
"""widest mask numpy's int64 holds without reaching the sign bit"""


def full_mask(n_agents: int) -> int:
    """The grand coalition's bitmask."""
    return (1 << n_agents) - 1


def size_of(mask: int) -> int:
    """How many agents a coalition holds."""
    return int(mask).bit_count()


def masks_to_bits(masks, n_agents: int) -> np.ndarray:
    """[M] coalition bitmasks (Python ints of any width, or an int array) -> [M, N] bool presence.

    An [M, N] bool array is returned as it is (already presence rows)."""
    if isinstance(masks, np.ndarray) and masks.dtype == bool:
        if masks.ndim != 2 or masks.shape[1] != n_agents:
            raise ValueError(f"presence rows must be [M, N={n_agents}], got shape {list(masks.shape)}")
        return masks
    if n_agents <= _INT64_AGENTS:
        ints = np.asarray(masks if not isinstance(masks, np.ndarray) else masks.astype(np.int64), dtype=np.int64)
        return ((ints.reshape(-1)[:, None] >> np.arange(n_agents)) & 1).astype(bool)
    width = (n_agents + 7) // 8
    masks = [int(m) for m in (masks.tolist() if isinstance(masks, np.ndarray) else masks)]
    raw = np.frombuffer(b"".join(m.to_bytes(width, "little") for m in masks), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(len(masks), width), axis=1, bitorder="little")
    return bits[:, :n_agents].astype(bool)


def bits_to_masks(bits: np.ndarray) -> list[int]:
    """[M, N] bool presence -> [M] Python-int bitmasks (any N)."""
    bits = np.asarray(bits, dtype=bool)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def mask_of(agents: Iterable[int]) -> int:
    """The bitmask of a set of agent indices."""
    out = 0
    for i in agents:
        out |= 1 << int(i)
    return out


def check_masks(masks: Sequence[int], n_agents: int) -> list[int]:
    """The masks as ints, each checked to lie in 0..2**N - 1 (one line naming the first bad ones)."""
    out = [int(m) for m in masks]
    top = full_mask(n_agents)
    bad = [m for m in out if not 0 <= m <= top]
    if bad:
        shown = ", ".join(str(m) if m.bit_length() <= 64 else f"a {m.bit_length()}-bit mask" for m in bad[:5])
        top_text = str(top) if n_agents <= _INT64_AGENTS else f"2**{n_agents}-1"
        raise ValueError(f"coalition masks {shown} are outside 0..{top_text} for {n_agents} agents")
    return out


def check_enumerable(n_agents: int, what: str) -> None:
    """Refuse, with the reason, anything that would enumerate all 2**N coalitions of a large team."""
    if n_agents > ENUMERATE_MAX_AGENTS:
        raise ValueError(
            f"{what} needs all 2**{n_agents} = {float(2**n_agents):.3g} coalitions, beyond the "
            f"{ENUMERATE_MAX_AGENTS}-agent limit of enumeration; use an estimator with a budget (shapley with "
            f"method: sampled, svarm, kernelshap, banzhaf, loworder) or a game with closed-form credit"
        )


def mask_array(masks: Sequence[int], n_agents: int) -> np.ndarray:
    """[M] masks as a numpy array games can take: int64 up to 62 agents, Python ints (object) beyond."""
    return np.array([int(m) for m in masks], dtype=np.int64 if n_agents <= _INT64_AGENTS else object)


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (a fixed, well-mixed hash)."""
    with np.errstate(over="ignore"):
        x = (x + _MIX).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def hashed_normal(masks: Sequence[int], salt: int) -> np.ndarray:
    """[M] standard normal draws, each a fixed function of (salt, mask): the same coalition of the same
    episode gets the same draw whoever asks for it and in whatever order (a study's known noise)."""
    with np.errstate(over="ignore"):
        h = np.full(len(masks), np.uint64(salt & (2**64 - 1)), dtype=np.uint64)
        rest = [int(m) for m in masks]
        while True:  # fold the mask in, 64 bits at a time (one pass for teams of up to 64)
            low = np.array([m & (2**64 - 1) for m in rest], dtype=np.uint64)
            h = _splitmix(h ^ low)
            rest = [m >> 64 for m in rest]
            if not any(rest):
                break
        u1 = (h >> np.uint64(11)).astype(np.float64) / float(2**53)
        u2 = (_splitmix(h) >> np.uint64(11)).astype(np.float64) / float(2**53)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
