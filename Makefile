# The two set-up commands of the README are `make dev` and `make test`.
# Every cargo call selects the whole workspace so that features unify the same way and
# RocksDB's C++ (the longest build step by far) is compiled once per profile.

CARGO ?= cargo

.PHONY: dev test verify fix lint build bench crash prereqs jepsen-short jepsen-suite deploy-check

## dev: build raftmq (release) and run a NameServer + 3-node broker group in one process
dev: prereqs
	$(CARGO) run --release --quiet --bin raftmq -- dev

## test: everything CI runs (format, lints, unit, property, crash and integration tests,
## the deployment files' offline checks and a short chaos run)
test: prereqs verify deploy-check jepsen-short

prereqs:
	@./scripts/prereqs.sh

verify: build lint
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

build:
	$(CARGO) build --workspace --all-targets

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fix: the mutating twin of lint
fix:
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty --allow-staged

## bench: release benchmarks (commit log vs raw disk)
bench: prereqs
	$(CARGO) bench --workspace

## crash: the kill -9 crash test with more iterations (CRASH_ITERS, default 200)
crash: prereqs
	CRASH_ITERS=$${CRASH_ITERS:-200} $(CARGO) test --workspace --test crash

## deploy-check: hadolint, kubernetes-validate --strict, rendered pod configs, compose,
## systemd-analyze verify (no container engine or cluster needed)
deploy-check: build
	./scripts/deploy-check.sh

## jepsen-short: five runs (three faults, rolling-restart, grow-online across namespaces), debug build (part of `make test`)
jepsen-short: build
	./scripts/jepsen-short.sh

## jepsen-suite: every nemesis, 120 s each, release build; summary in jepsen-suite/summary.md
jepsen-suite: prereqs
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release --bin raftmq-jepsen -- suite --time 120 --out ./jepsen-suite
