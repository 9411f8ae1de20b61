# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
EVENTS ?= 20000
PYTEST_ARGS ?=

.PHONY: venv native demo test test-unit clean

venv: .venv/.installed native
.venv/.installed: requirements.lock pyproject.toml deploy/bootstrap_venv.sh
	bash deploy/bootstrap_venv.sh

# The ingest store's Rust kernel; a no-op when up to date, a warning without cargo.
native:
	bash deploy/build_native.sh

demo: venv
	.venv/bin/gnnrec demo --events $(EVENTS)

test: venv
	bash deploy/test_prereqs.sh
	$(PY) -m pytest -m "not benchmark" $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not benchmark and not integration" $(PYTEST_ARGS)

clean:
	rm -rf .venv .pytest_cache build *.egg-info graph_store/_native.abi3.so
