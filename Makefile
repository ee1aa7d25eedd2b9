# keyhook — see README.md. `make demo` runs the whole system locally,
# `make test` runs every test.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

BIN        := $(CURDIR)/bin
GO         ?= go
CONTROLLER_GEN := $(BIN)/controller-gen
K8S_VERSION   ?= v1.37.1
VAULT_VERSION ?= v1.21.1
# The control plane and Vault are built once from the Go module proxy and
# cached outside the work tree, keyed by version.
KEYHOOK_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/keyhook
export KEYHOOK_CACHE K8S_VERSION VAULT_VERSION

# Test timeout for the whole suite; the control plane starts once per package.
TEST_TIMEOUT ?= 20m

.PHONY: all build test unit e2e bench generate manifests verify vet lint demo testenv controlplane clean images push

all: build

# The init-agent is built with every provider (keyhook-init-agent) and once
# per provider (keyhook-init-agent-<provider>, build tag <provider>), which
# links that provider's SDK alone.
AGENT_PROVIDERS := vault aws gcpsm

build: ## Build the webhook, the controller and the init-agents (all providers, and one per provider).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/keyhook-webhook ./cmd/webhook
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/keyhook-controller ./cmd/controller
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/keyhook-init-agent ./cmd/init-agent
	for p in $(AGENT_PROVIDERS); do \
	  CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -tags $$p -o $(BIN)/keyhook-init-agent-$$p ./cmd/init-agent; done

# make images: every image (go run ./hack/images list) for PLATFORMS, built
# by pkg/imagebuild without Docker, into bin/images/ (an OCI layout with an
# SPDX SBOM per platform image, archives/*.tar for docker load, images.json).
# IMAGES=webhook,init-agent builds a part. make push REGISTRY=host/path pushes
# them (all but the test-only testapp) and writes bin/images/values-images.yaml,
# the chart values naming the pushed images (registry, tag, digests).
IMAGES_OUT ?= $(BIN)/images
PLATFORMS  ?= linux/amd64,linux/arm64
IMAGES     ?=
REGISTRY   ?=
TAG        ?=
images: ## Build the images (reproducible, multi-arch, SBOMs) into bin/images/.
	$(GO) run ./hack/images -out $(IMAGES_OUT) -platform $(PLATFORMS) $(if $(IMAGES),-only $(IMAGES))

push: images ## Push bin/images/ to REGISTRY (make push REGISTRY=ghcr.io/you [TAG=v1]) and write bin/images/values-images.yaml for helm install -f.
	@test -n "$(REGISTRY)" || { echo "push: set REGISTRY, e.g. make push REGISTRY=ghcr.io/you"; exit 1; }
	$(GO) run ./hack/images push -layout $(IMAGES_OUT) -registry $(REGISTRY) $(if $(TAG),-tag $(TAG))

