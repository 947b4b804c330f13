#!/usr/bin/env bash
# Seeds the base images funcd's templates build FROM, on a Docker engine that cannot pull them.
#
# No container registry is reachable from the machines funcd is developed and tested on, so `node:20-slim`
# and `python:3.11-slim` cannot come from Docker Hub. This script makes images under those tags from
# Debian's own packages instead:
#   - a minimal Debian 12 (bookworm) root file system made by debootstrap from the Debian mirror
#     (the apt sources this machine already uses), without docs, man pages or apt lists;
#   - node:20-slim  = that rootfs + this machine's Node.js 20 binary and npm, at /usr/local like the
#     official image, with a `node` user (uid 1000);
#   - python:3.11-slim = that rootfs + Debian's python3 (3.11) and python3-pip.
# Tags that already exist are left alone (a machine that can pull the official images keeps those), so
# running it again is instant. FUNCD_SEED_FORCE=1 rebuilds them.
#
# Needs root (debootstrap, chroot), debootstrap and a Docker engine. Takes about a minute the first time.
set -euo pipefail

NODE_TAG=node:20-slim
PYTHON_TAG=python:3.11-slim
MIRROR=${FUNCD_SEED_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

have_image() { [ "${FUNCD_SEED_FORCE:-}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

if have_image "$NODE_TAG" && have_image "$PYTHON_TAG"; then
  echo "base images present: $NODE_TAG $PYTHON_TAG"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "seed-base-images: debootstrap is missing (apt-get install -y debootstrap)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "seed-base-images: run as root (debootstrap needs it)" >&2; exit 1; }

work=$(mktemp -d /var/tmp/funcd-seed.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The shared base: minbase is apt + dpkg + coreutils + libc/libstdc++, which Node's binary links against.
bootstrap() { # <dir> [extra packages, comma separated]
  local dir=$1 include=${2:-}
  echo "debootstrap $SUITE into $dir ${include:+(+ $include)}"
  debootstrap --variant=minbase ${include:+--include="$include"} "$SUITE" "$dir" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # Slim it the way the official -slim images are: no docs, no man pages, no package lists or caches.
  rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/lib/apt/lists/* \
    "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log
  find "$dir"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
  # The engine writes its own resolv.conf and hosts into containers; the build machine's must not stay.
  : >"$dir"/etc/resolv.conf
}

import() { # <dir> <tag> [--change ...]
  local dir=$1 tag=$2
  shift 2
  echo "importing $tag"
  tar -C "$dir" --numeric-owner -c . | docker import "$@" - "$tag" >/dev/null
  docker image inspect --format "$tag: {{.Size}} bytes" "$tag"
}

PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

if ! have_image "$NODE_TAG"; then
  node_bin=$(readlink -f "$(command -v node)")
  case "$("$node_bin" --version)" in v20.*) ;; *)
    echo "seed-base-images: $NODE_TAG needs this machine's Node.js to be version 20 (found $("$node_bin" --version))" >&2
    exit 1
    ;;
  esac
  npm_dir="$(npm root -g)/npm"
  root="$work/node"
  bootstrap "$root" ca-certificates
  install -m 0755 "$node_bin" "$root/usr/local/bin/node"
  mkdir -p "$root/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  chroot "$root" groupadd --gid 1000 node
  chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  version=$("$node_bin" --version)
  import "$root" "$NODE_TAG" --change "$PATH_ENV" --change "ENV NODE_VERSION=${version#v}" --change 'CMD ["node"]'
fi

if ! have_image "$PYTHON_TAG"; then
  root="$work/python"
  bootstrap "$root" ca-certificates,python3,python3-pip
  # Debian marks its Python "externally managed"; images install into their own folders (pip --target)
  # or, like the official image, system-wide, which this marker would refuse.
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  import "$root" "$PYTHON_TAG" --change "$PATH_ENV" --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]'
fi
