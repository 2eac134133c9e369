// The whole agent under load, A/B interleaved (issue 8): NGINX proxied requests/s, latency at a
// fixed rate, agent CPU per request and RSS (also with the exporter down), and TCP throughput
// across a veth + bridge with the agent's TC programs attached or not.
//
// The lab (lab/lab.ts: client netns -> bridge -> ingress NGINX pod -> app pod) comes up once. Each
// round runs the variants "no agent" and "agent" (or several agent configurations, --variant) in
// alternating order; the agent is the real CLI
// as a child process (all probes, correlator, OTLP exporter) started and stopped per round, its
// spans going to a counting OTLP/HTTP receiver in this process. Load comes from Debian's wrk
// (max rate), hey (fixed rate) and iperf3, pinned to their own CPU with taskset; NGINX, the app
// and the agent get the other CPUs.
// Usage: node bench/agent.ts [--rounds 5] [--load-s 4] [--connections 16] [--fixed-connections 8]
//   [--exporter-down-s 60] [--steady-s 20] [--rss-rate N] [--fixed-rate N] [--iperf-s 3] [--skip http,latency,exporter-down,iperf] [--no-write]
// Needs root, wrk, hey, iperf3 (scripts/setup.sh). Progress on stderr; tables on stdout; results
// in bench/results/<stamp>.json and .md.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ProbeSet } from '../agent/src/probes/probe-set.ts';
import { FAMILIES } from '../agent/src/probes/registry.ts';
import { AGENT_NODE_FLAGS } from '../agent/src/runtime-flags.ts';
import { inNetns, run, waitFor } from '../lab/exec.ts';
import { type Lab, labDown, labUp } from '../lab/lab.ts';
import { buildJs } from '../scripts/build-js.ts';
import { agentCommand, metricValue, spawnAgent } from '../test/helpers/agent-proc.ts';
import {
  type BpfProgCost,
  bpfDelta,
  fileStamp,
  goalMet,
  type HeyResult,
  mdTable,
  parseBpfPrograms,
  parseHey,
  parseIperf,
  parseWrk,
  statCpuTicks,
  statusRssBytes,
  type WrkResult,
} from './agent-report.ts';
import { fmtRatio, fmtSI, fmtSig, fmtSummary, posInt, ratio, roundOrder, summarize, type Summary, table } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const STAGES = ['kernel_ringbuf', 'kernel_read', 'js_queue', 'decoder', 'exporter'] as const;

const { values: argv } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    'load-s': { type: 'string', default: '4' },
    'agent-warm-s': { type: 'string', default: '0' },
    connections: { type: 'string', default: '16' },
    'fixed-connections': { type: 'string', default: '8' },
    'exporter-down-s': { type: 'string', default: '60' },
    'steady-s': { type: 'string', default: '20' },
    'rss-rate': { type: 'string', default: '' },
    'fixed-rate': { type: 'string', default: '' },
    'iperf-s': { type: 'string', default: '3' },
    skip: { type: 'string', default: '' },
    'no-write': { type: 'boolean', default: false },
    'agent-set': { type: 'string', multiple: true, default: [] },
    variant: { type: 'string', multiple: true, default: [] },
    help: { type: 'boolean', default: false },
  },
});
const USAGE = 'usage: node bench/agent.ts [--rounds 5] [--load-s 4] [--agent-warm-s 0] [--connections 16] [--fixed-connections 8] ' +
  '[--exporter-down-s 60] [--steady-s 20] [--rss-rate N] [--fixed-rate N] [--iperf-s 3] [--skip http,latency,exporter-down,iperf] [--agent-set key=value ...] [--variant name:key=value,key=value[,js][,nodeflags=--flag --flag] ...] [--no-write]\n';
