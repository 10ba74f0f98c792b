# baremetal.l2lb — developer entry points. Everything installs what it needs itself.
#   make lab    bring up the local lab, run site.yml and verify.yml against it
#   make test   the whole test suite (lint, unit, integration), as CI runs it
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUILD := .build
# The collection must sit under ansible_collections/<namespace>/<name> for Ansible and for imports.
COLLECTIONS := $(BUILD)/collections
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/baremetal/l2lb
APT_PACKAGES := python3 python3-venv iproute2 iptables debootstrap systemd-container qemu-user-static
PYTEST := $(BIN)/pytest
export ANSIBLE_COLLECTIONS_PATH := $(abspath $(COLLECTIONS))
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup apt venv collection-link components lint unit unit-pythons integration test build lock clean crds bench lab molecule lab-image lab-up lab-down lab-status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: apt venv collection-link components ## apt packages, .venv with the pinned Python deps, the Go-built control plane

apt: $(BUILD)/apt.stamp
$(BUILD)/apt.stamp:
	@mkdir -p $(BUILD)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  echo "== installing apt packages: $(APT_PACKAGES)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get -y -q update; \
	  DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends $(APT_PACKAGES); \
	fi
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	@echo "== creating $(VENV) from requirements.txt"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

# kube-apiserver, kube-controller-manager, kube-proxy (k8s.io/kubernetes v1.37.2) and etcd v3.7.3,
# built from lab/kube and lab/etcd into /var/cache/l2lb-go (L2LB_GO_CACHE) once per version.
components: venv ## build the real control plane from Go modules (cached outside the checkout)
	L2LB_VENV=$(abspath $(VENV)) lab/build-components.sh

collection-link: $(COLLECTION_LINK)
$(COLLECTION_LINK):
	@mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

lint: setup ## ruff, mypy, yamllint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/yamllint -s .

unit: setup ## fast unit tests (pure logic, no network)
	$(PYTEST) tests/unit

# Debian 11/12/13's and Ubuntu 22.04/24.04's own python3 (3.9 to 3.13), each in a cached debootstrap rootfs.
unit-pythons: setup ## the agent's unit tests under every node Python it supports (3.9 to 3.13)
	$(BIN)/python tests/pythons.py

integration: setup ## tests with real processes, sockets, namespaces and the real control plane
	$(PYTEST) tests/integration

build: setup ## build the collection tarball and install it into a scratch path
	rm -rf $(BUILD)/dist $(BUILD)/install && mkdir -p $(BUILD)/dist
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist .
	@if tar tzf $(BUILD)/dist/baremetal-l2lb-*.tar.gz | grep -E '(^|/)(\.l2lb-wheelhouse|lab-state|\.venv)/'; then \
	  echo "== the tarball carries local build output (above): extend build_ignore in galaxy.yml"; exit 1; fi
	$(BIN)/ansible-galaxy collection install --force --offline --no-deps -p $(BUILD)/install $(BUILD)/dist/baremetal-l2lb-*.tar.gz
	@echo "== the installed tarball runs: validate.yml against the installed copy"
	ANSIBLE_COLLECTIONS_PATH=$(abspath $(BUILD)/install) $(BIN)/ansible-playbook \
	  -i tests/integration/inventories/good_model playbooks/validate.yml

# pytest exits 5 when it collected no tests; make treats any non-zero exit as failure, on purpose.
test: lint unit unit-pythons integration build molecule ## everything CI runs

lock: ## regenerate requirements.txt from requirements.in in a scratch venv
	rm -rf $(BUILD)/lockvenv && $(PYTHON) -m venv $(BUILD)/lockvenv
	$(BUILD)/lockvenv/bin/pip install -q -r requirements.in
	{ echo "# Full pinned lock of requirements.in (pip freeze in a clean venv). Regenerate: make lock"; \
	  $(BUILD)/lockvenv/bin/pip freeze; } > requirements.txt

clean: ## remove build outputs (keeps .venv)
	rm -rf $(BUILD)/dist $(BUILD)/install .pytest_cache .mypy_cache .ruff_cache

LAB := $(BIN)/python tests/lab/lab.py
PLAYBOOK := $(BIN)/ansible-playbook -i inventory/lab

# The main job on the embedded default: lab up, site.yml, the demo Services, verify.yml and its report.
# On failure the lab is torn down (set L2LB_LAB_KEEP=1 to keep it for debugging); re-running is safe.
lab: setup ## bring up the 3-node lab, run site.yml and verify.yml against it, print the report
	@$(LAB) up || exit 1; \
	if $(PLAYBOOK) site.yml && $(PLAYBOOK) tests/lab/demo_services.yml \
	   && $(PLAYBOOK) verify.yml -e verify_report_file=$(abspath lab-state/verify-report.txt); then \
	  echo; echo "== verify report (lab-state/verify-report.txt)"; cat lab-state/verify-report.txt; \
	  echo "== the lab stays up: make lab-down removes it"; \
	else \
	  rc=$$?; echo "== make lab failed (exit $$rc)"; \
	  if [ "$${L2LB_LAB_KEEP:-0}" = 1 ]; then echo "== L2LB_LAB_KEEP=1: the lab stays up"; \
	  else $(LAB) down; fi; exit $$rc; \
	fi

lab-image: setup ## build (or reuse) the cached lab node image (/var/cache/l2lb-lab)
	$(LAB) image
lab-up: setup ## bring up the lab (3 nspawn nodes, client netns, the real control plane), write inventory/lab/
	$(LAB) up
lab-down: ## stop and remove everything the lab created
	$(PYTHON) tests/lab/lab.py down
lab-status: ## show the lab: nodes, PIDs, API, inventory
	$(PYTHON) tests/lab/lab.py status

# molecule needs the venv's bin/ on PATH (it calls ansible-config); scenarios live in extensions/molecule/.
molecule: setup ## molecule scenarios on the lab: default (converge, idempotence, verify) and failover
	cd extensions && $(abspath $(BIN))/molecule test -s default && $(abspath $(BIN))/molecule test -s failover

# Not part of make test (its smoke size is: tests/integration/test_bench_smoke.py). Needs a quiet machine.
bench: setup ## all five benchmark tables, written to benchmarks/RESULTS.md (~25 min)
	$(BIN)/python -m benchmarks.run --size full

crds: setup ## regenerate roles/cluster/files/crds.yml from the model
	$(BIN)/python tests/render_crds.py