GOLANGCI_LINT := $(BIN)/golangci-lint
$(GOLANGCI_LINT): hack/tools/lint/go.mod
	cd hack/tools/lint && $(GO) build -o $(GOLANGCI_LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint

lint: $(GOLANGCI_LINT) ## Run golangci-lint (v2, pinned in hack/tools/lint) with .golangci.yml.
	$(GOLANGCI_LINT) run ./...

$(CONTROLLER_GEN): hack/tools/gen/go.mod
	cd hack/tools/gen && $(GO) build -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen

generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./pkg/crd/...

# RBAC per role, from the markers of the packages each role runs: the
# webhook's (read-only) from pkg/admission and its wiring, the controller's
# from the reconcilers and its wiring.
WEBHOOK_RBAC_PATHS    := paths=./pkg/admission/... paths=./internal/app/webhook/...
CONTROLLER_RBAC_PATHS := paths=./pkg/secretsync/... paths=./pkg/rollout/... paths=./pkg/policy/... paths=./pkg/certs/... paths=./pkg/storehealth/... paths=./internal/app/controller/...

manifests: $(CONTROLLER_GEN) ## Generate CRDs, RBAC per role, the webhook registrations (plain and cert-manager) and the ValidatingAdmissionPolicies.
	$(CONTROLLER_GEN) crd paths=./pkg/crd/... output:crd:artifacts:config=manifests/crd
	$(CONTROLLER_GEN) rbac:roleName=keyhook-webhook $(WEBHOOK_RBAC_PATHS) output:rbac:artifacts:config=manifests/rbac/webhook
	$(CONTROLLER_GEN) rbac:roleName=keyhook-controller $(CONTROLLER_RBAC_PATHS) output:rbac:artifacts:config=manifests/rbac/controller
	$(GO) run ./hack/webhookgen -dir manifests/self-managed -cert-manager-dir manifests/certmanager -policy-dir manifests/webhook
	@# The Helm chart renders the same generated objects (tests/chart checks it).
	cp manifests/crd/keyhook.dev_*.yaml charts/keyhook/crds/
	cp manifests/rbac/webhook/role.yaml charts/keyhook/files/webhook-role.yaml
	cp manifests/rbac/controller/role.yaml charts/keyhook/files/controller-role.yaml
	cp manifests/self-managed/mutatingwebhookconfiguration.yaml \
	  manifests/self-managed/validatingwebhookconfiguration.yaml manifests/webhook/admissionpolicies.yaml charts/keyhook/files/

GENERATED := pkg/crd manifests/crd manifests/rbac \
  manifests/self-managed/mutatingwebhookconfiguration.yaml manifests/self-managed/validatingwebhookconfiguration.yaml \
  manifests/certmanager/mutatingwebhookconfiguration.yaml manifests/certmanager/validatingwebhookconfiguration.yaml \
  manifests/webhook/admissionpolicies.yaml charts/keyhook/crds charts/keyhook/files
generated_state = { git status --porcelain -- $(GENERATED); git diff -- $(GENERATED); } | sha256sum

# The webhook is on the path of every pod create: it must not link a
# provider SDK (they belong to the controller and the init-agent).
WEBHOOK_FORBIDDEN_DEPS := aws-sdk-go-v2|cloud.google.com/go|google.golang.org/grpc|hashicorp/vault/api

verify: $(CONTROLLER_GEN) $(GOLANGCI_LINT) ## Fail when generated files are stale, vet or golangci-lint complains, gofmt would change a file, the webhook links a provider SDK or a one-provider init-agent a Kubernetes library.
	@before=$$($(generated_state)); \
	$(MAKE) --no-print-directory generate manifests >/dev/null; \
	after=$$($(generated_state)); \
	if [ "$$before" != "$$after" ]; then \
	  git status --porcelain -- $(GENERATED); \
	  echo "verify: generated files were stale; they are regenerated now: review and commit them"; exit 1; fi
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "verify: run gofmt -w on the files above"; exit 1; }
	@deps=$$($(GO) list -deps ./cmd/webhook | grep -E '$(WEBHOOK_FORBIDDEN_DEPS)' || true); \
	if [ -n "$$deps" ]; then echo "$$deps" | head; echo "verify: cmd/webhook links a provider SDK (see above; go mod why -m to find the import)"; exit 1; fi
	@for p in $(AGENT_PROVIDERS); do deps=$$($(GO) list -deps -tags $$p ./cmd/init-agent | grep -E '^(k8s\.io|sigs\.k8s\.io)/' || true); \
	  if [ -n "$$deps" ]; then echo "$$deps" | head; echo "verify: the $$p init-agent links a Kubernetes library (see above)"; exit 1; fi; done
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

vet:
	$(GO) vet ./...

# make demo and make bench need only the control plane and Vault (no root);
# make test also needs the node (kubelet, kube-proxy, kube-scheduler,
# containerd, and Debian packages installed as root).
controlplane: ## Build (once) and cache the control plane and Vault.
	@hack/testenv.sh >/dev/null
	@hack/vault.sh >/dev/null

testenv: controlplane ## Build (once) and cache the control plane, Vault and the node's binaries; install the node's Debian packages when missing (root).
	@hack/node.sh >/dev/null

# tests/node runs pods on a real node (kubelet, containerd, runc, CNI) and
# needs root; one run at a time per machine (a lock file in $TMPDIR).
test: verify testenv build ## Run every test: unit, package, end-to-end against the real control plane and Vault, and on a real node.
	KEYHOOK_TESTENV=$$(hack/testenv.sh) KEYHOOK_VAULT=$$(hack/vault.sh) KEYHOOK_CONTAINERD=$$(hack/node.sh) KEYHOOK_BIN=$(BIN) \
	  $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# make bench: the benchmark suite of bench/suite (~5 minutes): one table,
# also written to bench/results.md. BENCH_PROFILE=dir writes CPU and heap
# profiles of the admission path and the reconciler; BENCH_FLAGS passes flags
# (go run ./bench/suite -h). make bench-scale adds 10,000 ExternalSecrets,
# 50,000 other Secrets and 20,000 ConfigMaps. Neither is part of make test.
BENCH_FLAGS ?=
bench: controlplane build ## Run the benchmark suite and print its table (bench/results.md).
	KEYHOOK_TESTENV=$$(hack/testenv.sh) KEYHOOK_VAULT=$$(hack/vault.sh) KEYHOOK_BIN=$(BIN) \
	  $(GO) run ./bench/suite $(BENCH_FLAGS)

.PHONY: bench-scale
bench-scale: controlplane build ## The benchmark suite with the scale runs (10k ExternalSecrets, 50k Secrets).
	KEYHOOK_TESTENV=$$(hack/testenv.sh) KEYHOOK_VAULT=$$(hack/vault.sh) KEYHOOK_BIN=$(BIN) \
	  $(GO) run ./bench/suite -scale -out bench/results-scale.md $(BENCH_FLAGS)

demo: controlplane build ## Start the control plane, Vault and keyhook; show an injected pod.
	KEYHOOK_TESTENV=$$(hack/testenv.sh) KEYHOOK_VAULT=$$(hack/vault.sh) KEYHOOK_BIN=$(BIN) \
	  $(GO) run ./tests/demo

clean:
	rm -rf $(BIN)