if (argv.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const ROUNDS = posInt('rounds', argv.rounds);
const LOAD_S = posInt('load-s', argv['load-s']);
/**
 * wrk this long (small body, not measured) at the start of every variant of every round, after
 * its agent is ready: the agent's load-dependent state (shedding, observation windows) is then in
 * its steady state when the measured runs begin; "no agent" gets the same run
 */
const AGENT_WARM_S = Number(argv['agent-warm-s']);
if (!Number.isInteger(AGENT_WARM_S) || AGENT_WARM_S < 0) throw new Error(`--agent-warm-s must be a whole number >= 0 (got ${argv['agent-warm-s']})`);
const CONNS = posInt('connections', argv.connections);
const FIXED_CONNS = posInt('fixed-connections', argv['fixed-connections']);
const EXPORTER_DOWN_S = posInt('exporter-down-s', argv['exporter-down-s']);
const STEADY_S = posInt('steady-s', argv['steady-s']);
/** req/s of measure 6b; default: the latency measure's rate (half the no-agent maximum) */
const RSS_RATE = argv['rss-rate'] ? posInt('rss-rate', argv['rss-rate']) : undefined;
/** req/s of measure 2; default: half the no-agent calibration run's req/s */
const FIXED_RATE = argv['fixed-rate'] ? posInt('fixed-rate', argv['fixed-rate']) : undefined;
const IPERF_S = posInt('iperf-s', argv['iperf-s']);
const SKIP = new Set(argv.skip.split(',').filter(Boolean));
for (const s of SKIP) {
  if (!['http', 'latency', 'exporter-down', 'iperf'].includes(s)) throw new Error(`--skip: unknown part "${s}"`);
}
/**
 * Agent configurations compared with "no agent" and with each other in the same rounds
 * (`--variant name:key=value,...`, repeatable; `--agent-set` applies to all of them). Without
 * --variant: one, "agent", the defaults.
 */
interface AgentVariant {
  name: string;
  sets: string[];
  /** run the stripped JavaScript build (scripts/build-js.ts, dist/src/cli.js) instead of agent/src/cli.ts */
  js: boolean;
  /** the node/V8 flags the agent runs with (`nodeflags=...`); undefined: AGENT_NODE_FLAGS, the agent's own */
  nodeFlags?: string[];
}
const AGENT_VARIANTS: AgentVariant[] = (argv.variant as string[]).length === 0
  ? [{ name: 'agent', sets: [], js: false }]
  : (argv.variant as string[]).map((v) => parseVariant(v));
function parseVariant(v: string): AgentVariant {
  const m = /^([a-z0-9_-]+):(.*)$/.exec(v);
  if (!m || m[1] === 'none') throw new Error(`--variant ${v}: expected name:key=value,key=value (name of [a-z0-9_-], not "none")`);
  // "js" (no "="): this variant runs the agent from the stripped JavaScript build;
  // "nodeflags=<flags separated by spaces>" (may be empty): node runs the agent with these instead of AGENT_NODE_FLAGS
  const items = m[2].split(',').filter(Boolean);
  const flagItems = items.filter((kv) => kv.startsWith('nodeflags='));
  if (flagItems.length > 1) throw new Error(`--variant ${v}: nodeflags= given twice`);
  const sets = items.filter((kv) => kv !== 'js' && !kv.startsWith('nodeflags='));
  for (const kv of sets) if (!kv.includes('=')) throw new Error(`--variant ${v}: "${kv}" is not key=value (or "js", "nodeflags=...")`);
  const nodeFlags = flagItems[0]?.slice('nodeflags='.length).split(/\s+/).filter(Boolean);
  for (const f of nodeFlags ?? []) if (!f.startsWith('--')) throw new Error(`--variant ${v}: nodeflags: "${f}" is not a --flag`);
  return { name: m[1], sets, js: items.includes('js'), ...(nodeFlags ? { nodeFlags } : {}) };
}
if (new Set(AGENT_VARIANTS.map((v) => v.name)).size !== AGENT_VARIANTS.length) throw new Error('--variant: names must differ');
if (ROUNDS < 5) process.stderr.write(`warning: --rounds ${ROUNDS}: issue 8 asks for at least 5\n`);

// The load generator gets the last CPU; everything it loads (nginx, app, agent) the others.
const NCPU = os.availableParallelism();
const PINNED = NCPU >= 2;
const LOAD_CPU = String(NCPU - 1);
const SERVER_CPUS = NCPU > 2 ? `0-${NCPU - 2}` : '0';
const pinned = (cpus: string, cmd: string, args: string[]): [string, string[]] =>
  PINNED ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const t0 = performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

// ---- everything that must not outlive the bench ----

const liveChildren = new Set<ChildProcess>();
let liveProbes: ProbeSet | undefined;
let labPrefix = '';
let tcNamespaces: string[] = [];
let cleaning: Promise<void> | undefined;

function killChildrenAndProbes(): void {
  for (const c of liveChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  liveChildren.clear();
  liveProbes?.close();
  liveProbes = undefined;
}

function deleteNetnsSync(names: string[]): void {
  for (const n of names) {
    try {
      // a load generator still inside (iperf3 client): deleting the name would not stop it
      for (const pid of execFileSync('ip', ['netns', 'pids', n]).toString().split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // namespace or process already gone
    }
    try {
      execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    killChildrenAndProbes();
    deleteNetnsSync(tcNamespaces);
    tcNamespaces = [];
    if (labPrefix) await labDown(labPrefix).catch((e: Error) => log(`labDown: ${e.message}`));
    labPrefix = '';
  })();
  return cleaning;
}
process.on('exit', () => {
  // last resort (an uncaught throw): what can be done synchronously
  killChildrenAndProbes();
  deleteNetnsSync(tcNamespaces);
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping the agent and load, removing the lab and the TC namespaces`);
    void cleanup().finally(() => process.exit(130));
  });
}

/**
 * Tracing BPF programs loaded on the machine, counted while our agent is NOT running (so all of
 * them are someone else's: another agent, a test run). Their filters run on every syscall of
 * nginx and the app too, so they slow both variants: reported with the results. null without bpftool.
 */
const foreignChecks: (number | null)[] = [];
function countForeignTracing(): void {
  try {
    const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()) as { type: string }[];
    foreignChecks.push(progs.filter((p) => ['tracepoint', 'raw_tracepoint', 'tracing', 'kprobe'].includes(p.type)).length);
  } catch {
    foreignChecks.push(null);
  }
}

// ---- OTLP receiver: counts, never decodes (the bench must not compete with the agent) ----

class CountingReceiver {
  requests = 0;
  bytes = 0;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/traces`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      let n = 0;
      req.on('data', (b: Buffer) => (n += b.length));
      req.on('end', () => {
        this.requests++;
        this.bytes += n;
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Closes the port and every open connection: the agent's exports then fail. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    for (const c of this.sockets) c.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

// ---- the agent as a child process ----

interface Agent {
  child: ChildProcess;
  pid: number;
  metricsPort: number;
  stderr: () => string;
  exited: Promise<void>;
}

/** scripts/build-js.ts's output, built once when a variant asks for it */
let jsCli: string | undefined;
function agentCli(v: AgentVariant | undefined): string | undefined {
  if (!v?.js) return undefined;
  if (!jsCli) {
    buildJs(path.join(HERE, '..', 'dist'));
    jsCli = path.join(HERE, '..', 'dist', 'src', 'cli.js');
  }
  return jsCli;
}

async function startAgent(args: string[], timeoutMs = 30_000, v?: AgentVariant): Promise<Agent> {
  // agentCommand: [node, ...AGENT_NODE_FLAGS, cli, 'agent', ...args]; a variant may run other node flags
  const full = agentCommand([...args, ...(v?.sets ?? []).flatMap((kv) => ['--set', kv])], agentCli(v));
  const nodeArgs = v?.nodeFlags ? [...v.nodeFlags, ...full.slice(1 + AGENT_NODE_FLAGS.length)] : full.slice(1);
  const [cmd, cargs] = pinned(SERVER_CPUS, process.execPath, nodeArgs);
  const a = await spawnAgent([cmd, ...cargs], timeoutMs, 20_000);
  liveChildren.add(a.child);
  if (a.child.pid === undefined) throw new Error('agent has no pid');
  return { child: a.child, pid: a.child.pid, metricsPort: a.metricsPort, stderr: a.stderr, exited: a.exited.then(() => undefined) };
}

/** SIGTERM (flush, detach), SIGKILL if that takes longer than 20 s. */
async function stopAgent(a: Agent): Promise<void> {
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGTERM');
  const deadline = Date.now() + 20_000;
  const gone = () => a.child.exitCode !== null || a.child.signalCode !== null;
  while (!gone() && Date.now() < deadline) await Promise.race([a.exited, sleep(100)]);
  if (!gone()) {
    log('agent did not exit within 20 s of SIGTERM: SIGKILL');
    a.child.kill('SIGKILL');
    await a.exited;
  }
  liveChildren.delete(a.child);
}

interface Snapshot {
  cpuTicks: number;
  rssBytes: number;
  drops: Record<(typeof STAGES)[number], number>;
  exported: number;
  exportDropped: number;
  /** spans of whole traces the export queues shed on purpose (past half full) */
  exportShed: number;
  /** requests the kernel shed on purpose (load shedding), and the keep ratio at the snapshot */
  shedRequests: number;
  keepRatio: number;
  /** exchanges cut at an observation window's edge (request seen, response shed): not exported */
  cut: number;
  /** per BPF program: runs and kernel run time (ns) so far */
  bpf: Record<string, BpfProgCost>;
}

async function snapshot(a: Agent): Promise<Snapshot> {
  const text = await (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();
  const drops = Object.fromEntries(STAGES.map((s) => [s, metricValue(text, 'strata_drops_total', `stage="${s}"`)])) as Snapshot['drops'];
  return {
    cpuTicks: statCpuTicks(readFileSync(`/proc/${a.pid}/stat`, 'utf8')),
    rssBytes: statusRssBytes(readFileSync(`/proc/${a.pid}/status`, 'utf8')),
    drops,
    exported: metricValue(text, 'strata_export_spans_total', 'result="exported"'),
    exportDropped: metricValue(text, 'strata_export_spans_total', 'result="dropped"'),
    exportShed: metricValue(text, 'strata_export_spans_total', 'result="shed"'),
    shedRequests: metricValue(text, 'strata_kernel_shed_requests_total'),
    keepRatio: metricValue(text, 'strata_sampling_keep_ratio'),
    cut: metricValue(text, 'strata_correlator_cut_exchanges_total') || 0,
    bpf: parseBpfPrograms(text),
  };
}

/**
 * After the load: the agent still correlates (grace period) and exports (batch delay 500 ms).
 * Settled = spans exported + dropped unchanged over 5 polls 400 ms apart (2 s), at most 30 s.
 */
async function settle(a: Agent): Promise<Snapshot> {
  const deadline = Date.now() + 30_000;
  let last = await snapshot(a);
  let stable = 0;
  while (stable < 5 && Date.now() < deadline) {
    await sleep(400);
    const s = await snapshot(a);
    stable = s.exported + s.exportDropped + s.exportShed === last.exported + last.exportDropped + last.exportShed ? stable + 1 : 0;
    last = s;
  }
  return last;
}

// ---- load generators ----

function wrk(lab: Lab, url: string, seconds: number): Promise<WrkResult> {
  const [cmd, args] = pinned(LOAD_CPU, 'wrk', ['-t1', `-c${CONNS}`, `-d${seconds}s`, '--latency', url]);
  return inNetns(lab.clientNetns, cmd, args, { timeoutMs: (seconds + 30) * 1000 }).then(parseWrk);
}

/** hey at a fixed total rate: -q is per worker, so each of the `conns` workers gets rate/conns. */
function hey(lab: Lab, url: string, seconds: number, rate: number, conns = FIXED_CONNS): Promise<HeyResult> {
  const q = (rate / conns).toFixed(2);
  const [cmd, args] = pinned(LOAD_CPU, 'hey', ['-z', `${seconds}s`, '-c', String(conns), '-q', q, url]);
  return inNetns(lab.clientNetns, cmd, args, { timeoutMs: (seconds + 30) * 1000 }).then(parseHey);
}

/** Pins every thread of every process in the lab's pod namespaces to the server CPUs. */
async function pinLab(lab: Lab): Promise<void> {
  if (!PINNED) return;
  for (const ns of [lab.pods.ingress.netns, lab.pods.app.netns]) {
    const pids = (await run('ip', ['netns', 'pids', ns])).split(/\s+/).filter(Boolean);
    for (const pid of pids) await run('taskset', ['-a', '-cp', SERVER_CPUS, pid]);
  }
}

// ---- measures 1, 2, 6: HTTP through NGINX ----

/** 'none' or the name of an agent variant */
type Variant = string;
const BODIES = [
  { key: 'small', path: '/', label: 'small (~190 B JSON)' },
  { key: '1k', path: '/big/1024', label: '1 KiB' },
] as const;

interface HttpRun {
  round: number;
  variant: Variant;
  body: string;
  rps: number;
  requests: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  /** CPU (utime+stime) of NGINX and the app (every process in the two pods' netns) per request: what the BPF programs cost in their context */
  serverCpuNsPerReq: number;
  /** agent only */
  cpuNsPerReq?: number;
  cpuCoreShare?: number;
  rssBytes?: number;
  drops?: Snapshot['drops'];
  spansExported?: number;
  spansDropped?: number;
  /** spans of whole traces shed at the export queues (past half full) */
  spansShed?: number;
  /** requests shed whole by the kernel (load shedding), and the keep ratio when the load ended */
  shedRequests?: number;
  keepRatioAtEnd?: number;
  /** exchanges cut at observation windows' edges */
  cut?: number;
  /** per BPF program, its runs and kernel run time (ns) per request (agent only) */
  bpfPerReq?: Record<string, BpfProgCost>;
}

interface FixedRun {
  round: number;
  variant: Variant;
  rate: number;
  rps: number;
  responses: number;
  errors: number;
  p50Us: number;
  p99Us: number;
  drops?: Snapshot['drops'];
  spansDropped?: number;
}

const delta = (a: Snapshot, b: Snapshot): Snapshot['drops'] =>
  Object.fromEntries(STAGES.map((s) => [s, b.drops[s] - a.drops[s]])) as Snapshot['drops'];

/** The lab's server processes (NGINX master and workers, the app): all in the two pods' netns. */
let serverPids: number[] = [];
function serverTicks(): number {
  let t = 0;
  for (const pid of serverPids) {
    try {
      t += statCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      // a process that left: the measure is lower; NGINX and the app live for the whole bench
    }
  }
  return t;
}

async function httpRounds(lab: Lab, agentArgs: string[]): Promise<{ http: HttpRun[]; fixed: FixedRun[]; rate: number; calibration: WrkResult }> {
  log(`warm-up (wrk ${LOAD_S}s) and calibration (wrk ${LOAD_S}s), no agent, ${BODIES[0].path}`);
  await wrk(lab, lab.nginxUrl + BODIES[0].path, LOAD_S); // JIT of the app, nginx's upstream keep-alive pool
  const calibration = await wrk(lab, lab.nginxUrl + BODIES[0].path, LOAD_S);
  const rate = FIXED_RATE ?? Math.max(1, Math.round(calibration.rps / 2));
  log(`calibration: ${fmtSI(calibration.rps)} req/s; fixed rate for latency = ${rate} req/s`);
  const http: HttpRun[] = [];
  const fixed: FixedRun[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const variant of roundOrder<Variant>(['none', ...AGENT_VARIANTS.map((v) => v.name)], r)) {
      if (variant === 'none') countForeignTracing();
      const av = AGENT_VARIANTS.find((v) => v.name === variant);
      const agent = av ? await startAgent(agentArgs, undefined, av) : undefined;
      try {
        if (AGENT_WARM_S > 0) await wrk(lab, lab.nginxUrl + BODIES[0].path, AGENT_WARM_S);
        if (!SKIP.has('http')) {
          for (const b of BODIES) {
            const before = agent && (await snapshot(agent));
            const tLoad = performance.now();
            const server0 = serverTicks();
            const w = await wrk(lab, lab.nginxUrl + b.path, LOAD_S);
            const serverCpuS = (serverTicks() - server0) / CLK_TCK;
            const row: HttpRun = {
              round: r, variant, body: b.key, rps: w.rps, requests: w.requests, errors: w.errors,
              p50Us: w.latencyUs['50'] ?? Number.NaN, p99Us: w.latencyUs['99'] ?? Number.NaN,
              serverCpuNsPerReq: (serverCpuS * 1e9) / Math.max(1, w.requests),
            };
            if (agent && before) {
              const loadEnd = await snapshot(agent);
              const loadWallS = (performance.now() - tLoad) / 1000;
              const after = await settle(agent);
              const cpuS = (after.cpuTicks - before.cpuTicks) / CLK_TCK;
              row.cpuNsPerReq = (cpuS * 1e9) / w.requests;
              row.cpuCoreShare = (loadEnd.cpuTicks - before.cpuTicks) / CLK_TCK / loadWallS;
              row.rssBytes = after.rssBytes;
              row.drops = delta(before, after);
              row.spansExported = after.exported - before.exported;
              row.spansDropped = after.exportDropped - before.exportDropped;
              row.spansShed = after.exportShed - before.exportShed;
              row.shedRequests = after.shedRequests - before.shedRequests;
              row.keepRatioAtEnd = loadEnd.keepRatio;
              row.cut = after.cut - before.cut;
              // the kernel keeps run times only while statistics are on (metrics.bpfRunStats):
              // without them every program reads 0, which is no measurement
              const bpf = bpfDelta(before.bpf, after.bpf, w.requests);
              if (Object.values(bpf).some((c) => c.ns > 0)) row.bpfPerReq = bpf;
            }
            http.push(row);
            log(`round ${r + 1}/${ROUNDS} ${variant.padEnd(5)} ${b.key.padEnd(5)} ${fmtSI(w.rps)} req/s p99 ${fmtSig(row.p99Us)} us, server CPU ${fmtSig(row.serverCpuNsPerReq / 1000)} us/req` +
              (row.spansExported !== undefined ? `, ${row.spansExported} spans exported, ${row.spansDropped} dropped, ${row.spansShed} shed in whole traces, js_queue drops ${row.drops?.js_queue}, ${row.shedRequests} requests shed (keep ratio ${fmtSig(row.keepRatioAtEnd ?? 1)}), ${row.cut} exchanges cut by windows` : ''));
          }
        }
        if (!SKIP.has('latency')) {
          const before = agent && (await snapshot(agent));
          const h = await hey(lab, lab.nginxUrl + BODIES[0].path, LOAD_S, rate);
          const row: FixedRun = {
            round: r, variant, rate, rps: h.rps, responses: h.responses, errors: h.errors,
            p50Us: h.latencyUs['50'] ?? Number.NaN, p99Us: h.latencyUs['99'] ?? Number.NaN,
          };
          if (agent && before) {
            const after = await settle(agent);
            row.drops = delta(before, after);
            row.spansDropped = after.exportDropped - before.exportDropped;
          }
          fixed.push(row);
          log(`round ${r + 1}/${ROUNDS} ${variant.padEnd(5)} fixed ${rate}/s: p50 ${fmtSig(row.p50Us)} us p99 ${fmtSig(row.p99Us)} us`);
        }
      } finally {
        if (agent) await stopAgent(agent);
      }
    }
  }
  return { http, fixed, rate, calibration };
}

/** Where an agent's RSS is (/proc/<pid>/smaps by mapping) and what V8 reports, at one moment. */
interface MemoryParts {
  rssBytes: number;
  /** file-backed pages of the node binary (shared with other Node processes) */
  nodeBinaryBytes: number;
  /** `anon_inode:bpf-map` mappings: the ring buffer, its data pages mapped twice */
  bpfMapBytes: number;
  /** anonymous memory: V8 heap, malloc arenas ([heap] included), thread stacks */
  anonBytes: number;
  /** the rest: other files (the addon, libc, ...) */
  otherBytes: number;
  /** process.memoryUsage() of the agent, from its /metrics */
  heapTotalBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
}

async function memoryParts(a: Agent): Promise<MemoryParts> {
  const parts = { nodeBinaryBytes: 0, bpfMapBytes: 0, anonBytes: 0, otherBytes: 0 };
  let name = '';
  for (const line of readFileSync(`/proc/${a.pid}/smaps`, 'utf8').split('\n')) {
    const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      name = m[1];
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (!r) continue;
    const bytes = Number(r[1]) * 1024;
    if (name === process.execPath || name === realExecPath) parts.nodeBinaryBytes += bytes;
    else if (name.startsWith('anon_inode:bpf-map')) parts.bpfMapBytes += bytes;
    else if (name === '' || name.startsWith('[')) parts.anonBytes += bytes;
    else parts.otherBytes += bytes;
  }
  const text = await (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();
  return {
    rssBytes: statusRssBytes(readFileSync(`/proc/${a.pid}/status`, 'utf8')),
    ...parts,
    heapTotalBytes: metricValue(text, 'strata_process_nodejs_heap_size_total_bytes'),
    heapUsedBytes: metricValue(text, 'strata_process_nodejs_heap_size_used_bytes'),
    externalBytes: metricValue(text, 'strata_process_nodejs_external_memory_bytes'),
  };
}
const realExecPath = (() => {
  try {
    return realpathSync(process.execPath);
  } catch {
    return process.execPath;
  }
})();

/** One phase of measure 6b: hey at a fixed rate, the agent's RSS sampled every second. */
interface RssPhase {
  phase: 'exporter up' | 'exporter down';
  seconds: number;
  rate: number;
  requests: number;
  rssStartBytes: number;
  rssMaxBytes: number;
  rssEndBytes: number;
  /** (end - start) / duration */
  rssGrowthBytesPerS: number;
  rssSamples: number[];
  spansExported: number;
  spansDropped: number;
  drops: Snapshot['drops'];
  /** at the end of the phase */
  memory: MemoryParts;
}

async function rssPhase(lab: Lab, agent: Agent, phase: RssPhase['phase'], seconds: number, rate: number): Promise<RssPhase> {
  const before = await snapshot(agent);
  log(`${phase}: hey at ${rate} req/s for ${seconds} s, agent RSS sampled every second`);
  const samples: number[] = [];
  let done = false;
  const t = performance.now();
  const load = hey(lab, lab.nginxUrl + BODIES[0].path, seconds, rate).finally(() => (done = true));
  const deadline = Date.now() + (seconds + 30) * 1000;
  while (!done && Date.now() < deadline) {
    samples.push(statusRssBytes(readFileSync(`/proc/${agent.pid}/status`, 'utf8')));
    await Promise.race([load.catch(() => undefined), sleep(1000)]);
  }
  const h = await load;
  const after = await snapshot(agent);
  const memory = await memoryParts(agent);
  const wallS = (performance.now() - t) / 1000;
  const start = samples[0] ?? before.rssBytes;
  log(`${phase}: RSS ${fmtSig(start / 1048576)} -> ${fmtSig(after.rssBytes / 1048576)} MiB (max ${fmtSig(Math.max(...samples, after.rssBytes) / 1048576)}); ` +
    `heap ${fmtSig(memory.heapUsedBytes / 1048576)}/${fmtSig(memory.heapTotalBytes / 1048576)} MiB, external ${fmtSig(memory.externalBytes / 1048576)} MiB, ` +
    `anonymous ${fmtSig(memory.anonBytes / 1048576)} MiB`);
  return {
    phase, seconds, rate, requests: h.responses,
    rssStartBytes: start,
    rssMaxBytes: Math.max(...samples, after.rssBytes),
    rssEndBytes: after.rssBytes,
    rssGrowthBytesPerS: (after.rssBytes - start) / wallS,
    rssSamples: samples,
    spansExported: after.exported - before.exported,
    spansDropped: after.exportDropped - before.exportDropped,
    drops: delta(before, after),
    memory,
  };
}

/** measure 6b for one agent variant */
interface RssRun {
  variant: string;
  /** REST_S after the ready line, before any traffic */
  atRest: MemoryParts;
  phases: RssPhase[];
}

/** how long after its ready line the agent's RSS "at rest" is taken (no traffic yet) */
const REST_S = 5;

/**
 * Measure 6b, one agent: at rest, then the fixed rate for --steady-s with the receiver up (steady
 * RSS), then for --exporter-down-s with the receiver stopped (connection refused), then the receiver back.
 */
async function exporterDown(lab: Lab, agentArgs: string[], receiver: CountingReceiver, rate: number, v: AgentVariant): Promise<RssRun> {
  const agent = await startAgent(agentArgs, undefined, v);
  try {
    await sleep(REST_S * 1000); // a measurement interval: the agent idles (no traffic) for it
    const atRest = await memoryParts(agent);
    log(`${v.name}: at rest ${fmtSig(atRest.rssBytes / 1048576)} MiB (node binary ${fmtSig(atRest.nodeBinaryBytes / 1048576)}, ` +
      `bpf maps ${fmtSig(atRest.bpfMapBytes / 1048576)}, anonymous ${fmtSig(atRest.anonBytes / 1048576)})`);
    // some traffic first, so the RSS is the agent's working size, not its start size
    await wrk(lab, lab.nginxUrl + BODIES[0].path, Math.min(LOAD_S, 3));
    await settle(agent);
    const up = await rssPhase(lab, agent, 'exporter up', STEADY_S, rate);
    await receiver.stop();
    const down = await rssPhase(lab, agent, 'exporter down', EXPORTER_DOWN_S, rate);
    await receiver.start(); // same port: the agent's exports succeed again and shutdown flushes fast
    return { variant: v.name, atRest, phases: [up, down] };
  } finally {
    await stopAgent(agent);
  }
}

// ---- measure 8: iperf3 across veth + bridge, TC attached or not ----

interface IperfRun {
  round: number;
  variant: 'none' | 'tc';
  gbps: number;
  retransmits: number;
  pktSeen?: number;
  records?: number;
  lost?: number;
}

async function iperfRounds(): Promise<IperfRun[]> {
  const id = Math.random().toString(36).slice(2, 6).replace(/[^a-z0-9]/g, 'x');
  const nsA = `bn${id}a`;
  const nsB = `bn${id}b`;
  const nsN = `bn${id}n`;
  const br = `bn${id}br`;
  const veth = { a: `bn${id}va`, b: `bn${id}vb` };
  const net = `10.254.${Math.floor(Math.random() * 250) + 1}`;
  const ip = { a: `${net}.1`, b: `${net}.2` };
  tcNamespaces = [nsA, nsB, nsN];
  const runs: IperfRun[] = [];
  try {
    for (const ns of tcNamespaces) {
      await run('ip', ['netns', 'add', ns]);
      await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    await run('ip', ['-n', nsN, 'link', 'add', br, 'type', 'bridge']);
    await run('ip', ['-n', nsN, 'link', 'set', br, 'up']);
    for (const k of ['a', 'b'] as const) {
      const pod = k === 'a' ? nsA : nsB;
      await run('ip', ['-n', nsN, 'link', 'add', veth[k], 'type', 'veth', 'peer', 'name', 'eth0', 'netns', pod]);
      await run('ip', ['-n', nsN, 'link', 'set', veth[k], 'master', br, 'up']);
      await run('ip', ['-n', pod, 'addr', 'add', `${ip[k]}/24`, 'dev', 'eth0']);
      await run('ip', ['-n', pod, 'link', 'set', 'eth0', 'up']);
    }
    const [scmd, sargs] = pinned('0', 'iperf3', ['-s', '-B', ip.b, '-p', '5201']);
    const server = spawn('ip', ['netns', 'exec', nsB, scmd, ...sargs], { stdio: 'ignore' });
    liveChildren.add(server);
    await waitFor('iperf3 server listening', async () => (await run('ip', ['netns', 'exec', nsB, 'ss', '-Hltn', 'sport = :5201'])).includes('5201'), { timeoutMs: 10_000 });
    const family = FAMILIES.find((f) => f.name === 'veth_tc');
    if (!family) throw new Error('registry has no veth_tc family');
    for (let r = 0; r < ROUNDS; r++) {
      for (const variant of roundOrder<'none' | 'tc'>(['none', 'tc'], r)) {
        if (variant === 'none') countForeignTracing();
        let probes: ProbeSet | undefined;
        let records = 0;
        if (variant === 'tc') {
          probes = new ProbeSet({});
          liveProbes = probes;
          probes.load(family);
          probes.attachTc(family, veth.a, `/run/netns/${nsN}`);
          probes.attachTc(family, veth.b, `/run/netns/${nsN}`);
          // drain like the agent does (its pump options), records counted, not decoded
          probes.start((_b, n) => (records += n), { pollMs: 10 });
        }
        try {
          const [ccmd, cargs] = pinned(LOAD_CPU, 'iperf3', ['-c', ip.b, '-p', '5201', '-t', String(IPERF_S), '-J']);
          const res = parseIperf(await inNetns(nsA, ccmd, cargs, { timeoutMs: (IPERF_S + 30) * 1000 }));
          const row: IperfRun = { round: r, variant, gbps: res.bitsPerSecond / 1e9, retransmits: res.retransmits };
          if (probes) {
            const st = probes.stats();
            const ps = probes.pumpStats();
            row.pktSeen = st.pktSeen;
            row.records = records;
            row.lost = st.rbDrops + ps.droppedRecords;
          }
          runs.push(row);
          log(`iperf round ${r + 1}/${ROUNDS} ${variant.padEnd(4)} ${row.gbps.toFixed(2)} Gbit/s` +
            (row.pktSeen !== undefined ? ` (${row.pktSeen} packets seen by TC, ${row.records} events, ${row.lost} lost)` : ''));
        } finally {
          if (probes) {
            probes.close();
            liveProbes = undefined;
          }
        }
      }
    }
    server.kill('SIGKILL');
    liveChildren.delete(server);
  } finally {
    killChildrenAndProbes();
    deleteNetnsSync(tcNamespaces);
    tcNamespaces = [];
  }
  return runs;
}

// ---- report ----

function machine(): Record<string, string | number> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    kernel: os.release(),
    nproc: NCPU,
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    node: process.version,
    host: os.hostname(),
  };
}

const us = (x: number) => `${fmtSig(x)} us`;
const mib = (b: number) => `${fmtSig(b / 1048576)} MiB`;
const total = <T>(rows: readonly T[], pick: (r: T) => number | undefined): number => rows.reduce((t, r) => t + (pick(r) ?? 0), 0);

interface Report {
  text: string;
  md: string;
  summary: Record<string, unknown>;
}

function report(http: HttpRun[], fixed: FixedRun[], rate: number, down: RssRun[], iperf: IperfRun[], m: Record<string, string | number>): Report {
  const textParts: string[] = [];
  const mdParts: string[] = [];
  const summary: Record<string, unknown> = {};
  const both = (title: string, header: string[], rows: string[][]) => {
    textParts.push(`${title}\n${table(header, rows)}`);
    mdParts.push(`**${title}**\n\n${mdTable(header, rows)}`);
  };
  const s = (xs: number[]): Summary => summarize(xs);

  const multi = AGENT_VARIANTS.length > 1;
  /** summary keys and row labels: unchanged with one variant, suffixed with its name with several */
  const key = (k: string, v: string) => (multi ? `${k}_${v}` : k);
  const label = (l: string, v: string) => (multi ? `${l}, ${v}` : l);
  if (http.length) {
    const rows: string[][] = [];
    const serverRows: string[][] = [];
    for (const b of BODIES) for (const { name: vname } of AGENT_VARIANTS) {
      const none = http.filter((x) => x.body === b.key && x.variant === 'none');
      const ag = http.filter((x) => x.body === b.key && x.variant === vname);
      // per-round paired ratio, then its median (drift between rounds cancels)
      const paired = ag.map((a) => ratio(a.rps, none.find((n) => n.round === a.round)?.rps ?? Number.NaN));
      const r = summarize(paired);
      const jsq = total(ag, (x) => x.drops?.js_queue);
      const kern = total(ag, (x) => x.drops?.kernel_ringbuf);
      const spansOk = total(ag, (x) => x.spansExported);
      const spansLost = total(ag, (x) => x.spansDropped);
      const spansShed = total(ag, (x) => x.spansShed);
      const shed = total(ag, (x) => x.shedRequests);
      const requests = total(ag, (x) => x.requests);
      const keepEnd = s(ag.map((x) => x.keepRatioAtEnd ?? Number.NaN));
      summary[key(`shed_${b.key}`, vname)] = { requestsShed: shed, requests, keepRatioAtLoadEnd: keepEnd, exchangesCut: total(ag, (x) => x.cut) };
      summary[key(`rps_${b.key}`, vname)] = { none: s(none.map((x) => x.rps)), agent: s(ag.map((x) => x.rps)), ratio: r, goal: 0.97, met: goalMet(r.median, 0.97) };
      summary[key(`lost_${b.key}`, vname)] = { jsQueueEvents: jsq, kernelRingbufEvents: kern, spansExported: spansOk, spansDroppedAtExporter: spansLost, spansShedAtExporter: spansShed };
      // NGINX and the app: their own CPU per request, what the probes add in their syscalls (and softirqs taken on their time)
      const srvNone = s(none.map((x) => x.serverCpuNsPerReq));
      const srvAg = s(ag.map((x) => x.serverCpuNsPerReq));
      const srvAdded = summarize(ag.map((a) => a.serverCpuNsPerReq - (none.find((n) => n.round === a.round)?.serverCpuNsPerReq ?? Number.NaN)));
      const srvRatio = summarize(ag.map((a) => ratio(a.serverCpuNsPerReq, none.find((n) => n.round === a.round)?.serverCpuNsPerReq ?? Number.NaN)));
      summary[key(`server_cpu_${b.key}`, vname)] = { noneNsPerRequest: srvNone, agentNsPerRequest: srvAg, addedNs: srvAdded, ratio: srvRatio };
      serverRows.push([label(b.label, vname), fmtSummary(srvNone, (x) => us(x / 1000)), fmtSummary(srvAg, (x) => us(x / 1000)),
        fmtSummary(srvAdded, (x) => us(x / 1000)), fmtSummary(srvRatio, (x) => fmtRatio(x))]);
      rows.push([
        label(b.label, vname),
        fmtSummary(s(none.map((x) => x.rps)), fmtSI),
        fmtSummary(s(ag.map((x) => x.rps)), fmtSI),
        fmtSummary(r, (x) => fmtRatio(x)),
        goalMet(r.median, 0.97),
        `${jsq} / ${kern}`,
        `${fmtSI(spansOk)} / ${spansLost}`,
        `${fmtSI(shed)} of ${fmtSI(requests)} (${fmtSig((100 * shed) / Math.max(1, requests))} %)`,
        fmtSummary(keepEnd, (x) => fmtSig(x)),
      ]);
    }
    both(
      `1. NGINX proxied requests/s, keep-alive, wrk -t1 -c${CONNS} ${LOAD_S}s (loadgen on CPU ${PINNED ? LOAD_CPU : 'any'}), median (min..max) over ${ROUNDS} rounds`,
      ['response body', 'no agent req/s', 'agent req/s', 'ratio (paired)', 'goal >= 0.97', 'events lost js_queue / ringbuf', 'spans exported / dropped',
        'requests shed whole (load shedding)', 'keep ratio at load end'],
      rows,
    );
    both(
      '1b. CPU of NGINX and the app per proxied request (utime+stime of every process in the two pods, during wrk), no agent vs agent',
      ['response body', 'no agent', 'agent', 'added (paired)', 'ratio (paired)'],
      serverRows,
    );
    // 1c: where the kernel side of 1b goes, program by program (bpf_prog_info run time: the
    // programs' own instructions and helpers, not the tracepoint/TC dispatch around them)
    const bpfRows: string[][] = [];
    for (const b of BODIES) for (const { name: vname } of AGENT_VARIANTS) {
      const ag = http.filter((x) => x.body === b.key && x.variant === vname && x.bpfPerReq);
      if (!ag.length) continue;
      const progs = [...new Set(ag.flatMap((x) => Object.keys(x.bpfPerReq ?? {})))];
      const nsOf = (x: HttpRun, p: string) => x.bpfPerReq?.[p]?.ns ?? 0;
      const per = progs.map((p) => ({ p, ns: s(ag.map((x) => nsOf(x, p))), runs: s(ag.map((x) => x.bpfPerReq?.[p]?.runs ?? 0)) }))
        .sort((x, y) => y.ns.median - x.ns.median);
      const totalNs = s(ag.map((x) => progs.reduce((t, p) => t + nsOf(x, p), 0)));
      summary[key(`bpf_${b.key}`, vname)] = { totalNsPerRequest: totalNs, programs: Object.fromEntries(per.map((x) => [x.p, { nsPerRequest: x.ns, runsPerRequest: x.runs }])) };
      bpfRows.push([label(b.label, vname), 'all programs', fmtSummary(totalNs, (x) => us(x / 1000)), '']);
      for (const x of per.slice(0, 8)) bpfRows.push(['', x.p, fmtSummary(x.ns, (v) => us(v / 1000)), fmtSig(x.runs.median)]);
    }
    if (bpfRows.length) {
      both(
        '1c. BPF run time per proxied request by program (kernel bpf_prog_info, the 8 dearest), agent variants',
        ['response body', 'program', 'BPF time/request', 'runs/request'],
        bpfRows,
      );
    } else {
      const note = '1c. BPF run time per proxied request: not measured (the kernel times BPF runs only with statistics on: add a variant such as `--variant stats:metrics.bpfRunStats=true`)';
      textParts.push(note);
      mdParts.push(`**${note}**`);
    }
    const cpuRows: string[][] = [];
    for (const b of BODIES) for (const { name: vname } of AGENT_VARIANTS) {
      const ag = http.filter((x) => x.body === b.key && x.variant === vname);
      const cpu = s(ag.map((x) => x.cpuNsPerReq ?? Number.NaN));
      const share = s(ag.map((x) => x.cpuCoreShare ?? Number.NaN));
      const rss = s(ag.map((x) => x.rssBytes ?? Number.NaN));
      summary[key(`cpu_${b.key}`, vname)] = { cpuNsPerRequest: cpu, cpuCoreShareDuringLoad: share, rssBytesAfterLoad: rss };
      cpuRows.push([label(b.label, vname), fmtSummary(s(ag.map((x) => x.rps)), fmtSI), fmtSummary(cpu, (x) => us(x / 1000)), fmtSummary(share, (x) => `${fmtSig(x * 100)} %`), fmtSummary(rss, mib)]);
    }
    both(
      '6a. Agent CPU per proxied request at the highest rate (utime+stime from load start until spans settled) and RSS after the load',
      ['response body', 'agent req/s', 'agent CPU/request', 'agent CPU during load (1 core = 100 %)', 'agent RSS'],
      cpuRows,
    );
  }

  if (fixed.length) for (const { name: vname } of AGENT_VARIANTS) {
    const none = fixed.filter((x) => x.variant === 'none');
    const ag = fixed.filter((x) => x.variant === vname);
    const paired = (k: 'p50Us' | 'p99Us') => summarize(ag.map((a) => a[k] - (none.find((n) => n.round === a.round)?.[k] ?? Number.NaN)));
    const rows = (['p50Us', 'p99Us'] as const).map((k) => [
      k === 'p50Us' ? 'p50' : 'p99',
      fmtSummary(s(none.map((x) => x[k])), us),
      fmtSummary(s(ag.map((x) => x[k])), us),
      fmtSummary(paired(k), us),
      fmtRatio(ratio(median(ag.map((x) => x[k])), median(none.map((x) => x[k])))),
    ]);
    rows.push(['achieved req/s', fmtSummary(s(none.map((x) => x.rps)), fmtSI), fmtSummary(s(ag.map((x) => x.rps)), fmtSI), '', '']);
    summary[key('fixedRate', vname)] = {
      rate, tool: `hey -c ${FIXED_CONNS} -q ${(rate / FIXED_CONNS).toFixed(2)} (per worker) -z ${LOAD_S}s`,
      p50: { none: s(none.map((x) => x.p50Us)), agent: s(ag.map((x) => x.p50Us)), addedUs: paired('p50Us') },
      p99: { none: s(none.map((x) => x.p99Us)), agent: s(ag.map((x) => x.p99Us)), addedUs: paired('p99Us') },
      jsQueueDrops: total(ag, (x) => x.drops?.js_queue),
      spansDropped: total(ag, (x) => x.spansDropped),
    };
    both(
      `2. ${multi ? `${vname}: ` : ''}Latency at a fixed ${rate} req/s (${FIXED_RATE ? '--fixed-rate' : 'half the no-agent maximum'}), hey -c ${FIXED_CONNS} -q ${(rate / FIXED_CONNS).toFixed(1)} per worker, ${LOAD_S}s, small body`,
      ['latency', 'no agent', 'agent', 'added (paired)', 'ratio of medians'],
      rows,
    );
  }

  if (down.length) {
    summary.rss = down.map((d) => ({ ...d, phases: d.phases.map((x) => ({ ...x, rssSamples: undefined })) }));
    const p0 = down[0].phases;
    both(
      `6b. Agent RSS at rest (${REST_S} s after ready, no traffic), under hey at ${p0[0]?.rate} req/s: ${p0[0]?.seconds} s with the receiver up, then ${p0[1]?.seconds ?? 0} s with it stopped (one agent per variant, one after the other)`,
      ['variant', 'RSS at rest', 'exporter up: end (max)', 'exporter down: end (max)', 'growth down', 'spans exported up', 'spans dropped at exporter down', 'events lost js_queue / ringbuf'],
      down.map((d) => {
        const [up, dn] = d.phases;
        const lost = (k: 'js_queue' | 'kernel_ringbuf') => d.phases.reduce((t, x) => t + x.drops[k], 0);
        return [d.variant, mib(d.atRest.rssBytes), up ? `${mib(up.rssEndBytes)} (${mib(up.rssMaxBytes)})` : '', dn ? `${mib(dn.rssEndBytes)} (${mib(dn.rssMaxBytes)})` : '',
          dn ? `${fmtSig((dn.rssGrowthBytesPerS * 60) / 1048576)} MiB/min` : '', String(up?.spansExported ?? ''), String(dn?.spansDropped ?? ''),
          `${lost('js_queue')} / ${lost('kernel_ringbuf')}`];
      }),
    );
    both(
      '6b. Where the RSS is (/proc/<pid>/smaps by mapping; V8 heap from the agent\'s /metrics), MiB',
      ['variant', 'moment', 'RSS', 'node binary', 'bpf maps (ring buffer x2)', 'anonymous', 'other files', 'V8 heap used / total', 'external'],
      down.flatMap((d) => [['at rest', d.atRest] as const, ...d.phases.map((x) => [`${x.phase}, end`, x.memory] as const)].map(([when, mp]) => [
        d.variant, when, fmtSig(mp.rssBytes / 1048576), fmtSig(mp.nodeBinaryBytes / 1048576), fmtSig(mp.bpfMapBytes / 1048576), fmtSig(mp.anonBytes / 1048576),
        fmtSig(mp.otherBytes / 1048576), `${fmtSig(mp.heapUsedBytes / 1048576)} / ${fmtSig(mp.heapTotalBytes / 1048576)}`, fmtSig(mp.externalBytes / 1048576),
      ])),
    );
  }

  if (iperf.length) {
    const none = iperf.filter((x) => x.variant === 'none');
    const tc = iperf.filter((x) => x.variant === 'tc');
    const paired = summarize(tc.map((t) => ratio(t.gbps, none.find((n) => n.round === t.round)?.gbps ?? Number.NaN)));
    summary.iperf = {
      none: s(none.map((x) => x.gbps)), tc: s(tc.map((x) => x.gbps)), ratio: paired, goal: 0.97, met: goalMet(paired.median, 0.97),
      tcPacketsSeen: s(tc.map((x) => x.pktSeen ?? Number.NaN)), events: s(tc.map((x) => x.records ?? Number.NaN)), lost: total(tc, (x) => x.lost),
    };
    both(
      `8. TCP throughput netns -> veth -> bridge -> veth -> netns, iperf3 -t ${IPERF_S} (1 stream), TC ingress+egress on both host veths or not, Gbit/s`,
      ['variant', 'Gbit/s', 'retransmits', 'packets seen by TC', 'events to userspace', 'ratio (paired)', 'goal >= 0.97'],
      [
        ['no TC', fmtSummary(s(none.map((x) => x.gbps))), fmtSummary(s(none.map((x) => x.retransmits))), '', '', '', ''],
        ['TC attached', fmtSummary(s(tc.map((x) => x.gbps))), fmtSummary(s(tc.map((x) => x.retransmits))),
          fmtSummary(s(tc.map((x) => x.pktSeen ?? Number.NaN)), fmtSI), fmtSummary(s(tc.map((x) => x.records ?? Number.NaN)), fmtSI),
          fmtSummary(paired, (x) => fmtRatio(x)), goalMet(paired.median, 0.97)],
      ],
    );
  }

  const checked = foreignChecks.filter((x): x is number => x !== null);
  const busy = checked.filter((x) => x > 0);
  summary.foreignTracing = { checks: foreignChecks.length, withOtherTracers: busy.length, maxPrograms: Math.max(0, ...checked) };
  const foreignLine = foreignChecks.length === 0 ? '' : checked.length === 0
    ? 'bpftool missing: could not check for other tracers.'
    : busy.length === 0
      ? `No other tracing BPF programs were loaded at any of the ${checked.length} checks (before each no-agent run).`
      : `Other processes had tracing BPF programs loaded (up to ${Math.max(...busy)}) at ${busy.length} of ${checked.length} checks ` +
        '(before each no-agent run): another agent or test on this machine; both variants paid for them.';
  const machineLine = `Machine: kernel ${m.kernel}, ${m.nproc} CPUs (${m.cpu}), Node ${m.node}; ` +
    (PINNED ? `load generator pinned to CPU ${LOAD_CPU}, nginx/app/agent to CPU ${SERVER_CPUS}` : 'one CPU: nothing pinned');
  return {
    text: `${machineLine}\n${foreignLine}\n\n${textParts.join('\n\n')}\n`,
    md: `${machineLine}\n${foreignLine}\n\n${mdParts.join('\n\n')}\n`,
    summary,
  };
}

function median(xs: number[]): number {
  return summarize(xs).median;
}

// ---- main ----

async function main(): Promise<void> {
  const started = new Date();
  for (const tool of ['wrk', 'hey', 'iperf3', 'taskset', 'ip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} not found: run scripts/setup.sh (installs wrk, hey, iperf3)`);
    }
  }
  const m = machine();
  log(`machine: ${JSON.stringify(m)}`);
  let http: HttpRun[] = [];
  let fixed: FixedRun[] = [];
  let rate = Number.NaN;
  let calibration: WrkResult | undefined;
  const down: RssRun[] = [];
  const needLab = !(SKIP.has('http') && SKIP.has('latency') && SKIP.has('exporter-down'));
  if (needLab) {
    const receiver = new CountingReceiver();
    await receiver.start();
    labPrefix = `bl${Math.random().toString(36).slice(2, 6).replace(/[^a-z0-9]/g, 'x')}`;
    log(`lab ${labPrefix} up`);
    const lab = await labUp({ prefix: labPrefix });
    await pinLab(lab);
    serverPids = [];
    for (const ns of [lab.pods.ingress.netns, lab.pods.app.netns]) {
      serverPids.push(...(await run('ip', ['netns', 'pids', ns])).split(/\s+/).filter(Boolean).map(Number));
    }
    const agentArgs = ['--pods-file', lab.podsFile, '--node-name', lab.nodeName, '--node-netns', `/run/netns/${lab.nodeNetns}`,
      '--iface', lab.clientVeth, '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1',
      ...(argv['agent-set'] as string[]).flatMap((kv) => ['--set', kv])];
    try {
      if (!SKIP.has('http') || !SKIP.has('latency')) ({ http, fixed, rate, calibration } = await httpRounds(lab, agentArgs));
      if (!SKIP.has('exporter-down')) {
        if (!Number.isFinite(rate)) rate = Math.max(1, Math.round((await wrk(lab, lab.nginxUrl + BODIES[0].path, LOAD_S)).rps / 2));
        // every variant, one after the other: a fresh agent each
        for (const v of AGENT_VARIANTS) down.push(await exporterDown(lab, agentArgs, receiver, RSS_RATE ?? rate, v));
      }
    } finally {
      await receiver.stop();
      log(`lab ${labPrefix} down`);
      await labDown(labPrefix);
      labPrefix = '';
    }
  }
  const iperf = SKIP.has('iperf') ? [] : await iperfRounds();

  const rep = report(http, fixed, rate, down, iperf, m);
  process.stdout.write(`\n${rep.text}`);
  const stamp = fileStamp(started);
  const result = {
    date: started.toISOString(),
    durationS: (performance.now() - t0) / 1000,
    machine: m,
    settings: { variants: AGENT_VARIANTS, rounds: ROUNDS, loadS: LOAD_S, connections: CONNS, fixedConnections: FIXED_CONNS, exporterDownS: EXPORTER_DOWN_S, steadyS: STEADY_S, rssRate: RSS_RATE ?? rate, iperfS: IPERF_S, skip: [...SKIP], pinned: PINNED, loadCpu: LOAD_CPU, serverCpus: SERVER_CPUS },
    calibration,
    summary: rep.summary,
    raw: { http, fixed, rss: down, iperf },
  };
  if (!argv['no-write']) {
    const dir = path.join(HERE, 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, `${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(path.join(dir, `${stamp}.md`), `# strata whole-agent bench, ${started.toISOString()}\n\n` +
      `\`${['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ')}\`\n\n${rep.md}`);
    log(`wrote bench/results/${stamp}.json and .md`);
  }
  process.stdout.write(`${JSON.stringify({ summary: rep.summary })}\n`);
}

main().then(
  () => cleanup(),
  async (e: unknown) => {
    log(`failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    await cleanup();
    process.exitCode = 1;
  },
);
