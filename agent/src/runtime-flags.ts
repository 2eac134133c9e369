// Node/V8 flags the agent runs with, wherever it is started: manifests/base/daemonset.yaml's
// command, the Dockerfile's CMD, scripts/image.sh's config, the `strata` shebang, and the tests'
// and benchmarks' agentCommand() (test/unit/manifests.test.ts checks they agree).
// --max-semi-space-size=1 (MiB): V8's young generation otherwise grows to tens of MiB under the
// agent's allocation rate and stays committed: with it, RSS under a burst measured 250-270 MiB
// instead of 350-460 MiB, at no measurable CPU cost (bench/correlator.ts --node-flags, 0.96x
// CPU per event).
// --heap-growing-percent=20: the old generation may grow to 1.2x what survived the last full GC
// (V8's own factor is up to 4x): at a steady 500 req/s through the lab RSS measured 215-218 MiB
// instead of 370-380 MiB, for ~10 % more agent CPU, with no hard cap (--max-old-space-size would
// crash the agent when a legitimately large working set crossed it). README "Limits", memory.
export const AGENT_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=1', '--heap-growing-percent=20']);
