"""The kinds of embedding a run can start from, each defined once: its name (`embedding.kind`), how the report
labels it, whether it is pretrained (the learned kind is every comparison's baseline), the dimensions it
comes in, and where its word vectors come from. The config checks `embedding.kind` and `embedding.dim`
against this; a run records its kind's label and whether it is pretrained in results.json, which is all the
report reads, so a new kind is one `register_kind(...)` (here, or in a plugin or test) and the YAML options
that name it.

No agnews module is imported here (the config schemas import this); a kind's vectors are loaded through a
"module:function" path, imported only by a run that needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GLOVE_6B_DIMS = (50, 100, 200, 300)

# (embedding config, cache folder, show progress) -> word vectors (agnews.data.glove.WordVectors)
VectorLoader = Callable[[Any, Path, bool], Any]


@dataclass(frozen=True)
class EmbeddingKind:
    name: str  # embedding.kind
    label: str  # how the report names it: "GloVe beats learned embeddings", "GloVe frozen"
    pretrained: bool  # False: initialised at random and trained, the baseline pretrained kinds are compared with
    dims: tuple[int, ...] = ()  # the dimensions its vectors come in; () = any
    vectors: str | VectorLoader | None = None  # a pretrained kind's vectors: "module:function" or the function

    def load_vectors(self, config: Any, cache_dir: Path, progress: bool) -> Any:
        """The word vectors a run with embedding `config` starts from."""
        loader = self.vectors
        if loader is None:
            raise ValueError(f"embedding kind {self.name!r} has no pretrained vectors")
        if isinstance(loader, str):
            module, _, function = loader.partition(":")
            loader = getattr(importlib.import_module(module), function)
        return loader(config, cache_dir, progress)

    def facts(self) -> dict[str, Any]:
        """What a run records of its kind (results.json "embedding_kind"), for readers that know no kinds."""
        return {"name": self.name, "label": self.label, "pretrained": self.pretrained}


KINDS: dict[str, EmbeddingKind] = {}


def register_kind(kind: EmbeddingKind) -> EmbeddingKind:
    KINDS[kind.name] = kind
    return kind


def embedding_kind(name: str) -> EmbeddingKind:
    """The kind called `name`, or ValueError naming the kinds there are."""
    try:
        return KINDS[str(name)]
    except KeyError:
        raise ValueError(f"embedding.kind={name!r} is no embedding kind agnews knows: {', '.join(KINDS)}") from None


LEARNED = register_kind(EmbeddingKind("learned", "learned", pretrained=False))
GLOVE = register_kind(
    EmbeddingKind("glove", "GloVe", pretrained=True, dims=GLOVE_6B_DIMS, vectors="agnews.data.glove:vectors_for")
)
