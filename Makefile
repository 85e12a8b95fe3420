# cryptpilot-fde. `make demo` runs the whole job end to end; `make test` runs every suite.
BUN := node_modules/.bin/bun
BIN := dist/cryptpilot-fde
# The binary embeds the dracut module and hooks (convert installs them), so they are sources too.
SRC := $(shell find agent/src -name '*.ts') package.json $(wildcard dracut-module/91cryptpilot/* hooks/*)

.PHONY: all build build-arm64 deb apt-deps deps lint unit vm-test test bench bench-footprint demo clean

all: build

# Debian packages the build, tests and demo use (.ci/apt-packages): installed when missing and
# running as root, otherwise listed with the command to install them.
apt-deps:
	@missing=""; for p in $$(grep -v '^#' .ci/apt-packages); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing"; echo "install them with: sudo apt-get install$$missing"; exit 1; fi; \
	fi

# The freshness test is repeated inside the recipe so that `make -B` (which forces every target)
# does not reinstall node_modules under a build or test that is using it.
node_modules/.installed: package.json package-lock.json
	@if [ -f $@ ] && [ $@ -nt package.json ] && [ $@ -nt package-lock.json ]; then :; else \
	  npm ci --no-audit --no-fund && touch $@; fi

deps: apt-deps node_modules/.installed

# The clock check's floor (agent/src/clock/build-time.ts): SOURCE_DATE_EPOCH, else the HEAD
# commit's time, so the binary (and the initrd measured with it) stays reproducible.
BUILD_EPOCH = $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null),$(shell date +%s))

# One self-contained executable. The x64 (not -baseline) target: in Bun 1.4 both embed the same
# SSE4.2 runtime and pick AVX2 at run time, so it runs on TDX/SNP hosts and under QEMU TCG -cpu max.
# --splitting keeps each lazily imported command/provider in its own embedded chunk: without it the
# node builtins those modules import (crypto, net, zlib, bun:ffi) load at start-up, doubling the
# time of `--version` (see bench/results.md).
COMPILE = $(BUN) build --compile --minify --bytecode --splitting --format=esm --define CRYPTPILOT_BUILD_EPOCH=$(BUILD_EPOCH) agent/src/main.ts
$(BIN): $(SRC) node_modules/.installed
	@mkdir -p dist
	$(COMPILE) --target=bun-linux-x64 --outfile $(BIN)

# The aarch64 executable, cross-compiled: Bun fetches its bun-linux-aarch64 runtime from the npm
# registry on first use (into Bun's cache). `make build ARCH=arm64` is the same as `make build-arm64`.
BIN_ARM64 := dist/cryptpilot-fde-arm64
$(BIN_ARM64): $(SRC) node_modules/.installed
	@mkdir -p dist
	$(COMPILE) --target=bun-linux-arm64 --outfile $(BIN_ARM64)

build: $(if $(filter arm64 aarch64,$(ARCH)),$(BIN_ARM64),$(BIN))
build-arm64: $(BIN_ARM64)

# The Debian package dist/cryptpilot-fde_<version>_<arch>.deb (packaging/build-deb.sh: dpkg-deb,
# help2man); ARCH=arm64 packages the aarch64 executable (its man page comes from the x86-64 one).
VERSION := $(shell sed -nE 's/^  "version": "([^"]+)".*/\1/p' package.json)
DEB_ARCH := $(if $(filter arm64 aarch64,$(ARCH)),arm64,amd64)
DEB := dist/cryptpilot-fde_$(VERSION)_$(DEB_ARCH).deb
$(DEB): $(if $(filter arm64,$(DEB_ARCH)),$(BIN_ARM64)) $(BIN) $(wildcard packaging/*.sh packaging/deb/* packaging/templates/* docs/volume-templates/*) README.md
	SOURCE_DATE_EPOCH=$(BUILD_EPOCH) packaging/build-deb.sh --bin $(if $(filter arm64,$(DEB_ARCH)),$(BIN_ARM64),$(BIN)) \
	  --help-bin $(BIN) --arch $(DEB_ARCH) --version $(VERSION) --out dist

deb: $(DEB)

lint: deps
	node_modules/.bin/biome check agent vm-test bench
	node_modules/.bin/tsc -p tsconfig.json

unit: deps build
	$(BUN) test agent/test

vm-test: deps build
	vm-test/run all

# Runs every suite (lint, unit tests against source and binary, VM scenarios) and ends with
# one "N passed, N failed" line that sums them.
test: deps
	@agent/test/run-suites.sh

bench: deps build
	$(BUN) bench/run.ts

# Only the disk footprint (bench/footprint.ts; `make bench` runs it too, without the arm64 rows
# unless dist/cryptpilot-fde-arm64 exists): both executables, the base images in vm-test/cache.
bench-footprint: deps build build-arm64
	$(BUN) bench/run.ts footprint

demo: deps build
	vm-test/demo

clean:
	rm -rf dist vm-test/out
