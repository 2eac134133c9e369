// `strata demo` end to end, as a user runs it: the CLI as a child process with its own prefix and
// traces dir. It must bring the 4-node cluster lab up, run one agent per node, write files that
// parse (Jaeger JSON, OTLP JSON) holding complete uninstrumented traces across nodes, print the
// waterfalls, forward to OTEL_EXPORTER_OTLP_ENDPOINT, and leave nothing of its prefix behind; also
// when interrupted with SIGINT once the cluster is up.
// Needs root, nginx, nftables, python3, curl (and OVS for node-3): under CI=true their absence
// fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { JaegerTraces } from '../../agent/src/export/jaeger-json.ts';
import { hierarchies } from '../../lab/cgroups.ts';
import { clusterDown, clusterPrerequisites, DEFAULT_TOPOLOGY } from '../../lab/cluster/cluster.ts';
import { loadTopology } from '../../lab/cluster/topology.ts';
import { defaultStateDir } from '../../lab/lab.ts';
import { isAlive } from '../../lab/procs.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

const ROOT = join(import.meta.dirname, '../..');
const ci = process.env.CI === 'true';
// another engineer's run of this file may hold 'sdm': STRATA_DEMO_TEST_PREFIX picks another
const PREFIX = process.env.STRATA_DEMO_TEST_PREFIX ?? 'sdm';
/** this engineer's OTLP port on the shared machine: the user's collector in the test */
const OTLP_PORT = 14418;

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces, BPF)';
  if (!existsSync(join(ROOT, 'build/Release/strata_native.node'))) return 'the native addon is not built (scripts/setup.sh)';
  const missing = clusterPrerequisites(loadTopology(DEFAULT_TOPOLOGY));
  return missing.length ? missing.join('; ') : undefined;
}
const missing = missingPrerequisite();
const skip = missing && !ci ? `skipped: ${missing}` : false;

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Nothing of the prefix is left: netns, links and nft tables in the root netns, cgroups, processes, state dir. */
function assertNothingLeft(prefix: string): void {
  const stateDir = defaultStateDir(prefix);
  assert.deepEqual(readdirSafe('/run/netns').filter((n) => n.startsWith(`${prefix}-`)), [], 'no netns of the prefix');
  const links = (JSON.parse(execFileSync('ip', ['-j', 'link'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.includes(prefix));
  assert.deepEqual(links, [], 'no link of the prefix in the root netns');
  assert.doesNotMatch(execFileSync('/usr/sbin/nft', ['list', 'tables'], { encoding: 'utf8' }), new RegExp(`${prefix}_`), 'no nft table of the prefix');
  for (const h of hierarchies().all) assert.equal(existsSync(join(h, `${prefix}.lab`)), false, `no cgroup ${prefix}.lab in ${h}`);
  const procs: string[] = [];
  for (const d of readdirSafe('/proc')) {
    if (!/^\d+$/.test(d) || !isAlive(Number(d))) continue;
    try {
      const cg = readFileSync(`/proc/${d}/cgroup`, 'utf8');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      // pods, OVS, the relay, the agents (their pods file is in the state dir)
      if (cg.includes(`/${prefix}.lab/`) || cmd.includes(`${stateDir}/`) || cmd.includes(`--prefix ${prefix} `)) procs.push(`${d} ${cmd.slice(0, 160)}`);
    } catch {
      // exited meanwhile
    }
  }
  assert.deepEqual(procs, [], 'no process of the prefix (pods, OVS, relay, agents, the demo)');
  assert.equal(existsSync(stateDir), false, 'state dir removed');
}

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `node agent/src/cli.ts demo ...` as a user runs it (npm run demo is the same command) */
function demo(args: string[], env: NodeJS.ProcessEnv = {}): Run {
  const child = spawn(process.execPath, [join(ROOT, 'agent/src/cli.ts'), 'demo', ...args], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, stdout: () => out, stderr: () => err, exited };
}

type JSpan = JaegerTraces['data'][number]['spans'][number];
type JTrace = JaegerTraces['data'][number];
const tag = (s: JSpan, k: string) => s.tags.find((t) => t.key === k)?.value;
const ptag = (t: JTrace, s: JSpan, k: string) => t.processes[s.processID]?.tags.find((x) => x.key === k)?.value;

describe('strata demo: the cluster demo end to end', { skip, timeout: 900_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-demo-test-'));
  const receiver = new OtlpReceiver();

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    // a previous crashed run of this prefix
    await clusterDown(PREFIX);
    receiver.port = OTLP_PORT;
    await receiver.start();
  });
  after(async () => {
    await clusterDown(PREFIX).catch(() => undefined);
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs to the end: complete uninstrumented traces over >= 2 nodes and >= 3 services, files that parse, the waterfalls, the user\'s collector, nothing left', async (t) => {
    const traces = join(dir, 'traces');
    const t0 = performance.now();
    const run = demo(['--prefix', PREFIX, '--traces-dir', traces], { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${OTLP_PORT}` });
    const { code } = await run.exited;
    const wallS = (performance.now() - t0) / 1000;
    t.diagnostic(`demo wall time ${wallS.toFixed(1)} s; phases:\n${run.stdout().split('\n').filter((l) => /^\[\s*[\d.]+ s\] (cluster: cluster|agents: (pods|\d)|requests|traces|export|teardown: done|done)/.test(l)).join('\n')}`);
    assert.equal(code, 0, `exit 0\n${run.stdout()}\n${run.stderr()}`);
    const out = run.stdout();
    // progress: one line per phase, with the elapsed time
    for (const phase of ['setup', 'collector', 'cluster', 'agents', 'requests', 'traces', 'export', 'teardown', 'done']) {
      assert.match(out, new RegExp(`^\\[\\s*\\d+\\.\\d s\\] ${phase}: `, 'm'), `a progress line for ${phase}`);
    }
    assert.match(out, /agents: 4 agents ready, one per node/);

    const jaeger = JSON.parse(readFileSync(join(traces, 'jaeger-traces.json'), 'utf8')) as JaegerTraces;
    const otlp = JSON.parse(readFileSync(join(traces, 'otlp-traces.json'), 'utf8')) as { resourceSpans: { resource: { attributes: { key: string }[] }; scopeSpans: { spans: { traceId: string; spanId: string }[] }[] }[] };
    const otlpSpans = otlp.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    assert.equal(otlpSpans.length, jaeger.data.reduce((n, x) => n + x.spans.length, 0), 'the OTLP and Jaeger files hold the same spans');
    assert.ok(otlpSpans.every((s) => /^[0-9a-f]{32}$/.test(s.traceId) && /^[0-9a-f]{16}$/.test(s.spanId)), 'OTLP JSON ids are hex');

    // the uninstrumented app (namespace hotrod, no trace header anywhere): one complete trace per request
    const isServer = (s: JSpan) => tag(s, 'span.kind') === 'server' && tag(s, 'strata.layer') !== undefined;
    const plain = jaeger.data.filter((x) => x.spans.some((s) => isServer(s) && ptag(x, s, 'k8s.namespace.name') === 'hotrod'));
    assert.ok(plain.length >= 2, `2 uninstrumented requests, ${plain.length} traces`);
    for (const x of plain) {
      const servers = x.spans.filter(isServer).map((s) => String(ptag(x, s, 'k8s.pod.name')));
      for (const pod of ['frontend', 'customer', 'driver']) assert.equal(servers.filter((p) => p === pod).length, 1, `${x.traceID}: one ${pod} SERVER span`);
      assert.ok(servers.filter((p) => p === 'route').length >= 1, `${x.traceID}: route SERVER spans`);
      assert.ok(x.spans.some((s) => isServer(s) && ptag(x, s, 'k8s.namespace.name') === 'ingress-nginx'), `${x.traceID}: the ingress SERVER span`);
      assert.ok(x.spans.every((s) => tag(s, 'strata.layer') !== undefined), 'uninstrumented: strata\'s spans only');
      const nodes = new Set(x.spans.map((s) => ptag(x, s, 'k8s.node.name')).filter(Boolean));
      const services = new Set(x.spans.filter((s) => tag(s, 'strata.layer') === 'app').map((s) => x.processes[s.processID]?.serviceName));
      assert.ok(nodes.size >= 2, `${x.traceID} spans ${[...nodes].join(', ')}`);
      assert.ok(services.size >= 3, `${x.traceID} crosses ${[...services].join(', ')}`);
      // each node's spans come from that node's agent: the exchange spans of >= 2 nodes in one trace
      const appNodes = new Set(x.spans.filter((s) => ['app', 'proxy'].includes(String(tag(s, 'strata.layer')))).map((s) => ptag(x, s, 'k8s.node.name')));
      assert.ok(appNodes.size >= 2, `${x.traceID}: exchange spans from ${[...appNodes].join(', ')}`);
      const ids = new Set(x.spans.map((s) => s.spanID));
      const roots = x.spans.filter((s) => !s.references.some((r) => ids.has(r.spanID)));
      assert.equal(roots.length, 1, `${x.traceID}: one tree (roots: ${roots.map((r) => r.operationName).join(', ')})`);
    }
    // the instrumented app: the client's trace id carries the SDK's spans and strata's
    const sdkServer = (x: JTrace, s: JSpan) => tag(s, 'strata.layer') === undefined && tag(s, 'span.kind') === 'server' && ptag(x, s, 'k8s.namespace.name') === 'hotrod-otel';
    const instrumented = jaeger.data.filter((x) => x.spans.some((s) => sdkServer(x, s)));
    assert.equal(instrumented.length, 2, 'the 2 instrumented requests, each in its own trace');
    for (const x of instrumented) {
      // the SDK's SERVER spans of frontend, customer, driver and the route calls, and strata's spans, in the client's trace
      assert.ok(x.spans.filter((s) => sdkServer(x, s)).length >= 4, `${x.traceID}: the SDK's SERVER spans`);
      assert.ok(x.spans.some((s) => tag(s, 'strata.layer') === 'proxy') && x.spans.some((s) => tag(s, 'strata.layer') === 'app'), `${x.traceID}: strata's spans beside the SDK's`);
      // one tree: every span's parent is in the trace but the client's own span at the top (README "strata's spans and the app's SDK spans")
      const ids = new Set(x.spans.map((s) => s.spanID));
      const outside = new Set(x.spans.flatMap((s) => s.references.filter((r) => r.refType === 'CHILD_OF' && !ids.has(r.spanID)).map((r) => r.spanID)));
      assert.equal(outside.size, 1, `${x.traceID}: one parent outside the trace, the client's span: ${[...outside].join(', ')}`);
      assert.ok(x.spans.every((s) => s.references.length > 0), `${x.traceID}: no span without a parent`);
    }

    // the waterfalls: one per mode, for a trace that is in the files, with the two total lines
    const printed = [...out.matchAll(/^trace ([0-9a-f]{32}): (uninstrumented|instrumented) .*, (\d+) spans, [\d.]+ ms$/gm)];
    assert.deepEqual(printed.map((m) => m[2]), ['uninstrumented', 'instrumented'], out);
    for (const m of printed) {
      const x = jaeger.data.find((d) => d.traceID === m[1]);
      assert.ok(x, `the printed trace ${m[1]} is in the Jaeger file`);
      assert.equal(x.spans.length, Number(m[3]));
    }
    assert.match(out, /^\s+0\.00\s+[\d.]+\s+node-1\s+proxy\s+\|█+\|\s+ingress-nginx: GET \/dispatch 200$/m, 'the waterfall\'s first row: the ingress on node-1');
    assert.equal([...out.matchAll(/^time by layer: .*app [\d.]+ ms \(\d+%\)/gm)].length, 2);
    assert.equal([...out.matchAll(/^time by node: +node-\d [\d.]+ ms/gm)].length, 2);

    // OTEL_EXPORTER_OTLP_ENDPOINT: the same spans reached the user's collector
    await waitFor(() => receiver.requests.flatMap((r) => flattenSpans(r.decoded)).length >= otlpSpans.length || undefined, 'the spans at OTEL_EXPORTER_OTLP_ENDPOINT', 10_000, 50);
    const forwarded = new Set(receiver.requests.flatMap((r) => flattenSpans(r.decoded)).map((r) => r.span.spanId));
    assert.ok(otlpSpans.every((s) => forwarded.has(s.spanId)), 'every span of the files also went to OTEL_EXPORTER_OTLP_ENDPOINT');

    assertNothingLeft(PREFIX);
  });

  // the pods starting (clusterUp stops and reaps), the cluster up (the agents starting), and the agents up (the requests going)
  const points = [
    ['while the pods start', /\] cluster: \d+ pods: namespaces/],
    ['once the cluster is up', /\] cluster: up: /],
    ['once the agents are ready', /\] agents: 4 agents ready/],
  ] as const;
  for (const [when, line] of points) {
    it(`SIGINT ${when}: everything removed (netns, links, cgroups, OVS, agents, pods), exit 130`, async () => {
      await sigint(line);
    });
  }

  async function sigint(line: RegExp): Promise<void> {
    const run = demo(['--prefix', PREFIX, '--traces-dir', join(dir, 'traces-int')]);
    let gone = false;
    void run.exited.then(() => (gone = true));
    // the demo's own progress says when
    await waitFor(() => (line.test(run.stdout()) || gone ? true : undefined), `the demo to print ${line}`, 300_000, 20);
    assert.equal(gone, false, `the demo ended before ${line}:\n${run.stdout()}\n${run.stderr()}`);
    assert.ok(readdirSafe('/run/netns').some((n) => n.startsWith(`${PREFIX}-`)), 'the cluster is there');
    run.child.kill('SIGINT');
    const { code } = await run.exited;
    assert.equal(code, 130, `${run.stdout()}\n${run.stderr()}`);
    assert.match(run.stdout(), /signal: SIGINT: stopping; removing everything the demo started/);
    assert.match(run.stdout(), new RegExp(`teardown: done: nothing of prefix ${PREFIX} left`));
    assertNothingLeft(PREFIX);
  }

  it('--single-node: the earlier one-node demo still runs, writes its traces and leaves nothing', async () => {
    const traces = join(dir, 'traces-single');
    const run = demo(['--single-node', '--prefix', PREFIX, '--traces-dir', traces]);
    const { code } = await run.exited;
    assert.equal(code, 0, `${run.stdout()}\n${run.stderr()}`);
    const jaeger = JSON.parse(readFileSync(join(traces, 'jaeger-traces.json'), 'utf8')) as JaegerTraces;
    // its five requests, the one with a traceparent under the client's trace id
    assert.ok(jaeger.data.length >= 5, `${jaeger.data.length} traces`);
    assert.ok(jaeger.data.some((x) => x.traceID === '4bf92f3577b34da6a3ce929d0e0e4736'));
    assert.match(run.stdout(), /^trace 4bf92f3577b34da6a3ce929d0e0e4736$/m);
    assert.match(run.stdout(), /lab torn down/);
    assertNothingLeft(PREFIX);
  });

  it('a failure mid-run (a pod dies once the cluster is up): the demo says what failed, removes everything, exits 1', async () => {
    const run = demo(['--prefix', PREFIX, '--traces-dir', join(dir, 'traces-fail')]);
    let gone = false;
    void run.exited.then(() => (gone = true));
    await waitFor(() => (/\] cluster: up: /.test(run.stdout()) || gone ? true : undefined), 'the demo to report the cluster up', 300_000, 20);
    assert.equal(gone, false, `the demo ended before the cluster was up:\n${run.stdout()}\n${run.stderr()}`);
    // the uninstrumented frontend goes away while the agents start: the first dispatch gets NGINX's 502
    const rec = JSON.parse(readFileSync(join(defaultStateDir(PREFIX), 'pids', 'hotrod.frontend.json'), 'utf8')) as { pid: number };
    process.kill(rec.pid, 'SIGKILL');
    const { code } = await run.exited;
    assert.equal(code, 1, `${run.stdout()}\n${run.stderr()}`);
    assert.match(run.stdout(), /failed: \[STRATA_ERR_DEMO\] dispatch to hotrod answered 502/);
    assert.match(run.stdout(), new RegExp(`teardown: done: nothing of prefix ${PREFIX} left`));
    assertNothingLeft(PREFIX);
  });
});
