"""SIGINT / SIGTERM for the perception node: a flag, set from the first moment of start-up.

The node's start-up imports rclpy, PyTorch and ONNX Runtime (1-2 s) before ``main()`` runs. With
Python's default handlers a SIGINT then raises ``KeyboardInterrupt`` inside an import (traceback,
exit code -2) and a SIGTERM kills the process. The entry points therefore call :func:`install`
before those imports (``bev_mtl_ros.dds.perception_node_main`` for the console script, the top of
``bev_mtl_ros.ros.node`` for ``python -m``): from then on either signal only sets :data:`STOP`,
and ``main()`` ends cleanly (exit 0) at its next check, without loading the model when the signal
came during the imports.

Standard library only (no rclpy, numpy or torch import), so it is cheap to import first.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Dict

__all__ = ["STOP", "install", "restore"]

#: set by SIGINT or SIGTERM once :func:`install` ran
STOP = threading.Event()

_previous: Dict[int, Any] = {}


def _on_signal(signum: int, frame: Any) -> None:
    STOP.set()


def install() -> None:
    """Make SIGINT and SIGTERM set :data:`STOP` (idempotent; call from the main thread).

    A second call keeps the handlers and the flag as they are, so a signal received between the
    first call and ``main()`` is not forgotten.
    """
    if _previous:
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        _previous[sig] = signal.signal(sig, _on_signal)


def restore() -> None:
    """Put back the handlers :func:`install` replaced and clear :data:`STOP`."""
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
    STOP.clear()
