"""Sentence-transformers embeddings from a local model directory, off the event loop.

The model is loaded once when the server is created (a few seconds) and shared by every call.
Encoding is CPU-bound, so it runs in a worker thread; a lock keeps concurrent calls from
oversubscribing the CPU with competing torch thread pools.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .clustering import FloatMatrix


class Embedder:
    """Turns texts into L2-normalised float32 vectors with one loaded model."""

    def __init__(self, model: Any, name: str) -> None:
        self._model = model
        self._lock = threading.Lock()
        self.name = name

    @classmethod
    def load(cls, path: Path, name: str, *, threads: int = 1) -> Embedder:
        """Load from ``path`` on CPU with ``threads`` intra-op threads, never touching the network.

        ``HF_HUB_OFFLINE`` must be in the environment before ``huggingface_hub`` is first imported
        (it reads the variable once), hence the late imports.
        """
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        embedder = cls(model, name)
        embedder.encode(["warm-up"])  # Pays torch's lazy initialisation here, not in the first Collate.
        return embedder

    def encode(self, texts: Sequence[str]) -> FloatMatrix:
        """Blocking encode; prefer ``embed`` from async code."""
        with self._lock:
            vectors = self._model.encode(
                list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: Sequence[str]) -> FloatMatrix:
        """Encode in a worker thread so the server keeps answering health checks meanwhile."""
        return await asyncio.to_thread(self.encode, texts)
