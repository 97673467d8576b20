# `make serve` and `make test` each build .venv themselves; nothing else is needed first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: serve test fuzz bench bench-scale bench-replication docs system-deps swift-venv clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { scripts/system-deps python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $(STAMP)

# Honours REGISTRY_LISTEN (default :5000) and REGISTRY_DATA_DIR (default ./data).
serve: $(STAMP)
	$(VENV)/bin/registry serve

# The suite drives real clients (dockerd, skopeo, podman, ctr) and servers (PostgreSQL, slapd, the reference
# registry). Missing ones are installed with apt-get.
system-deps:
	scripts/system-deps docker.io skopeo busybox-static podman docker-registry postgresql nginx-light chromium \
		debootstrap systemd docker-compose runc tini slapd ldap-utils

# OpenStack Swift, the S3 server the tests use, in its own virtualenv (see scripts/swift-venv).
swift-venv:
	scripts/swift-venv

test: $(STAMP) system-deps swift-venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The fuzz suite's long profile: 200,000 examples per property (make test runs 2,000 of each).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(VENV)/bin/pytest -q tests/fuzz tests/test_number_parsers.py $(PYTEST_ARGS)

bench: $(STAMP) system-deps swift-venv
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

# The metadata path at scale (bench/README.md, Scale): SIZE=full|small|smoke, DATABASE=postgres|sqlite.
SIZE ?= full
DATABASE ?= postgres
bench-scale: $(STAMP)
	$(if $(filter postgres,$(DATABASE)),scripts/system-deps postgresql)
	$(VENV)/bin/python bench/scale.py --size $(SIZE) --database $(DATABASE) $(BENCH_ARGS)

# Copying a registry:2 in (bench/README.md, Replication): a pull rule and registry import against skopeo sync.
# SIZE=smoke for a run of seconds; anything else is the default size (R=20, T=3, L=3, S=2 MiB).
bench-replication: $(STAMP)
	scripts/system-deps docker-registry skopeo
	$(VENV)/bin/python bench/replication.py $(if $(filter smoke,$(SIZE)),--size smoke) $(BENCH_ARGS)

# docs/configuration.md is generated from registry/config.py; a test fails when it is stale.
docs: $(STAMP)
	$(VENV)/bin/python -m registry.config_docs > docs/configuration.md

clean:
	rm -rf $(VENV) .venv-swift build *.egg-info
