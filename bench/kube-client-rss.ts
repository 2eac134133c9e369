// The agent's RSS at rest with discovery.source=kubernetes against a real kube-apiserver
// (lab/k8s/cluster.ts), this tree against another built tree (--base), interleaved A/B: what the
// Kubernetes client costs the agent in a cluster. Each agent runs as the image runs it (node with
// AGENT_NODE_FLAGS, dist/src/cli.js: run `npm run build:js` in both trees first), authenticated as
// the strata ServiceAccount bound to manifests/base's ClusterRole, on a Node with a few pods (one
// owned by a ReplicaSet, so the owner lookup runs too); no pod of this machine matches
// (discovery.podCgroupParent points nowhere), no traffic, OTLP to a refused port. VmRSS, RssAnon and
// RssFile of /proc/<pid>/status when discovery turns fresh and again 15 s later (after a malloc_trim,
// every 10 s), then SIGTERM. `--none`: a third side, this tree with discovery.source=none (no API
// client at all: the floor the Kubernetes client is measured against).
//   node bench/kube-client-rss.ts --base /path/to/other/tree [--rounds 4] [--settle-s 15] [--none]
import { readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { serviceAccountIdentity, startApiServer } from '../lab/k8s/cluster.ts';
import { agentCommand, metricValue, spawnAgent, stopAgent } from '../test/helpers/agent-proc.ts';

const HERE = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({ options: { base: { type: 'string' }, rounds: { type: 'string', default: '4' }, 'settle-s': { type: 'string', default: '15' }, out: { type: 'string' }, none: { type: 'boolean', default: false } } });
if (!values.base) throw new Error('--base <built tree> is required');
const trees: Record<string, string> = { base: values.base.replace(/\/$/, ''), this: HERE.replace(/\/$/, ''), none: HERE.replace(/\/$/, '') };
const sides = values.none ? ['base', 'this', 'none'] : ['base', 'this'];
const rounds = Number(values.rounds);
const settleMs = Number(values['settle-s']) * 1000;
const NODE = 'kclrss-node';
const AGENT = 'strata-agent';
const MANIFESTS = join(HERE, 'manifests/base');

function status(pid: number): { rssMiB: number; anonMiB: number; fileMiB: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  const mib = (k: string) => Math.round((kb(k) / 1024) * 10) / 10;
  return { rssMiB: mib('VmRSS'), anonMiB: mib('RssAnon'), fileMiB: mib('RssFile') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines: string[] = [];
const log = (s: string) => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

const c = await startApiServer({ identities: [serviceAccountIdentity('strata', 'strata', AGENT)] });
try {
  for (const f of ['namespace.yaml', 'serviceaccount.yaml', 'clusterrole.yaml', 'clusterrolebinding.yaml']) await c.kubectl(['apply', '-f', join(MANIFESTS, f)]);
  const post = async (path: string, body: object) => {
    const r = await c.api('POST', path, body);
    if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${r.body}`);
    return JSON.parse(r.body) as { metadata: { uid: string } };
  };
  await post('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
  const template = { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'kcl.local/x:1' }] } };
  const dep = await post('/apis/apps/v1/namespaces/default/deployments', { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { selector: { matchLabels: { app: 'x' } }, template } });
  const rs = await post('/apis/apps/v1/namespaces/default/replicasets', {
    apiVersion: 'apps/v1', kind: 'ReplicaSet', metadata: { name: 'web-5c8d66c76d', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: dep.metadata.uid, controller: true }] },
    spec: { selector: { matchLabels: { app: 'x' } }, template },
  });
  for (let i = 0; i < 5; i++) {
    await post('/api/v1/namespaces/default/pods', {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: `web-5c8d66c76d-${i}`, labels: { app: 'x' }, ownerReferences: i === 0 ? [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5c8d66c76d', uid: rs.metadata.uid, controller: true }] : [] },
      spec: { nodeName: NODE, containers: [{ name: 'c', image: 'kcl.local/x:1' }] },
    });
  }
  log(`# kube-client-rss ${new Date().toISOString()}: base=${trees.base} this=${trees.this}; sides ${sides.join(' ')}; ${rounds} rounds, order reversed every other round; settle ${settleMs} ms`);
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 === 0 ? sides : [...sides].reverse()) {
      const tree = trees[side] as string;
      const args = ['--node-name', NODE, '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--otlp-endpoint', 'http://127.0.0.1:27949/v1/traces',
        '--set', `discovery.source=${side === 'none' ? 'none' : 'kubernetes'}`, '--set', `discovery.kubeconfig=${c.kubeconfigs[AGENT]}`, '--set', 'discovery.podCgroupParent=/kclrss-none/'];
      const cmd = agentCommand(args, join(tree, 'dist/src/cli.js'));
      const t0 = performance.now();
      const a = await spawnAgent(cmd, 90_000);
      const metrics = async () => (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();
      const deadline = Date.now() + 30_000;
      while (side !== 'none' && (await metrics().then((m) => metricValue(m, 'strata_discovery_metadata_stale')).catch(() => 1)) !== 0) {
        if (Date.now() > deadline) throw new Error(`${side}: discovery not fresh after 30 s: ${a.stderr()}`);
        await sleep(50);
      }
      const pid = a.child.pid as number;
      const fresh = status(pid);
      const freshS = (performance.now() - t0) / 1000;
      await sleep(settleMs);
      const settled = status(pid);
      const m = await metrics();
      const pods = metricValue(m, 'strata_discovery_pods');
      const heapMiB = Math.round(metricValue(m, 'strata_process_nodejs_heap_size_used_bytes') / 1048576 * 10) / 10;
      const exit = await stopAgent(a);
      log(JSON.stringify({ round: r, side, freshS: Math.round(freshS * 10) / 10, fresh, settled, heapUsedMiB: heapMiB, pods, exit: exit.code, load: loadavg().map((x) => x.toFixed(2)).join(' ') }));
    }
  }
} finally {
  const problems = await c.stop();
  if (problems.length) log(`# API server cleanup problems: ${problems.join('; ')}`);
}
if (values.out) writeFileSync(values.out, `${lines.join('\n')}\n`);
