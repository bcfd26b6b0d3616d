# byok — see README.md. `make run` and `make test` are the two commands that matter.
SHELL := /bin/bash
GO    ?= go
TOOLS := $(CURDIR)/bin/tools
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
export PATH := $(TOOLS):$(PATH)

FUNCTIONS := keys validate admin chat usage export revalidator webhooks
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags='-s -w -buildid='

.PHONY: run test test-localstack tools token bench fuzz build lint rewrap clean \
	$(addprefix build-,KeysFunction ValidateFunction AdminFunction ChatFunction UsageFunction ExportFunction RevalidatorFunction WebhooksFunction)

## run: start moto_server, the tables and topic, and the dev server on :8080
run:
	@infra/scripts/run.sh

## test: start an emulator on a free port, run every unit and integration test, stop it
test: tools
	@infra/scripts/test.sh

## test-localstack: the integration tests against LocalStack (AWS_ENDPOINT_URL must point at it)
test-localstack: tools
	@test -n "$$AWS_ENDPOINT_URL" || { echo "set AWS_ENDPOINT_URL to your LocalStack (e.g. http://localhost:4566); see infra/localstack/README.md"; exit 1; }
	@infra/scripts/test.sh

## tools: install pinned test tools (aws-lambda-rie) into bin/tools
tools: $(TOOLS)/aws-lambda-rie
$(TOOLS)/aws-lambda-rie:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)

## token: mint a dev token, e.g. make token USER=alice ROLE=admin (org keys: ORG=acme ORG_ROLE=owner PROJECT=web)
token:
	@$(GO) run ./infra/token -user "$(USER)" $(if $(ROLE),-role "$(ROLE)") $(if $(ORG),-org "$(ORG)") $(if $(PROJECT),-project "$(PROJECT)") $(if $(ORG_ROLE),-org-role "$(ORG_ROLE)")

.PHONY: screenshots
## screenshots: the settings page's states as PNGs in docs/screenshots (headless chromium, its own moto_server)
screenshots:
	@command -v chromium >/dev/null || { echo "make screenshots: 'chromium' not found; apt-get install -y chromium"; exit 1; }
	$(GO) test -count=1 -run 'TestSettingsPageJourney' ./shared/app/ -args -screenshots=$(CURDIR)/docs/screenshots

## rewrap: re-wrap every stored key under the current wrapping key (.dev/env fills what the environment lacks)
rewrap:
	@set -a; if [ -f .dev/env ]; then while IFS='=' read -r k v; do \
		case "$$k" in ''|\#*) continue;; esac; [ -n "$$(printenv $$k)" ] || export "$$k=$$v"; done < .dev/env; fi; \
	set +a; $(GO) run ./infra/rewrap

## bench: the docs/api.md §14 performance suite (starts its own moto_server); fails naming any row not met;
##        WRITE=1 also writes docs/performance.md
bench:
	GO="$(GO)" $(GO) run ./infra/bench $(if $(WRITE),-write)

## fuzz: run every fuzz target of the module, each for FUZZTIME (default 30s); go test -fuzz takes one at a time
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		pkg=./$$(dirname $$f); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$t ($$pkg)"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(or $(FUZZTIME),30s) $$pkg; \
		done; \
	done

## build: every function's bootstrap for Lambda (linux/arm64) into bin/<function>/
build:
	@for f in $(FUNCTIONS); do \
		GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o bin/$$f/bootstrap ./functions/$$f || exit 1; \
		ls -l bin/$$f/bootstrap; done

# SAM (BuildMethod: makefile) calls build-<LogicalId> with ARTIFACTS_DIR set.
build-KeysFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/keys
build-ValidateFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/validate
build-AdminFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/admin
build-ChatFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/chat
build-UsageFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/usage
build-ExportFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/export
build-RevalidatorFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/revalidator
build-WebhooksFunction:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/webhooks

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l .); test -z "$$out" || { echo "gofmt needed: $$out"; exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin .aws-sam
