# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Pinned: these come from the local mirror in about a minute; an unpinned torch pulls the newest CUDA build.
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@# The page of `vsr compare` is tested in a real browser (Playwright drives the system's chromium).
	command -v chromium >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "chromium could not be installed (not root?): the browser test of vsr compare will be skipped"
	touch $@

demo: $(VENV)/.installed
	$(PY) scripts/make_sample_clip.py samples/sample.mp4
	$(VENV)/bin/vsr enhance samples/sample.mp4 --scale 4 -o samples/sample_x4.mp4 --overwrite
	$(VENV)/bin/vsr enhance samples/sample.mp4 --scale 4 -m bicubic -o samples/sample_bicubic_x4.mp4 --overwrite

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) scripts/bench_table.py

clean:
	rm -rf samples runs .pytest_cache
