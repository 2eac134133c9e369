#!/usr/bin/env bash
# Removes from an image's production node_modules what Node never loads at run time: source maps,
# TypeScript declarations and sources (Node does not strip types under node_modules, so a .ts there
# cannot be loaded), type-only packages (@types), the addon's build-time headers (node-addon-api:
# the addon is already built), and docs. package.json files and licenses stay.
# Used by scripts/image.sh and the Dockerfile; the image build then loads every agent module with
# the pruned tree (scripts/image.sh), and the real-cluster test runs it.
#   bash scripts/prune-node-modules.sh DIR/node_modules
set -euo pipefail
nm=${1:?usage: prune-node-modules.sh NODE_MODULES_DIR}
[ -d "$nm" ] && [ "$(basename "$nm")" = node_modules ] || { echo "prune-node-modules: $nm is not a node_modules directory" >&2; exit 2; }
rm -rf "$nm/@types" "$nm/node-addon-api"
find "$nm" -type f \( -name '*.map' -o -name '*.ts' -o -name '*.mts' -o -name '*.cts' \
  -o -iname 'README*' -o -iname 'CHANGELOG*' -o -iname 'HISTORY*' -o -name '*.md' \) \
  ! -iname 'LICEN[CS]E*' ! -iname 'COPYING*' ! -iname 'NOTICE*' -delete
# directories left empty (src/ of packages that ship their TypeScript sources)
find "$nm" -mindepth 1 -type d -empty -delete
