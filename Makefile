# geofed — the commands a newcomer needs: `make serve` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install serve shell test lint bench simulate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@PYTHON=$$(.ci/find-python) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then \
	  echo "creating $(VENV) with $$PYTHON"; rm -rf $(VENV); $$PYTHON -m venv $(VENV) || exit 1; \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

serve: install
	$(VENV)/bin/geofed serve

# a shell with the venv active (geofed, python, pytest on PATH); `exit` leaves it. Same as `source .venv/bin/activate`.
shell: install
	@echo "geofed venv active ($(CURDIR)/$(VENV)): geofed, python, pytest are on PATH; 'exit' leaves." \
	  "Without make: source $(VENV)/bin/activate" >&2
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" exec "$${SHELL:-/bin/sh}"

simulate: install
	$(VENV)/bin/geofed simulate

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
