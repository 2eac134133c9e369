// Node/V8 flags the agent runs with, wherever it is started: manifests/base/daemonset.yaml's
// command, the Dockerfile's CMD, scripts/image.sh's config, the `strata` shebang, and the tests'
// and benchmarks' agentCommand() (test/unit/manifests.test.ts checks they agree).
// --max-semi-space-size=1 (MiB): V8's young generation otherwise grows to tens of MiB under the
// agent's allocation rate and stays committed: with it, RSS under a burst measured 250-270 MiB
// instead of 350-460 MiB, at no measurable CPU cost (bench/correlator.ts --node-flags, 0.96x
// CPU per event; README "Memory").
export const AGENT_NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=1']);
