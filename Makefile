# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
EVENTS ?= 20000
PYTEST_ARGS ?=

.PHONY: venv demo test test-unit bench results clean

venv: .venv/.installed
.venv/.installed: requirements.lock pyproject.toml deploy/bootstrap_venv.sh
	bash deploy/bootstrap_venv.sh

demo: venv
	.venv/bin/gnnrec demo --events $(EVENTS)

test: venv
	bash deploy/test_prereqs.sh
	$(PY) -m pytest -m "not benchmark" $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m "not benchmark and not integration" $(PYTEST_ARGS)

clean:
	rm -rf .venv .pytest_cache build *.egg-info
