#!/usr/bin/env bash
# Installs the load generator the benchmarks use (and nginx for the proxy comparison to come).
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx
