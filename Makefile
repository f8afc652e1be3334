# The two commands: `make run` (embedded platform) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/retake
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9
# `far`: 23:58:30 Asia/Shanghai on a month's last day, about 13 months ahead (conftest.py).
TEST_CLOCK ?= far
CLOCK_PATHS ?= accounts billing generation workers api
TEST_ENV = DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	CELERY_BROKER_URL= \
	STORAGE_BACKEND=filesystem

# The diffusers GPU node has its own virtualenv (torch, diffusers, transformers, cog), built
# from its own pinned requirements and reused while they are unchanged. The platform's
# tests start tiny diffusers nodes from it.
NODE_VENV := .venv-diffusers
NODE_REQUIREMENTS := platform/nodes/diffusers/requirements.txt
NODE_STAMP := $(NODE_VENV)/.installed

.PHONY: run test lint lock bench tiny-node

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	touch $(STAMP)

$(NODE_STAMP): $(NODE_REQUIREMENTS)
	test -x $(NODE_VENV)/bin/python || $(PYTHON) -m venv $(NODE_VENV)
	$(NODE_VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(NODE_REQUIREMENTS)
	touch $(NODE_STAMP)

run: $(STAMP)
	mkdir -p var
	DEBUG=$${DEBUG:-1} $(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(PY) manage.py seed_demo
	DEBUG=$${DEBUG:-1} exec $(PY) manage.py runstack

test: $(STAMP) $(NODE_STAMP)
	$(VENV)/bin/ruff check .
	# The browser tests drive Debian's Chromium (Playwright's own download does not work here).
	# A CJK font lets screenshots of the Chinese pages show glyphs rather than boxes.
	test -x /usr/bin/chromium && fc-list :lang=zh 2>/dev/null | grep -q . \
		|| apt-get install -y chromium fonts-wqy-microhei
	$(TEST_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS)
	# Then the time-sensitive tests again with the clock moved far from today (README,
	# "Tests and the clock"); skipped when PYTEST_ARGS narrows the run or TEST_CLOCK is empty.
	if [ -n "$(TEST_CLOCK)" ] && [ -z "$(PYTEST_ARGS)" ]; then \
		$(TEST_ENV) $(VENV)/bin/pytest -q --clock=$(TEST_CLOCK) -m "not live and not browser" \
			$(CLOCK_PATHS); \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Re-pin every dependency from pyproject.toml into requirements.lock.
lock:
	$(PY) -m piptools compile -q --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml

bench: $(STAMP)
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	$(PY) -m bench

# A tiny diffusers node (random weights, CPU) for the platform `make run` starts: it is
# registered in the embedded database, serves TINY_MODEL ahead of the reference node and
# uploads videos and live previews to the local web server. Run it beside `make run`.
TINY_MODEL ?= wan2.1-t2v-1.3b
TINY_PORT ?= 5101
TINY_TOKEN ?= tiny-diffusers-node
TINY_INGEST := http://127.0.0.1:8000/ingest/$(TINY_TOKEN)/

tiny-node: $(STAMP) $(NODE_STAMP)
	DEBUG=$${DEBUG:-1} $(PY) manage.py register_node tiny-$(TINY_MODEL)=http://127.0.0.1:$(TINY_PORT) \
		--pool diffusers-tiny --token $(TINY_TOKEN) --model $(TINY_MODEL)
	cd platform/nodes/diffusers && RETAKE_NODE_TINY=1 RETAKE_NODE_MODEL=$(TINY_MODEL) \
		RETAKE_PREVIEW_URL=$(TINY_INGEST) COG_PREDICT_TYPE_STUB=predict.py:Predictor \
		COG_MAX_CONCURRENCY=1 PORT=$(TINY_PORT) PATH=$(CURDIR)/$(NODE_VENV)/bin:$$PATH \
		exec python -m cog.server.http --host 127.0.0.1 --upload-url $(TINY_INGEST)
