"""The arithmetic floor of training: how many matrix-product FLOPs one step of an MLP does, and
how many FLOP/s this machine's matrix product reaches. Their quotient is the time an epoch
cannot beat; the benchmarks and `python -m jaxmlp.notes` hold measured epochs against it."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def mlp_train_flops(sizes: Sequence[int], batch: int) -> int:
    """Matrix-product FLOPs of one SGD step of an MLP (biases and elementwise work excluded).

    Forward: 2*B*in*out per layer. Backward: the weight gradient h^T @ dz, the same again per
    layer, and the input gradient dz @ W^T for every layer but the first (nobody needs the
    gradient with respect to the pixels).
    """
    pairs = list(itertools.pairwise(sizes))
    forward = sum(2 * batch * i * o for i, o in pairs)
    input_grads = sum(2 * batch * i * o for i, o in pairs[1:])
    return 2 * forward + input_grads


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of a jitted float32 n x n x n matrix product, the median of `reps`: the ceiling
    an epoch is held to. A square product this size is the best case for XLA's CPU matmul, so
    it is a fair "all the arithmetic this machine can do" figure for this process."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9
