#!/usr/bin/env bash
# Installs what `npm run bench` needs besides Node: wrk (the load generator) and nginx (the reference
# reverse proxy of the warm benchmark). The benchmarks start their own nginx from a temp config; the
# system service is not used. Debian/Ubuntu (apt-get); skips what is already installed.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -eq 0 ]; then
  echo "wrk and nginx are installed"
  exit 0
fi
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
