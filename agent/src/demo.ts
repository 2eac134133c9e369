// `strata demo` (`npm run demo`): the cluster demo. Brings the 4-node cluster lab up (lab/cluster,
// lab/cluster.yaml), runs one agent per node (its node's pods file and netns, stitching with its
// peers over the signed channel), sends dispatch requests through the ingress to the HotROD-style
// app uninstrumented (no trace header anywhere) and instrumented (the OpenTelemetry SDK in the pods,
// a client sending a traceparent), collects every span at one OTLP receiver (demo/collector.ts),
// writes OTLP JSON + Jaeger JSON under ./traces, prints one trace per mode as a waterfall with where
// the time went by layer and by node, and tears everything down: also on SIGINT/SIGTERM or a failure.
// `strata demo --single-node` is the earlier one-node demo (demo/single-node.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hierarchies, inCgroup, labCgroupParent, makeCgroup } from '../../lab/cgroups.ts';
import { type Cluster, type ClusterNode, type ClusterPod, clientOf, clusterDown, clusterPrerequisites, clusterUp, DEFAULT_TOPOLOGY } from '../../lab/cluster/cluster.ts';
import { loadTopology, type TopologyPlan } from '../../lab/cluster/topology.ts';
import { checkPrefix, curlFromClient, DEFAULT_PREFIX, defaultStateDir } from '../../lab/lab.ts';
import { listLabNetns } from '../../lab/netns.ts';
import { recordProc, startTime } from '../../lab/procs.ts';
import { loadConfig, toExportConfig } from './config/index.ts';
import { defaultConfig } from './config/schema.ts';
import { DemoCollector, OTLP_TRACES_PATH } from './demo/collector.ts';
import { type DemoTrace, groupTraces, printWaterfall } from './demo/waterfall.ts';
import { EXIT_USAGE, STRATA_ERR_DEMO, STRATA_ERR_DEMO_INCOMPLETE, STRATA_ERR_USAGE, StrataError } from './errors.ts';
import { createExporters } from './export/factory.ts';
import { JAEGER_FILE, OTLP_FILE, TraceFileExporter } from './export/file-exporter.ts';
import { AGENT_NODE_FLAGS } from './runtime-flags.ts';

const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** what scripts/setup.sh builds: the native addon, with the BPF objects in it */
const BUILT = ['build/Release/strata_native.node'];
/** a held local trace waits this long for its caller's node (generous for two loaded cores) */
const HOLD_MS = 3000;
const AGENT_READY_MS = 90_000;
/** after the last request: how long the demo waits for every request's trace to be complete */
const COMPLETE_WAIT_MS = 30_000;

interface DemoOptions {
  prefix: string;
  dir: string;
  topology: string;
  requests: number;
  allSpans: boolean;
}

export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'traces-dir': { type: 'string', default: 'traces' },
      prefix: { type: 'string', default: DEFAULT_PREFIX },
      topology: { type: 'string', default: DEFAULT_TOPOLOGY },
      requests: { type: 'string', default: '2' },
      'all-spans': { type: 'boolean', default: false },
      'single-node': { type: 'boolean', default: false },
    },
  });
  const requests = Number(values.requests);
  if (!Number.isInteger(requests) || requests < 1 || requests > 100) throw new StrataError(STRATA_ERR_USAGE, `--requests ${values.requests}: want an integer 1..100`, EXIT_USAGE);
  try {
    checkPrefix(values.prefix);
  } catch (e) {
    throw new StrataError(STRATA_ERR_USAGE, `--prefix: ${(e as Error).message}`, EXIT_USAGE);
  }
  const dir = resolve(values['traces-dir']);
  if (values['single-node']) {
    const { runSingleNodeDemo } = await import('./demo/single-node.ts');
    return runSingleNodeDemo({ dir, prefix: values.prefix });
  }
  return new ClusterDemo({ prefix: values.prefix, dir, topology: resolve(values.topology), requests, allSpans: values['all-spans'] }).run();
}

interface NodeAgent {
  node: string;
  /** from its ready line */
  metricsPort?: number;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

/** an app of the topology the demo drives: one ingress host -> one namespace's frontend */
interface Target {
  namespace: string;
  host: string | undefined;
  mode: 'plain' | 'instrumented';
  runtime: string;
}

interface Sent {
  target: Target;
  traceId?: string;
  status: number;
  routes: number;
  nodes: string[];
}

class Interrupted extends Error {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
    this.signal = signal;
  }
}

