#!/usr/bin/env bash
# Builds every image of the Dockerfile with podman, on a machine with no image registry.
#
#   scripts/images.sh env     print the exports podman needs here (eval "$(scripts/images.sh env)")
#   scripts/images.sh base    make the Python base image with debootstrap (once per machine)
#   scripts/images.sh build   build the serving, worker and mlflow targets (base first if missing)
#
# The base is Debian bookworm's own python3 (minbase + python3-venv), bootstrapped from the
# mirror apt uses here, given the CA certificates this host trusts (so pip reaches the index
# from inside a build), imported and tagged as the image the Dockerfile's FROM names.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE_DIR=${VEHICLES_IMAGES_STATE:-/var/tmp/vehicles-images}
BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
TAG=${VEHICLES_IMAGE_TAG:-dev}
TARGETS=(serving worker mlflow)

export CONTAINERS_CONF="$STATE_DIR/containers.conf"

ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v runc >/dev/null || missing+=(runc)
  # `podman run --init` looks for catatonit here; podman only recommends it (catatonit | tini |
  # dumb-init), and apt settles for tini when tini is already installed.
  [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
  if ((${#missing[@]})); then
    echo "installing ${missing[*]} with apt" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  mkdir -p "$STATE_DIR"
  # Without CAP_SYS_RESOURCE podman cannot raise rlimits to its defaults ("error setting rlimit").
  # crun refuses hybrid cgroups (v1 controllers plus a v2 mount, as here); runc runs them.
  cat > "$CONTAINERS_CONF" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
}

# The first URI apt fetches Debian from (deb822 sources or a classic sources.list).
debian_mirror() {
  local uri
  uri=$(grep -hE '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^\s*deb\s' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# debootstrap can leave /proc (and friends) mounted inside the tree it built.
unmount_below() {
  awk -v root="$1/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l
}

build_base() {
  if podman image exists "$BASE_IMAGE"; then
    echo "base image $BASE_IMAGE exists; reusing it" >&2
    return
  fi
  local root="$STATE_DIR/rootfs"
  [ -d "$root" ] && unmount_below "$root" && rm -rf --one-file-system "$root"
  echo "bootstrapping bookworm from $(debian_mirror) into $root" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$(debian_mirror)" >/dev/null
  # Extra CAs the host trusts (e.g. an egress proxy's), so pip works inside builds.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  fi
  chroot "$root" update-ca-certificates >/dev/null
  chroot "$root" apt-get clean
  unmount_below "$root"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
  tar -C "$root" --one-file-system -c . | podman import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
  rm -rf --one-file-system "$root"
  echo "base image $BASE_IMAGE: $(podman image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes" >&2
}

# The host's pip index settings, as build arguments (only http(s) indexes mean anything inside).
pip_build_args() {
  local name value
  for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT; do
    value=${!name:-}
    if [ -z "$value" ] && command -v pip >/dev/null; then
      value=$(pip config get "global.$(echo "${name#PIP_}" | tr 'A-Z_' 'a-z-')" 2>/dev/null || true)
    fi
    value=$(tr ' ' '\n' <<<"$value" | grep -E '^(https?://|[0-9]+$)' | paste -sd' ' || true)
    [ -n "$value" ] && printf -- '--build-arg\n%s=%s\n' "$name" "$value"
  done
  return 0
}

build_images() {
  build_base
  local args target
  mapfile -t args < <(pip_build_args)
  for target in "${TARGETS[@]}"; do
    echo "building vehicles-$target:$TAG" >&2
    podman build --layers --format docker --target "$target" -t "localhost/vehicles-$target:$TAG" "${args[@]}" -f Dockerfile .
  done
  podman image ls --filter reference='localhost/vehicles-*' --format '{{.Repository}}:{{.Tag}} {{.Size}}' >&2
}

case "${1:-}" in
  env) echo "export CONTAINERS_CONF=$CONTAINERS_CONF" ;;
  base) ensure_tools; build_base ;;
  build) ensure_tools; build_images ;;
  *) echo "usage: $0 env|base|build" >&2; exit 2 ;;
esac
