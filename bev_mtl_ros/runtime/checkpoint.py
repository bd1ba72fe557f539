"""PyTorch checkpoints of :class:`~bev_mtl_ros.model.network.BevMultiTaskNet` with a contract.

Each checkpoint carries its model contract.

File format (``torch.save`` of a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format": "bev_mtl_ros.checkpoint", "format_version": 1,
     "contract": ModelContract.to_dict(),      # JSON-compatible
     "widths": net.widths,                     # BevMultiTaskNet(contract, **widths) rebuilds
                                               # the net
     "state_dict": net.state_dict(),           # tensors only
     "extra": {...}}                           # optional plain data (epoch, metrics,
                                               # optimizer state)

Only plain containers, numbers, strings and tensors are stored, so loading never unpickles code.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from ..model.contract import ContractError, ModelContract
from ..model.network import BevMultiTaskNet, widths_from_saved

CHECKPOINT_FORMAT = "bev_mtl_ros.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, or does not match the network it describes."""


def save_checkpoint(path: str, net: BevMultiTaskNet, contract: Optional[ModelContract] = None,
                    extra: Optional[Dict[str, Any]] = None) -> None:
    """Write ``net`` with its contract and widths to ``path`` (parent directories are created).

    Args:
        path: output file, conventionally ``models/<name>.pt``.
        net: the network (any mode; the state dict is copied to CPU).
        contract: the contract the net was built with (defaults to ``net.contract``); must equal
        it. extra: optional plain data (dict/list/tuple/str/int/float/bool/None, numpy scalars and
            arrays, tensors) stored under "extra"; numpy values become Python numbers / tensors.
    Raises:
        ContractError if ``contract`` differs from ``net.contract``; CheckpointError if ``extra``
        holds objects that a weights-only load could not read back; OSError on write failure.
    The file is written to ``path + ".tmp"`` and renamed, so a crash never leaves a half-written
    file.
    """
    contract = net.contract if contract is None else contract
    diff = contract.mismatches(net.contract)
    if diff:
        raise ContractError(f"save_checkpoint({path}): contract differs from the network's: "
                            f"{diff}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "contract": contract.to_dict(),
        "widths": dict(net.widths),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "extra": _to_plain(extra if extra is not None else {}, f"save_checkpoint({path}): extra"),
    }
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = str(path) + ".tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def _to_plain(obj: Any, where: str) -> Any:
    """Return a copy of ``obj`` that a weights-only load can read.

    numpy scalars -> Python numbers, numpy arrays -> tensors; raises CheckpointError naming the
    offending entry for anything else.
    """
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if type(k) not in (str, int):
                raise CheckpointError(f"{where}: dict key {k!r} is not str/int")
            out[k] = _to_plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    # subclasses (IntEnum, ...) -> the plain value
    for plain in (bool, int, float, str):
        if isinstance(obj, plain):
            return plain(obj)
    raise CheckpointError(f"{where}: type {type(obj).__name__} cannot be stored (plain data, "
                          "numpy and tensors only)")


def load_checkpoint(path: str, map_location: Any = "cpu"
                    ) -> Tuple[BevMultiTaskNet, ModelContract, Dict[str, Any]]:
    """Rebuild the network saved by :func:`save_checkpoint`.

    Returns (net in eval mode on ``map_location``, contract, extra).
    Raises CheckpointError naming ``path`` if the file is missing, unreadable/corrupt, not a
    bev_mtl_ros checkpoint, or its state dict does not fit the architecture its widths describe;
    ContractError (naming the file) if its contract is invalid.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt zip, truncated file, unsafe pickle
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        # Accept a bare {"contract", "state_dict", "widths"} dict as documented in the shared
        # brief.
        if not (isinstance(payload, dict) and {"contract", "state_dict"} <= set(payload)):
            raise CheckpointError(f"{path} is not a bev_mtl_ros checkpoint (no "
                                  "'format'/'contract'/'state_dict')")
    version = payload.get("format_version", 1)
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {version} is newer than "
                              f"supported ({CHECKPOINT_FORMAT_VERSION})")
    try:
        contract = ModelContract.from_dict(payload["contract"])
    except ContractError as e:
        raise ContractError(f"{path}: invalid contract: {e}") from e
    widths = widths_from_saved(payload.get("widths") or {})
    try:
        net = BevMultiTaskNet(contract, **widths)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot build the network from widths {widths}: {e}") from e
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: state_dict does not match the network: {e}") from e
    if isinstance(map_location, (str, torch.device)):
        net.to(map_location)
    net.eval()
    return net, contract, payload.get("extra") or {}


def with_semantic_stride(net: BevMultiTaskNet, stride: int) -> BevMultiTaskNet:
    """Rebuild ``net`` with the semantic logits at ``image_size / stride``, same weights.

    The semantic heads' weights do not depend on the size of their logits (the last step is a
    bilinear resize to ``contract.semantic_size``), so a network trained at one
    ``semantic_stride`` can be rebuilt at another: ``BevMultiTaskNet(contract with
    semantic_stride=stride, **net.widths)`` loaded with ``net``'s state dict, in ``net``'s mode
    and on its device.

    Args:
        net: the network; stride: 1, 2 or 4 (``ModelContract.semantic_stride``).
    Returns: a new network (``net`` itself when its stride already is ``stride``).
    Raises: ContractError for a stride other than 1, 2 or 4.
    """
    if net.contract.semantic_stride == stride:
        return net
    contract = dataclasses.replace(net.contract, semantic_stride=int(stride))
    contract.validate()
    out = BevMultiTaskNet(contract, **widths_from_saved(dict(net.widths)))
    out.load_state_dict(net.state_dict(), strict=True)
    out.to(next(net.parameters()).device)
    out.train(net.training)
    return out
