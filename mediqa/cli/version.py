"""``mediqa version``: versions of the agent and of the libraries it runs on."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform

from mediqa import __version__

_PACKAGES = ("pydicom", "numpy", "watchdog", "onnxruntime", "onnx", "tensorrt", "cuda-python", "torch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print versions of mediqa and its libraries")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"mediqa {__version__} (python {platform.python_version()}, {platform.system()} {platform.machine()})")
    for name in _PACKAGES:
        try:
            print(f"  {name:<12} {md.version(name)}")
        except md.PackageNotFoundError:
            print(f"  {name:<12} not installed")
    return 0
