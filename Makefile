# streamrec: `make demo` runs the pipeline on real data; `make test` runs every test tier.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
UCI ?= $(abspath ../shared/data/uci-online-retail/onlineretail.csv.gz)
CATALOG := .stack/catalog-uci.npz
export JAVA_HOME ?= $(firstword $(wildcard /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk*))
MVN ?= mvn
MVN_ARGS := -B -ntp -f java/pom.xml
JAVA_SOURCES := $(shell find java/src -type f 2>/dev/null)

.PHONY: setup venv java fetch demo demo-down test test-unit test-minicluster test-e2e test-faults test-java lint up down status clean image \
	browser bench-serve vegeta \
	bench bench-micro bench-deps bench-down evaluate-uci evaluate-otto evaluate-movielens

## setup: Python environment in .venv, the job's jar (java/) and the Maven artifacts (Kafka, Cassandra, Flink connector)
setup: venv java fetch

venv: $(VENV)/.installed
$(VENV)/.installed: setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

## java: java/target/streamrec-flink-<version>.jar, the job's Java with the Cassandra driver shaded in; rebuilt
## only when java/src or the pom changed (its tests run in `make test`, so a setup stays quick)
java: java/target/.packaged
java/target/.packaged: java/pom.xml $(JAVA_SOURCES)
	$(MVN) -q $(MVN_ARGS) package -DskipTests
	touch $@

fetch: venv
	$(PY) -m streamrec.localstack fetch

## demo: Kafka + Cassandra + the job on a minicluster, real purchases replayed, recommendations printed
demo: setup
	$(PY) -m streamrec.demo

demo-down: venv
	$(PY) -m streamrec.localstack down --profile demo

## test: every tier (the Java unit tests, then unit, minicluster, e2e and faults on real Kafka/Cassandra/Flink;
## faults ~15 min)
test: setup test-java browser
	$(PY) -m pytest

## test-java: the java/ module's unit tests (Flink's operator test harnesses) through Maven Surefire
test-java: java
	$(MVN) $(MVN_ARGS) test

test-unit: venv
	$(PY) -m pytest -m unit -q

test-minicluster: venv java
	$(PY) -m pytest -m minicluster

test-e2e: setup browser
	$(PY) -m pytest -m e2e

## browser: headless Chromium and its driver for the demo page's browser test (Debian's packages,
## installed as root only when missing)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "the browser test needs chromium and chromium-driver: run 'make browser' as root" >&2; exit 1; fi

## test-faults: fault injection on the real stack (TaskManager kills, Cassandra outage, savepoints,
## poison pills, replays), each test ending in `streamrec verify`; prints its figures at the end
test-faults: setup
	$(PY) -m pytest -m faults

lint: venv
	$(BIN)/ruff check streamrec tests
	$(BIN)/mypy streamrec

## bench: the job vs the naive baseline on Kafka + Cassandra (bench profile), appended to bench/results.jsonl
## (~10-12 min on the 2-core machine: Cassandra warm-up, then per system 40,000 warm-up events and more rounds until its JIT is quiet, 60,000 measured events and the freshness phases; options: BENCH_ARGS="--events 200000 --catalog uci ...", see `streamrec bench --help`)
bench: setup bench-deps
	$(BIN)/streamrec bench e2e $(BENCH_ARGS)

## bench-micro: top-k alone (numpy vs faiss flat/IVF/HNSW at 10k/100k/1M products), bench/topk.jsonl
bench-micro: bench-deps
	$(BIN)/streamrec bench topk $(BENCH_ARGS)

## bench-serve: `streamrec serve` under the vegeta load generator on the bench profile: recommendations and
## similar at constant rates and closed-loop concurrencies, p50/p99 and requests/s per core (~4 min), bench/results.jsonl
bench-serve: setup vegeta
	$(BIN)/streamrec bench serve $(BENCH_ARGS)

## vegeta: the HTTP load generator, built from its Go module into .stack/bin
vegeta: .stack/bin/vegeta
.stack/bin/vegeta:
	GOBIN=$(abspath .stack/bin) go install github.com/tsenart/vegeta/v12@v12.12.0

