"""Keep library chatter out of the terminal; called before the libraries are imported."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Keep library chatter (load bars, deprecation notes) out of the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # TRL's tokenising/filtering bars
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("transformers", "trl", "peft", "datasets", "accelerate", "huggingface_hub", "torch", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("transformers", "trl", "peft", "torch", "accelerate", "datasets"):
        warnings.filterwarnings("ignore", module=module)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # transformers missing: the commands that need it will say so
        pass
