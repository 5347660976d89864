#!/usr/bin/env bash
# Build the helm CLI the deploy tests render manifests/chart with, from its Go module (helm.sh/helm/v3) through the
# Go module proxy into a versioned cache outside the repo. Rebuilds only when the binary is missing.
# Progress goes to stderr; the last line on stdout is the binary's path.
#
# `go install pkg@version` builds exactly the module's own go.mod (helm v3 has no replace directives), so no wrapper
# module is needed. The ldflags mirror helm's Makefile: its version string, and the Kubernetes version that
# `helm template` reports as .Capabilities.KubeVersion (derived from the client-go it is built with, not v1.20).
set -euo pipefail

HELM_VERSION="${MULTICLUSTER_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${MULTICLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multicluster}"
OUT="${CACHE_ROOT}/testbin/helm-${HELM_VERSION}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
JOBS="${GO_BUILD_JOBS:-2}"

if [ -x "${OUT}/helm" ]; then
  echo "helm: ${OUT}/helm present" >&2
  echo "${OUT}/helm"
  exit 0
fi

command -v go >/dev/null || { echo "helm: the Go toolchain is required (apt-get install golang or https://go.dev/dl)" >&2; exit 1; }
mkdir -p "${OUT}"

modinfo=$(cd "${OUT}" && go mod download -json "helm.sh/helm/v3@${HELM_VERSION}")
gomod=$(printf '%s' "$modinfo" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[ -n "$gomod" ] || { echo "helm: cannot download helm.sh/helm/v3@${HELM_VERSION}: ${modinfo}" >&2; exit 1; }
echo "helm: module needs $(grep -m1 '^go ' "$gomod"), local toolchain is $(go env GOVERSION)" >&2
clientgo=$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
if [ -n "$clientgo" ]; then
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${clientgo}"
  done
fi

start=$(date +%s)
echo "helm: building helm.sh/helm/v3/cmd/helm@${HELM_VERSION} (go install -p ${JOBS}; a cold build takes a few minutes on 2 cores)" >&2
tmp=$(mktemp -d "${OUT}/gobin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp" go install -p "${JOBS}" -trimpath -ldflags "${ldflags}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >&2
mv "$tmp/helm" "${OUT}/helm"
echo "helm: built $("${OUT}/helm" version --short) in $(( $(date +%s) - start ))s" >&2
echo "${OUT}/helm"
