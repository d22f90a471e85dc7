#!/usr/bin/env bash
# Exactly what CI runs (.ci/run calls `make test`), plus the linters for local use.
set -euo pipefail
cd "$(dirname "$0")/.."
make test
make lint
