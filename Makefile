# The two set-up commands of the README are `make dev` and `make test`.
# Every cargo call selects the whole workspace so that features unify the same way and
# RocksDB's C++ (the longest build step by far) is compiled once per profile.

CARGO ?= cargo

.PHONY: dev test verify fix lint build bench crash prereqs

## dev: build raftmq (release) and run a NameServer + 3-node broker group in one process
dev: prereqs
	$(CARGO) run --release --quiet --bin raftmq -- dev

## test: everything CI runs (format, lints, unit, property, crash and integration tests)
test: prereqs verify

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
