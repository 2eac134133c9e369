// Node/V8 flags the agent runs with, wherever it is started: manifests/base/daemonset.yaml's
// command, the Dockerfile's CMD, scripts/image.sh's config, the `strata` shebang, and the tests'
// and benchmarks' agentCommand() (test/unit/manifests.test.ts checks they agree).
// --max-semi-space-size=4 (MiB): V8's young generation otherwise grows to tens of MiB under the
// agent's allocation rate and stays committed (RSS under a burst measured 350-460 MiB without a
// cap, 250-270 MiB with 1 MiB, before the memory cuts). 1 MiB was the first choice, but it
// promotes every span waiting for its export batch into the old generation: on replayed lab
// traffic it cost 1.35x the CPU per event of 4 MiB (bench/correlator.ts, 6 of 6 rounds), and in
// the whole-agent bench 4 MiB gave 0.80x the agent CPU per proxied request (small bodies; 0.96x
// 1 KiB) with RSS after the load unchanged (141-147 vs 140-142 MiB; bench/README.md, 22:42).
// --heap-growing-percent=20: the old generation may grow to 1.2x what survived the last full GC
// (V8's own factor is up to 4x): at a steady 500 req/s through the lab RSS measured 215-218 MiB
// instead of 370-380 MiB, for ~10 % more agent CPU, with no hard cap (--max-old-space-size would
// crash the agent when a legitimately large working set crossed it). README "Limits", memory.
export const AGENT_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=4', '--heap-growing-percent=20']);

// What the image runs (working directory /opt/strata): the JavaScript build (scripts/build-js.ts,
// dist/src/cli.js), never the .ts sources, so Node's TypeScript stripper (amaro, ~33 MiB RSS) is
// never loaded; the configuration from the ConfigMap the DaemonSet mounts at /etc/strata.
// scripts/image.sh writes it into the image's config; manifests/base/daemonset.yaml's command and
// the Dockerfile's CMD must equal it (test/unit/manifests.test.ts), and the agent in the real
// cluster's pod must run it (test/integration/k8s-rollout.test.ts).
export const AGENT_IMAGE_COMMAND: readonly string[] = Object.freeze(['node', ...AGENT_NODE_FLAGS, 'dist/src/cli.js', 'agent', '--config', '/etc/strata/strata.yaml']);
