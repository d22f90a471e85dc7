#!/usr/bin/env bash
# Exactly what CI runs: this is .ci/run.
exec "$(dirname "$0")/../.ci/run" "$@"
