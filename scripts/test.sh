#!/usr/bin/env bash
# Every test: setup (idempotent), static checks, then node's test runner over test/ (unit,
# contract, integration on the real kernel, end to end in the lab). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
npm test
