#!/usr/bin/env bash
# Build the real control-plane binaries the test harness runs (kube-apiserver, kube-controller-manager, etcd)
# from the Go module proxy into a versioned cache outside the repo. Rebuilds only what is missing.
#
# k8s.io/kubernetes pins its staging modules at v0.0.0 with `replace => ./staging/...`, which a dependent module
# cannot inherit; the wrapper module below replaces each one with its published v0.X.Y, generated from the
# release's own go.mod so the list never drifts.
set -euo pipefail

K8S_VERSION="${MULTICLUSTER_K8S_VERSION:-v1.37.2}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
CACHE_ROOT="${MULTICLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multicluster}"
OUT="${CACHE_ROOT}/testbin/k8s-${K8S_VERSION}"
WORK="${CACHE_ROOT}/testbin/src-${K8S_VERSION}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
JOBS="${GO_BUILD_JOBS:-2}"

want=(kube-apiserver kube-controller-manager etcd)
# The kubectl tests drive the real kubectl: the machine's own when it has one, else one built from the same source.
if [ -n "${MC_BUILD_KUBECTL:-}" ] || ! command -v kubectl >/dev/null 2>&1; then want+=(kubectl); fi
missing=()
for b in "${want[@]}"; do [ -x "${OUT}/${b}" ] || missing+=("$b"); done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "testbin: all binaries present in ${OUT}" >&2
  echo "${OUT}"
  exit 0
fi

command -v go >/dev/null || { echo "testbin: the Go toolchain is required (apt-get install golang or https://go.dev/dl)" >&2; exit 1; }
mkdir -p "${OUT}" "${WORK}"
cd "${WORK}"

modinfo=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}")
gomod=$(printf '%s' "$modinfo" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
goline=$(grep -m1 '^go ' "$gomod")
etcd_version=$(sed -n 's#^\s*go.etcd.io/etcd/server/v3 \(v[^ ]*\).*#\1#p' "$gomod" | head -1)

{
  echo "module multicluster.local/testbin"
  echo
  echo "$goline"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes ${K8S_VERSION}"
  echo "	go.etcd.io/etcd/server/v3 ${etcd_version}"
  echo ")"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk -v v="$STAGING_VERSION" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

// Package tools records the main packages this module builds.
package tools
GO

echo "testbin: resolving modules for k8s ${K8S_VERSION} (staging ${STAGING_VERSION}), etcd ${etcd_version}" >&2
go get "k8s.io/kubernetes/cmd/kube-apiserver@${K8S_VERSION}" "k8s.io/kubernetes/cmd/kube-controller-manager@${K8S_VERSION}" "k8s.io/kubernetes/cmd/kubectl@${K8S_VERSION}" "go.etcd.io/etcd/server/v3@${etcd_version}" >&2

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "${K8S_VERSION}" | cut -d. -f2) -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
for b in "${missing[@]}"; do
  case "$b" in
    kube-apiserver) pkg="k8s.io/kubernetes/cmd/kube-apiserver" ;;
    kube-controller-manager) pkg="k8s.io/kubernetes/cmd/kube-controller-manager" ;;
    etcd) pkg="go.etcd.io/etcd/server/v3" ;;
    kubectl) pkg="k8s.io/kubernetes/cmd/kubectl" ;;
  esac
  start=$(date +%s)
  echo "testbin: building ${b} (go build -p ${JOBS}; a cold build takes several minutes on 2 cores)" >&2
  CGO_ENABLED=0 go build -p "${JOBS}" -trimpath -ldflags "${ldflags}" -o "${OUT}/${b}.tmp" "${pkg}"
  mv "${OUT}/${b}.tmp" "${OUT}/${b}"
  echo "testbin: built ${b} in $(( $(date +%s) - start ))s" >&2
done
echo "${OUT}"
