# kinesis-writer: the two commands a newcomer needs are `make run` and `make test`.
.PHONY: run stop test check unit emulator openapi bench fuzz fuzz-quick help
.PHONY: deploy-check deploy-test lb-test image-test
.PHONY: python-client-test

CARGO ?= cargo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## emulator + local streams + the service on 127.0.0.1:8080 (Ctrl-C stops all)
	scripts/run-local.sh

stop: ## stop what `make run` started (from another terminal)
	scripts/run-local.sh stop

emulator: ## install the pinned Kinesis emulator (tools/kinesis-local) if missing
	scripts/emulator.sh install

test: emulator check deploy-check ## every check and test, emulator tests included (what CI runs)
	$(CARGO) test --workspace --locked
	$(MAKE) --no-print-directory python-client-test
	$(MAKE) --no-print-directory fuzz-quick

check: ## formatting and lints
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: ## the fast tests only (no emulator)
	$(CARGO) test --workspace --locked --lib

openapi: ## regenerate openapi.yaml from the code
	$(CARGO) run --quiet --locked -- openapi > openapi.yaml

bench: ## release build + load tests against the ceiling, the service and the Python peer
	bench/run.sh

fuzz: emulator ## hostile input: property tests with many cases, then schemathesis against the running service
	PROPTEST_CASES=$${PROPTEST_CASES:-4096} $(CARGO) test --locked --test api properties::
	scripts/schemathesis.sh

# make test runs this, so the schemathesis harness (tools/schemathesis) cannot rot unnoticed: a
# fixed seed, cut at ST_MAX_TIME seconds (the cases are the same each run; how many run depends
# on the machine).
fuzz-quick: emulator ## schemathesis against the running service, seeded and bounded to about a minute (part of make test)
	ST_SEED=$${ST_SEED:-21} ST_MAX_EXAMPLES=$${ST_MAX_EXAMPLES:-1000} ST_MAX_TIME=$${ST_MAX_TIME:-60} scripts/schemathesis.sh

deploy-check: ## deploy/ offline: promtool check+test rules, kubernetes-validate, config/metrics consistency
	scripts/deploy-check.sh

deploy-test: ## Prometheus scrapes three instances under load; every dashboard query must return data
	scripts/deploy-test.sh

python-client-test: emulator ## the Python client (clients/python) side by side with newslaunch, against the service and the emulator
	$(CARGO) build --locked --bin kinesis-writer
	scripts/python-client-test.sh

lb-test: ## two instances behind HAProxy, rolling restart under load: 0 failures, 0 lost/duplicated
	scripts/lb-test.sh

image-test: ## build the Dockerfile's image, run it read-only as non-root, write, read back, drain
	scripts/image-test.sh
