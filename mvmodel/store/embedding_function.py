"""The text tower as a LanceDB embedding function, so that a text query embeds itself:

```python
import lancedb
import mvmodel.store  # registers "mvmodel-text"

table = lancedb.connect("out/lancedb").open_table("faces")
table.search("a face showing surprise").limit(10).to_pandas()
```

Every embeddings table records the function in its schema metadata (LanceDB's
``embedding_functions``) with the weights file and checkpoint hash that made the table: a string
query is embedded by that checkpoint's frozen text encoder and trained projection
(:meth:`mvmodel.inference.TrainedModel.embed_text`), into the same joint space as the stored
image embeddings. The weights file must still be where the table says, with the same sha256
(checked when first loaded): otherwise the query is refused, never embedded by another model.

Stored rows are image embeddings: the function embeds queries only and refuses to fill the
vector column from text (LanceDB would do that for a row written without its vector).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from lancedb.embeddings import EmbeddingFunctionConfig, TextEmbeddingFunction, register

from mvmodel.store.schema import StoreError

if TYPE_CHECKING:
    from mvmodel.inference import TrainedModel
    from mvmodel.store.schema import TableInfo

__all__ = ["FUNCTION_NAME", "MvmodelText", "load_model", "text_function_config"]

#: The registry name recorded in every embeddings table.
FUNCTION_NAME = "mvmodel-text"

_MODELS: dict[tuple[str, str], TrainedModel] = {}
_LOCK = threading.Lock()


def load_model(weights: str | Path, expected_sha256: str | None = None) -> TrainedModel:
    """Load (once per process) the trained model at ``weights``; with ``expected_sha256``, a
    :class:`StoreError` when the file there is another checkpoint."""
    from mvmodel.inference import TrainedModel

    key = (str(Path(weights).resolve()), expected_sha256 or "")
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = TrainedModel.load(weights)
            if expected_sha256 and model.checkpoint_sha256 != expected_sha256:
                raise StoreError(
                    f"{model.source}: checkpoint {model.checkpoint_sha256[:12]} is not the "
                    f"checkpoint that made this table ({expected_sha256[:12]}): the weights "
                    "file changed since; pass the run that made the table (--model) or embed "
                    "again into another table"
                )
            _MODELS[key] = model
    return model


@register(FUNCTION_NAME)
class MvmodelText(TextEmbeddingFunction):
    """Text → joint-space vector through a trained MultiviewVLM's text tower.

    ``weights``: the ``model.safetensors`` that embedded the table; ``checkpoint_sha256``: its
    hash (checked on load); ``dim``: the vector width."""

    weights: str
    checkpoint_sha256: str
    dim: int
    # LanceDB retries a failing embedding call with exponential back-off (7 times by default):
    # a missing or changed weights file must fail at once.
    max_retries: int = 0

    def ndims(self) -> int:
        return self.dim

    def model(self) -> TrainedModel:
        return load_model(self.weights, self.checkpoint_sha256)

    def generate_embeddings(self, texts: Any, *args: Any, **kwargs: Any) -> list[Any]:
        out = self.model().embed_text([str(t) for t in texts])
        return list(out.astype(np.float32))

    def compute_query_embeddings(self, *args: Any, **kwargs: Any) -> list[Any]:
        # LanceDB calls it with the query string first
        return self.generate_embeddings(self.sanitize_input(args[0]))

    def compute_source_embeddings(self, texts: Any, *args: Any, **kwargs: Any) -> list[Any]:
        raise StoreError(
            "rows of an embeddings table carry image embeddings: write each row with its "
            "'vector' (mvmodel embed), the text tower embeds queries only"
        )


def text_function_config(info: TableInfo) -> EmbeddingFunctionConfig:
    """The function's entry in a table's schema metadata. ``source_column`` is ``key``: LanceDB
    needs one, and it is never read (every row is written with its vector)."""
    func = MvmodelText.create(
        weights=info.weights, checkpoint_sha256=info.checkpoint_sha256, dim=info.dim
    )
    return EmbeddingFunctionConfig(source_column="key", vector_column="vector", function=func)
