"""A plain `pip install tunelab` (no extras) keeps the CLI working: the optional packages are
imported only by the commands that use them, which name the extra to install when it is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunelab.errors import MissingExtra, require_extra

OPTIONAL = ("fastapi", "uvicorn", "starlette", "prometheus_client", "multipart", "bm25s", "Stemmer",
            "bitsandbytes", "sentence_transformers", "mlflow", "tensorboard", "wandb", "trackio")


def test_missing_extra_names_the_pip_command():
    with pytest.raises(MissingExtra) as err:
        require_extra("serve", "tunelab serve", "json", "no_such_module_for_tunelab")
    assert str(err.value) == ("tunelab serve needs no_such_module_for_tunelab, which is not installed "
                              "(pip install 'tunelab[serve]')")
    require_extra("serve", "tunelab serve", "json")  # installed: nothing happens


def test_the_cli_loads_without_importing_optional_packages():
    code = ("import sys; import tunelab.cli.app; "
            f"print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