class ClusterDemo {
  private readonly o: DemoOptions;
  private readonly started = performance.now();
  private readonly ctl = new AbortController();
  private signalled: NodeJS.Signals | undefined;
  private tearingDown = false;
  private readonly agents: NodeAgent[] = [];
  private collector: DemoCollector | undefined;
  private clusterStarted = false;
  private work = '';
  /** the collector's base URL */
  private receiver = '';

  constructor(o: DemoOptions) {
    this.o = o;
  }

  private out(line: string): void {
    process.stdout.write(`${line}\n`);
  }

  private elapsed(): string {
    return `${((performance.now() - this.started) / 1000).toFixed(1)} s`;
  }

  /** one progress line: [elapsed] phase: what */
  private progress(phase: string, what: string): void {
    this.out(`[${this.elapsed().padStart(7)}] ${phase}: ${what}`);
  }

  private checkAbort(): void {
    if (this.signalled) throw new Interrupted(this.signalled);
  }

  /** a promise that rejects with Interrupted as soon as a signal arrives */
  private abortable<T>(p: Promise<T>): Promise<T> {
    if (this.signalled) return Promise.reject(new Interrupted(this.signalled));
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(new Interrupted(this.signalled ?? 'SIGINT'));
      this.ctl.signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => this.ctl.signal.removeEventListener('abort', onAbort));
    });
  }

  private readonly onSignal = (sig: NodeJS.Signals) => {
    if (this.tearingDown || this.signalled) {
      this.progress('signal', `${sig}: finishing the teardown first`);
      return;
    }
    this.signalled = sig;
    this.progress('signal', `${sig}: stopping; removing everything the demo started`);
    this.ctl.abort();
  };

  async run(): Promise<number> {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    let code = 0;
    let result: { traces: DemoTrace[]; sent: Sent[] } | undefined;
    try {
      result = await this.demo();
    } catch (e) {
      if (e instanceof Interrupted || this.signalled) {
        code = (this.signalled ?? 'SIGINT') === 'SIGINT' ? 130 : 143;
      } else {
        const err = e as Error & { code?: string };
        this.progress('failed', `${err.code ? `[${err.code}] ` : ''}${err.message}`);
        code = 1;
      }
    }
    const clean = await this.teardown();
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    if (!clean && code === 0) code = 1;
    if (code !== 0 || !result) {
      this.progress('done', `exit ${code}${this.signalled ? ` (${this.signalled})` : ''}; ${clean ? 'everything removed' : 'the teardown left something (above)'}`);
      return code;
    }
    return this.report(result.traces, result.sent);
  }

  private preflight(): Target[] {
    if (process.getuid?.() !== 0) throw new StrataError(STRATA_ERR_DEMO, 'the demo needs root (network namespaces, cgroups, BPF): run it as root', 1);
    const missing = BUILT.filter((f) => !existsSync(join(ROOT, f)));
    if (missing.length) throw new StrataError(STRATA_ERR_DEMO, `not built: ${missing.join(', ')}: run bash scripts/setup.sh first`, 1);
    const plan = loadTopology(this.o.topology);
    const lacking = clusterPrerequisites(plan);
    if (lacking.length) throw new StrataError(STRATA_ERR_DEMO, `the cluster lab needs (scripts/setup.sh installs them): ${lacking.join('; ')}`, 1);
    // one ingress host per app namespace; the frontend's mode and runtime say what it shows
    const targets: Target[] = [];
    for (const r of plan.ingress.rules) {
      const [ns] = r.service.split('/');
      if (targets.some((t) => t.namespace === ns)) continue;
      const fe = plan.pods.find((p) => p.namespace === ns && p.app === 'frontend');
      if (fe && ns) targets.push({ namespace: ns, host: r.host, mode: fe.mode, runtime: fe.runtime });
    }
    if (!targets.some((t) => t.mode === 'plain')) throw new StrataError(STRATA_ERR_DEMO, `${this.o.topology}: no ingress rule reaches an uninstrumented (plain) frontend`, 1);
    return targets;
  }

  private async demo(): Promise<{ traces: DemoTrace[]; sent: Sent[] }> {
    const { o } = this;
    this.progress('setup', `checking root, the build (scripts/setup.sh) and the lab's programs; topology ${o.topology}`);
    const targets = this.preflight();
    this.work = mkdtempSync(join(tmpdir(), `strata-demo-${o.prefix}-`));

    // the exporters the agent would build from the configuration (OTEL_*, STRATA_EXPORT_*), plus the files
    // (OTLP only when the environment names an endpoint, as the agent's default would be localhost)
    const setting = (key: string, value: string) => ({ key, value, source: 'demo' });
    let config = loadConfig({ flags: [setting('export.files.dir', o.dir)] });
    if (config.export.otlp.endpoint === defaultConfig().export.otlp.endpoint) {
      config = loadConfig({ flags: [setting('export.files.dir', o.dir), setting('export.otlp.endpoint', 'none')] });
    }
    const exportConfig = { ...toExportConfig(config), files: undefined };
    const files = new TraceFileExporter({ dir: o.dir, writeDelayMillis: 500 });
    this.collector = new DemoCollector({ exporters: [files, ...createExporters(exportConfig)] });
    const port = await this.collector.start(0);
    const receiver = `http://127.0.0.1:${port}`;
    this.receiver = receiver;
    this.progress('collector', `OTLP receiver on ${receiver}${OTLP_TRACES_PATH} -> ${o.dir}${exportConfig.otlp ? ` and ${exportConfig.otlp.endpoint}` : ''}${exportConfig.jaeger ? ` and ${exportConfig.jaeger.endpoint}` : ''}`);

    const plan = loadTopology(o.topology);
    this.prepareAgents(plan, await Promise.all(plan.nodes.map(() => freePort())));
    this.progress('cluster', `bringing the cluster lab up (prefix ${o.prefix})`);
    this.clusterStarted = true;
    // not cut short on a signal: clusterUp stops at its next step and removes what it built before
    // it rejects, so that nothing it is still creating outlives the teardown
    const c = await clusterUp({
      prefix: o.prefix, topology: o.topology, otlpEndpoint: receiver, signal: this.ctl.signal,
      log: (line) => this.progress('cluster', line),
      onNodes: (nodes) => this.startAgents(nodes),
    });
    this.checkAbort();
    this.progress('cluster', `up: ${c.nodes.length} nodes (${c.nodes.map((n) => `${n.name} ${n.bridge.kind}`).join(', ')}), ${c.pods.length} pods`);

    if (!this.agentsReady) throw new StrataError(STRATA_ERR_DEMO, 'the cluster came up without its nodes step: no agent started', 1);
    await this.abortable(this.agentsReady);
    await this.handOver(c);
    this.progress('agents', `${this.agents.length} agents ready, one per node, stitching over 127.0.0.1`);

    const sent: Sent[] = [];
    for (const t of targets) {
      for (let i = 0; i < o.requests; i++) {
        this.checkAbort();
        this.checkAgents();
        sent.push(await this.abortable(this.dispatch(c, t, [101, 202, 303, 404][i % 4] as number)));
      }
      const mine = sent.filter((s) => s.target === t);
      this.progress('requests', `${t.namespace} (${t.mode === 'plain' ? 'uninstrumented, no trace header' : 'instrumented, client sends traceparent'}, ${t.runtime}): ` +
        `${mine.length} dispatches -> ${mine.map((s) => s.status).join(' ')}, across ${[...new Set(mine.flatMap((s) => s.nodes))].sort().join(', ')}`);
    }

    this.progress('traces', `waiting for ${sent.length} complete traces (every node's agent, stitched)`);
    const routes = new Map(sent.map((s) => [s.target.namespace, s.routes]));
    // instrumented: the SDK's SERVER spans too (frontend, customer, driver, each route call), which
    // come through the relay on the SDK's own schedule
    const done = (x: DemoTrace, t: Target) => x.namespace === t.namespace && x.complete &&
      (t.mode === 'plain' || (sent.some((s) => s.traceId === x.traceId) && x.sdkServers >= 3 + (routes.get(t.namespace) ?? 1)));
    const expectComplete = () => {
      const traces = groupTraces(this.collector?.spans() ?? [], c, routes);
      return targets.every((t) => traces.filter((x) => done(x, t)).length >= sent.filter((s) => s.target === t).length);
    };
    const deadline = Date.now() + COMPLETE_WAIT_MS;
    while (!expectComplete() && Date.now() < deadline) {
      this.checkAbort();
      this.checkAgents();
      await this.abortable(new Promise((r) => setTimeout(r, 100)));
    }
    this.progress('traces', `${this.collector.stats().spans} spans received${expectComplete() ? ', all complete' : `; gave up waiting after ${COMPLETE_WAIT_MS / 1000} s`}`);

    // SIGTERM: every agent flushes what it holds (held traces go out as timeouts) before exiting
    this.progress('agents', 'stopping (flush, detach)');
    await this.stopAgents();
    await this.collector.stop();
    this.collector = undefined;
    this.progress('export', `written ${join(o.dir, OTLP_FILE)} and ${JAEGER_FILE}`);
    return { traces: groupTraces(files.spans(), c, routes), sent };
  }

  /**
   * What the agents need before the cluster is there: a loopback port each for the peer channel,
   * the peers file (the plan's pod CIDRs), the shared secret, and a pods file of their own, empty
   * until handOver() (the agent watches it): so they can start while the pods do.
   */
  private prepareAgents(plan: TopologyPlan, ports: number[]): void {
    const peersFile = join(this.work, 'peers.json');
    // all agents of the lab run on this one machine: each its own loopback port
    writeFileSync(peersFile, JSON.stringify(plan.nodes.map((n, i) => ({ name: n.name, podCidr: n.podCidr, address: `http://127.0.0.1:${ports[i]}` }))));
    const secretFile = join(this.work, 'stitch-secret');
    writeFileSync(secretFile, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
    for (const n of plan.nodes) writeFileSync(this.podsFileOf(n.name), '[]\n');
    this.agentSettings = { peersFile, secretFile, ports: new Map(plan.nodes.map((n, i) => [n.name, ports[i] as number])) };
  }

  private agentSettings: { peersFile: string; secretFile: string; ports: Map<string, number> } | undefined;
  private agentsReady: Promise<void> | undefined;
  private readonly podsFileOf = (node: string) => join(this.work, `pods-${node}.json`);

  /** Starts one agent per node (called by clusterUp once the nodes exist): synchronous, so that a teardown finds every one. */
  private startAgents(nodes: ClusterNode[]): void {
    const { o } = this;
    const st = this.agentSettings;
    if (this.signalled || this.tearingDown || !st) return;
    // the agents' environment: the user's STRATA_* settings, but the export is the demo's (its collector forwards)
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_') && !k.startsWith('STRATA_EXPORT_')));
    this.progress('agents', `starting ${nodes.length} agents while the pods start (one per node: its pods, netns and uplink)`);
    const started = nodes.map((n) => {
      const args = [
        ...AGENT_NODE_FLAGS, CLI, 'agent', '--pods-file', this.podsFileOf(n.name), '--node-name', n.name, '--node-netns', n.netnsPath, '--iface', n.uplink,
        '--otlp-endpoint', `${this.receiver}${OTLP_TRACES_PATH}`, '--set', 'export.otlp.protocol=http/protobuf', '--metrics-port', '0', '--metrics-host', '127.0.0.1',
        '--set', `stitch.peersFile=${st.peersFile}`, '--set', `stitch.secretFile=${st.secretFile}`, '--set', `stitch.port=${st.ports.get(n.name)}`, '--set', 'stitch.host=127.0.0.1',
        '--set', `stitch.holdMs=${HOLD_MS}`, '--set', 'export.queue.delayMs=100',
      ];
      // in the lab's cgroups (<prefix>.lab/system/strata-agent-<node>): the lab's reaper removes it after a crash
      const cgroup = `${labCgroupParent(o.prefix)}/system/strata-agent-${n.name}`;
      makeCgroup(cgroup);
      const [cmd, cargs] = inCgroup(cgroup, process.execPath, args);
      const a = spawnAgent(n.name, cmd, cargs, env);
      this.agents.push(a);
      recordProc(defaultStateDir(o.prefix), { name: `strata-agent-${n.name}`, pid: a.child.pid as number, starttime: startTime(a.child.pid as number), netns: '' });
      return a;
    });
    this.agentsReady = Promise.all(started.map(async (a) => {
      const ready = await waitReady(a);
      a.metricsPort = Number(ready.metricsPort);
      this.progress('agents', `${a.node}: ready (pid ${a.child.pid}, probes ${Object.keys((ready.probes as Record<string, unknown>) ?? {}).join(' ')})`);
    })).then(() => undefined);
    // awaited after clusterUp; a failure meanwhile is reported there
    this.agentsReady.catch(() => undefined);
  }

  /** Gives each agent its node's pods (the file the cluster wrote) and waits until it traces them all. */
  private async handOver(c: Cluster): Promise<void> {
    for (const n of c.nodes) {
      const tmp = `${this.podsFileOf(n.name)}.tmp`;
      copyFileSync(n.podsFile, tmp);
      renameSync(tmp, this.podsFileOf(n.name));
    }
    const want = new Map(c.nodes.map((n) => [n.name, c.pods.filter((p) => p.node === n.name).length]));
    const traced = new Map<string, number>();
    const deadline = Date.now() + AGENT_READY_MS;
    for (;;) {
      this.checkAbort();
      this.checkAgents();
      for (const a of this.agents) {
        if (traced.get(a.node) === want.get(a.node)) continue;
        const m = await this.abortable(fetch(`http://127.0.0.1:${a.metricsPort}/metrics`).then((r) => r.text())).catch((e: unknown) => {
          if (e instanceof Interrupted) throw e;
          return '';
        });
        if (metric(m, 'strata_discovery_pods_pending') === 0) traced.set(a.node, metric(m, 'strata_discovery_pods_traced') ?? 0);
      }
      if (this.agents.every((a) => traced.get(a.node) === want.get(a.node))) break;
      if (Date.now() > deadline) throw new StrataError(STRATA_ERR_DEMO, `the agents did not take their pods within ${AGENT_READY_MS / 1000} s: ${[...want].map(([n, k]) => `${n} ${traced.get(n) ?? 0}/${k}`).join(', ')}`, 1);
      await this.abortable(new Promise((r) => setTimeout(r, 50)));
    }
    this.progress('agents', `pods handed over, traced: ${[...want].map(([n, k]) => `${n} ${k}`).join(', ')}`);
  }

  /** an agent that exited while the demo runs is a failure: its node's spans are missing */
  private checkAgents(): void {
    const dead = this.agents.find((a) => a.child.exitCode !== null || a.child.signalCode !== null);
    if (dead) throw new StrataError(STRATA_ERR_DEMO, `${dead.node}'s agent exited (${dead.child.exitCode ?? dead.child.signalCode}): ${dead.stderr().slice(-2000)}`, 1);
  }

  private async dispatch(c: Cluster, t: Target, customer: number): Promise<Sent> {
    const headers = t.host ? ['-H', `Host: ${t.host}`] : [];
    let traceId: string | undefined;
    if (t.mode === 'instrumented') {
      // as a browser with the OTel web SDK or an upstream service would send it
      traceId = randomBytes(16).toString('hex');
      headers.push('-H', `traceparent: 00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    }
    const r = await curlFromClient(clientOf(c), `${c.ingress.url}/dispatch?customer=${customer}`, headers);
    if (r.status !== 200) throw new StrataError(STRATA_ERR_DEMO, `dispatch to ${t.namespace} answered ${r.status}: ${r.body.slice(0, 300)}`, 1);
    const answer = JSON.parse(r.body) as { routes: number; served: { frontend: string; customer: string; driver: string; route: string[] } };
    const nodeOf = (key: string) => c.pods.find((p: ClusterPod) => `${p.namespace}/${p.name}` === key)?.node ?? '?';
    const nodes = [...new Set([answer.served.frontend, answer.served.customer, answer.served.driver, ...answer.served.route].map(nodeOf))];
    return { target: t, traceId, status: r.status, routes: answer.routes, nodes };
  }

  private async stopAgents(): Promise<void> {
    await Promise.all(this.agents.map(async (a) => {
      if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGTERM');
      const t = setTimeout(() => a.child.kill('SIGKILL'), 15_000);
      await a.exited;
      clearTimeout(t);
    }));
    this.agents.length = 0;
  }

  /** Everything the demo started, whatever happened: agents, collector, the cluster (by prefix), its temp dir. */
  private async teardown(): Promise<boolean> {
    this.tearingDown = true;
    this.progress('teardown', 'removing agents, pods, OVS, namespaces, cgroups');
    const errors: string[] = [];
    await this.stopAgents().catch((e: Error) => errors.push(`agents: ${e.message}`));
    if (this.collector) {
      await this.collector.stop().catch((e: Error) => errors.push(`collector: ${e.message}`));
      this.collector = undefined;
    }
    if (this.clusterStarted) {
      await clusterDown(this.o.prefix).catch((e: Error) => errors.push(e.message));
      // what the reaper must have removed, checked rather than claimed
      const netns = listLabNetns(this.o.prefix);
      if (netns.length) errors.push(`network namespaces left: ${netns.join(' ')}`);
      if (hierarchies().all.some((h) => existsSync(join(h, labCgroupParent(this.o.prefix))))) errors.push(`cgroup ${labCgroupParent(this.o.prefix)} left`);
    }
    if (this.work) rmSync(this.work, { recursive: true, force: true });
    if (errors.length) this.progress('teardown', `incomplete: ${errors.join('; ')} (node lab/cli.ts cluster down --prefix ${this.o.prefix} retries)`);
    else this.progress('teardown', this.clusterStarted ? `done: nothing of prefix ${this.o.prefix} left` : 'done: nothing had been started');
    return errors.length === 0;
  }

  private report(traces: DemoTrace[], sent: Sent[]): number {
    const { o } = this;
    const modes: ('plain' | 'instrumented')[] = ['plain', 'instrumented'];
    let failed = false;
    this.out('');
    for (const mode of modes) {
      const ts = [...new Set(sent.filter((s) => s.target.mode === mode).map((s) => s.target))];
      if (!ts.length) continue;
      // the first complete trace of the first app of this mode (the Node runtime first)
      const pick = ts.sort((a, b) => Number(b.runtime === 'node') - Number(a.runtime === 'node'))
        .flatMap((t) => traces.filter((x) => x.namespace === t.namespace && x.complete && (mode === 'plain' || sent.some((s) => s.traceId === x.traceId))))[0];
      for (const t of ts) {
        const n = sent.filter((s) => s.target === t).length;
        const done = traces.filter((x) => x.namespace === t.namespace && x.complete);
        this.out(`${t.namespace} (${mode === 'plain' ? 'uninstrumented' : 'instrumented'}, ${t.runtime}): ${done.length} of ${n} requests came out as one complete trace each`);
      }
      if (!pick) {
        failed = true;
        this.out(`no complete ${mode} trace: see the files, and the Limits in the README\n`);
        continue;
      }
      this.out('');
      printWaterfall(pick, (l) => this.out(l), { allSpans: o.allSpans, title: mode === 'plain' ? 'uninstrumented (no trace header; ids stitched between the agents)' : 'instrumented (the client\'s traceparent; the app\'s SDK spans and strata\'s in one trace)' });
      this.out('');
    }
    this.out(`${traces.length} traces written to ${join(o.dir, JAEGER_FILE)} (Jaeger UI: Search > Upload JSON) and ${OTLP_FILE} (OTLP JSON)`);
    this.progress('done', failed ? `[${STRATA_ERR_DEMO_INCOMPLETE}] a mode produced no complete trace` : 'ok');
    return failed ? 1 : 0;
  }
}

function spawnAgent(node: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): NodeAgent {
  // its own session: a Ctrl-C reaches the demo, which stops the agents in order
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-16 * 1024);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  child.on('error', () => {});
  return { node, child, exited, stderr: () => err };
}

/** resolves with the agent's ready line; rejects when it exits first or takes too long */
function waitReady(a: NodeAgent): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new StrataError(STRATA_ERR_DEMO, `${a.node}'s agent not ready after ${AGENT_READY_MS / 1000} s: ${a.stderr().slice(-2000)}`, 1)), AGENT_READY_MS);
    a.child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
    void a.exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new StrataError(STRATA_ERR_DEMO, `${a.node}'s agent exited (${code ?? signal}) before it was ready: ${a.stderr().slice(-2000)}`, 1));
    });
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const a = s.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** a gauge's value in the Prometheus text format (the first series), undefined when absent */
function metric(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}
