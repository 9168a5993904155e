"""Package discovery, by one rule: a top-level folder ``X/`` with an ``__init__.py`` installs as ``mediqa.X``.

The design card keeps the product's folders (``agent/``, ``engines/``, ``training/``, ``export/``,
``configs/``) at the top of the repository; ``mediqa/`` is the root package (the contract floor and
the CLI). Everything else (metadata, dependencies, tools) is in ``pyproject.toml``. Sub-folders are found
as namespace packages, so data folders (``agent/models``, ``agent/rules``, ``configs/data``...) are
packages too and ship their files without setuptools' "absent from packages" warnings.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

HERE = Path(__file__).parent
ROOT = "mediqa"
LAYERS = sorted(p.name for p in HERE.iterdir() if (p / "__init__.py").is_file() and p.name != ROOT)
SKIP = ["__pycache__", "*.__pycache__"]

package_dir = {ROOT: ROOT, **{f"{ROOT}.{layer}": layer for layer in LAYERS}}
packages = [ROOT, *(f"{ROOT}.{sub}" for sub in find_namespace_packages(ROOT, exclude=SKIP))]
for layer in LAYERS:
    packages += [f"{ROOT}.{layer}", *(f"{ROOT}.{layer}.{sub}" for sub in find_namespace_packages(layer, exclude=SKIP))]

setup(package_dir=package_dir, packages=packages,
      package_data={"": ["*.yaml", "*.onnx", "*.json", "*.md", "*.png", "*.css", "*.js", "*.html"]})