bench-deps: $(VENV)/.bench-installed
$(VENV)/.bench-installed: $(VENV)/.installed setup.py
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench-down: venv
	$(PY) -m streamrec.localstack down --profile bench

## evaluate-uci / -otto / -movielens: the tables of docs/EVALUATION.md, one command each, printed, with the
## tuning files and plots in build/eval/ (2-core machine: uci ~5 min, otto seconds, movielens ~13 min, tuning
## included). MovieLens 100K is read where RecBole's wheel puts it (GroupLens' licence: never copied here)
EVAL := build/eval
EVAL_MODELS := --model streamrec --model item-knn --model session-knn --model sr --model v-sknn --model stan
OTTO ?= $(abspath ../shared/data/otto-sample/otto-train-sample.jsonl)
evaluate-uci: venv
	mkdir -p $(EVAL)
	$(BIN)/streamrec evaluate --data $(UCI) --format uci --plot $(EVAL)/uci.png

evaluate-otto: venv
	mkdir -p $(EVAL)
	$(BIN)/streamrec evaluate --data $(OTTO) --format otto --tune $(EVAL_MODELS) > $(EVAL)/otto-tuned.json
	$(BIN)/streamrec evaluate --data $(OTTO) --format otto --tuned $(EVAL)/otto-tuned.json --plot $(EVAL)/otto.png

evaluate-movielens: venv
	mkdir -p $(EVAL)
	$(PY) -m pip install --quiet --no-deps recbole==1.2.1
	ml=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/recbole/dataset_example/ml-100k/ml-100k.inter && \
	$(BIN)/streamrec evaluate --data $$ml --format movielens --tune $(EVAL_MODELS) > $(EVAL)/movielens-tuned.json && \
	$(BIN)/streamrec evaluate --data $$ml --format movielens --tuned $(EVAL)/movielens-tuned.json --plot $(EVAL)/movielens.png

## up / down: the production-like local stack in the background (dev profile, default ports), with the
## recommendation service (`streamrec serve`: the demo shop page and the API) on http://127.0.0.1:8000/
up: setup
	$(PY) -m streamrec.localstack up --profile dev --taskmanagers 2
	$(BIN)/streamrec init
	test -f $(CATALOG) || $(BIN)/streamrec catalog build --data $(UCI) --format uci -o $(CATALOG)
	$(BIN)/streamrec catalog load $(CATALOG)
	$(BIN)/streamrec job submit --python $(abspath $(PY))
	@url=$$($(PY) -m streamrec.localstack serve --profile dev) && \
	echo "streamrec is up: open $$url for the demo shop, $${url}docs for the API (make down stops it all)" && \
	echo "metrics: $(BIN)/streamrec metrics, or Prometheus on ports 9249-9258 (JobManager, TaskManagers) and $${url}metrics"

down: venv
	$(PY) -m streamrec.localstack down --profile dev

status: venv
	$(PY) -m streamrec.localstack status --profile dev

## image: the container image $(IMAGE) (docker/Dockerfile: Maven builds java/, streamrec installed in the
## official Flink image's Python) with buildah, podman or a Docker engine, whichever is here. It needs
## Docker Hub for the base images: on our machines it fails at the first FROM (README, "Container image")
IMAGE ?= streamrec:0.1.0
image:
	@if command -v buildah >/dev/null; then buildah --storage-driver $${STORAGE_DRIVER:-vfs} bud -f docker/Dockerfile -t $(IMAGE) .; \
	elif command -v podman >/dev/null; then podman build -f docker/Dockerfile -t $(IMAGE) .; \
	elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then docker build -f docker/Dockerfile -t $(IMAGE) .; \
	else echo "make image needs a container builder that runs here: a Docker engine ('docker info' fails here)," \
	  "or buildah or podman (Debian: apt-get install buildah)," \
	  "and access to Docker Hub for docker.io/library/flink:2.2.1-java17 and maven:3.9-eclipse-temurin-17." >&2; exit 1; fi

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache java/target
