"""Distributed training context (torchrun's environment) and the choice of the torch device.

When ``WORLD_SIZE`` > 1 (``torchrun`` sets it), ``init_process_group`` runs from the environment
(``env://``) with ``gloo`` on CPU or ``nccl`` on CUDA, and each rank on CUDA takes
``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

import torch
import torch.distributed as dist

__all__ = ["DistContext", "resolve_device"]


class DistContext:
    """Rank/world information read from torchrun's environment variables.

    Attributes:
        world_size, rank, local_rank: ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (default 1, 0, 0).
        initialized_here: :meth:`init` created the process group (so :meth:`close` destroys it).
    """

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.initialized_here = False

    @property
    def distributed(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This is rank 0 (the one that logs and writes checkpoints)."""
        return self.rank == 0

    def init(self, device: torch.device) -> None:
        """Run init_process_group(env://): nccl on CUDA, gloo on CPU (no-op for one process)."""
        if not self.distributed or dist.is_initialized():
            return
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=self.rank,
                                world_size=self.world_size)
        self.initialized_here = True

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.distributed and dist.is_initialized():
            dist.barrier()

    def all_mean(self, values: Dict[str, float], device: torch.device) -> Dict[str, float]:
        """Average a dict of floats over ranks (same keys on every rank)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        t /= self.world_size
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def close(self) -> None:
        """Destroy the process group if :meth:`init` created it."""
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(name: Optional[str], dist_ctx: DistContext) -> torch.device:
    """Return the torch device for ``--device`` ``name`` and make it current on CUDA.

    'auto'/None -> cuda if available else cpu; with DDP on CUDA each rank takes cuda:LOCAL_RANK.
    Raises RuntimeError when CUDA is asked for but unavailable.
    """
    if not name or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {name}: CUDA is not available in this torch build / "
                               "machine")
        if dist_ctx.distributed:
            dev = torch.device("cuda", dist_ctx.local_rank)
        torch.cuda.set_device(dev)
    return dev
