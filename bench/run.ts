// Strata benchmarks on the real kernel: (1) kernel->JS event throughput, batched vs per-event
// wakeups; (2) the ns a traced socket syscall costs, traced vs filtered out vs no probes.
// Variants alternate within each round (A B, then B A) so machine drift hits them alike; figures
// are median (min..max) over the rounds. The load runs in small C programs (bench/*.c, built with
// gcc into a temp dir) inside a private netns, so the probes see only the bench's own traffic.
// Usage: node bench/run.ts [--rounds 5] [--load-ms 1500] [--calls 300000] [--budget-s 170] [--syscall-attach tracepoint|raw_tp]
// Needs root. Progress goes to stderr; the tables and, last, one JSON line go to stdout.
import { type ChildProcess, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Decoder } from '../agent/src/events/decode.ts';
import { runLoad as runLoadProgram } from './load-runner.ts';
import { loadNative, type ProgStat } from '../agent/src/probes/native.ts';
import { ProbeSet } from '../agent/src/probes/probe-set.ts';
import type { ProbeSettings } from '../agent/src/probes/registry.ts';
import {
  fmtPct,
  fmtRatio,
  fmtSI,
  fmtSummary,
  type ProgDelta,
  posInt,
  progDeltas,
  ratio,
  roundOrder,
  type Summary,
  summarize,
  table,
} from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_WAKEUP_BYTES = 256 * 1024;

const { values: argv } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    'load-ms': { type: 'string', default: '1500' },
    calls: { type: 'string', default: '300000' },
    'budget-s': { type: 'string', default: '170' },
    'syscall-attach': { type: 'string', default: 'tracepoint' },
    'loss-rates': { type: 'string', default: '20000,60000,120000,0' },
    'loss-rings': { type: 'string', default: '' },
    help: { type: 'boolean', default: false },
  },
});
if (argv.help) {
  process.stdout.write('usage: node bench/run.ts [--rounds 5] [--load-ms 1500] [--calls 300000] [--budget-s 170] [--syscall-attach tracepoint|raw_tp] [--loss-rates 20000,60000,120000,0] [--loss-rings 4194304,1048576]\n');
  process.exit(0);
}
const ROUNDS = posInt('rounds', argv.rounds);
const LOAD_MS = posInt('load-ms', argv['load-ms']);
// sysloop times whole chunks of 10000 calls
const CALLS = Math.floor(posInt('calls', argv.calls) / 10000) * 10000;
if (CALLS === 0) throw new Error('--calls must be at least 10000');
const BUDGET_MS = posInt('budget-s', argv['budget-s']) * 1000;
/** 3. loss accounting: loadgen paced at these writes/s (0 = as fast as it goes), one run each; then unpaced into LOSS_RING */
const LOSS_RING = 64 * 1024;
const LOSS_RATES = argv['loss-rates'].split(',').filter(Boolean).map((x) => {
  const n = Number(x);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--loss-rates: ${x} is not a rate (writes/s, 0 = unpaced)`);
  return n;
});
/**
 * 3. loss accounting, more: loadgen unpaced into a ring buffer of each of these sizes (bytes, a
 * power of two of at least 512 KiB), the agent's wakeup threshold: what a smaller probes.ringBufferBytes costs
 */
const LOSS_RINGS = argv['loss-rings'].split(',').filter(Boolean).map((x) => {
  const n = Number(x);
  if (!Number.isSafeInteger(n) || n < 512 * 1024 || (n & (n - 1)) !== 0) throw new Error(`--loss-rings: ${x} is not a power of two >= 524288`);
  return n;
});
/** the socket probes' variant (registry: sock_syscalls); raw_tp runs for every syscall of every task */
const SYSCALL_ATTACH = argv['syscall-attach'] === 'raw_tp' ? 'raw_tp' : 'tracepoint';
// sysloop writes CALLS/10 warm-up calls first; the BPF run counters see those too
const SYSLOOP_WRITES = CALLS + Math.floor(CALLS / 10);

const t0Bench = performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - t0Bench) / 1000).toFixed(1)}s] ${msg}\n`);

// ---- everything that must not outlive the bench ----

const liveChildren = new Set<ChildProcess>();
/** a load program (bench/load-runner.ts), killed with the others on the way out */
const runLoad = <T>(bin: string, args: string[], onReady: (netnsIno: number) => void): Promise<T> => runLoadProgram<T>(bin, args, onReady, liveChildren);
const liveProbes = new Set<ProbeSet>();
let tmpDir = '';

function cleanup(): void {
  for (const c of liveChildren) c.kill('SIGKILL');
  liveChildren.clear();
  for (const p of liveProbes) p.close();
  liveProbes.clear();
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = '';
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig}: killing load programs, detaching probes`);
    cleanup();
    process.exit(130);
  });
}

function withProbes<T>(opts: ProbeSettings, body: (p: ProbeSet) => Promise<T>): Promise<T> {
  const probes = new ProbeSet({ syscallAttach: SYSCALL_ATTACH, ...opts });
  liveProbes.add(probes);
  return body(probes).finally(() => {
    probes.close();
    liveProbes.delete(probes);
  });
}

// ---- load programs ----

interface Bins {
  loadgen: string;
  sysloop: string;
}

function buildLoadPrograms(): Bins {
  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'strata-bench-'));
  const out = { loadgen: path.join(tmpDir, 'loadgen'), sysloop: path.join(tmpDir, 'sysloop') };
  for (const name of ['loadgen', 'sysloop'] as const) {
    try {
      execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-pthread', '-o', out[name], path.join(HERE, `${name}.c`)], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? String(e);
      throw new Error(`gcc failed on bench/${name}.c (is gcc installed?):\n${stderr}`, { cause: e });
    }
  }
  return out;
}

/** Waits until every event the kernel submitted has reached the decoder (or was counted dropped). */
async function drain(probes: ProbeSet, decoder: Decoder, timeoutMs = 15000): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  let prev = -1;
  while (performance.now() < end) {
    await sleep(25);
    const ps = probes.pumpStats();
    const settled = ps.records + ps.droppedRecords >= probes.stats().events && decoder.stats.records === ps.records;
    if (settled && ps.records === prev) return true;
    prev = ps.records;
  }
  return false;
}

/**
 * Tracing BPF programs loaded by anyone but us (another agent, a test run on the same machine).
 * Their filters run on every syscall too, so they inflate the "no probes" baseline: counted per
 * run and reported. null when bpftool is missing or fails.
 */
function foreignTracingProgs(ownIds: ReadonlySet<number>): number | null {
  try {
    const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString()) as {
      id: number;
      type: string;
    }[];
    return progs.filter((p) => ['tracepoint', 'raw_tracepoint', 'tracing', 'kprobe'].includes(p.type) && !ownIds.has(p.id)).length;
  } catch {
    return null;
  }
}

const emptyHandler = () => ({ onSock() {}, onState() {}, onPkt() {}, onNetDev() {} });

// ---- 1. kernel -> JS throughput ----

interface LoadgenResult {
  writes: number;
  bytes: number;
  reads: number;
  readBytes: number;
  elapsedNs: number;
}

interface ThroughputVariant {
  id: 'batched' | 'perEvent' | 'none';
  label: string;
  /** null: no probes at all (how fast the load runs untraced) */
  wakeupBytes: number | null;
  /** ring buffer size (default: the agent's) */
  ringBytes?: number;
}

const THROUGHPUT_VARIANTS: ThroughputVariant[] = [
  { id: 'batched', label: 'a batched wakeups (256 KiB)', wakeupBytes: DEFAULT_WAKEUP_BYTES },
  { id: 'perEvent', label: 'b per-event wakeups (0)', wakeupBytes: 0 },
  { id: 'none', label: 'reference: no probes', wakeupBytes: null },
];

interface ThroughputRun {
  /** records decoded by JS per second, from "go" to the last batch */
  deliveredPerSec: number;
  /** events the probes produced (submitted + dropped) per second of load */
  kernelPerSec: number;
  loadWritesPerSec: number;
  kernelEvents: number;
  rbDrops: number;
  pumpDroppedRecords: number;
  /** ring-buffer drops / events produced (submitted + dropped) */
  rbDropFraction: number;
  /** records the pump dropped because JS had maxQueued batches pending / events produced */
  pumpDropFraction: number;
  records: number;
  batches: number;
  jsCallsPer1k: number;
  /** whole process (pump thread + JS) CPU ns per delivered event */
  procCpuNsPerEvent: number;
  /** JS main thread CPU ns per delivered event */
  jsCpuNsPerEvent: number;
  /** kernel events / loadgen syscalls (write + read): ~1 when only the load is traced */
  eventsPerLoadSyscall: number;
  drained: boolean;
  /** tracing BPF programs of other processes loaded when the load started (null: unknown) */
  foreignProgs: number | null;
  load: LoadgenResult;
}

const cpuNs = (u: { user: number; system: number }) => (u.user + u.system) * 1000;

/** rate: loadgen's writes/s (0 = unpaced) */
async function throughputRun(v: ThroughputVariant, bins: Bins, rate = 0): Promise<ThroughputRun> {
  const loadArgs = rate ? [String(LOAD_MS), String(rate)] : [String(LOAD_MS)];
  if (v.wakeupBytes === null) {
    let foreignProgs: number | null = null;
    const load = await runLoad<LoadgenResult>(bins.loadgen, loadArgs, () => {
      foreignProgs = foreignTracingProgs(new Set());
    });
    const nan = Number.NaN;
    return {
      deliveredPerSec: nan,
      kernelPerSec: nan,
      loadWritesPerSec: load.writes / (load.elapsedNs / 1e9),
      kernelEvents: 0,
      rbDrops: 0,
      pumpDroppedRecords: 0,
      rbDropFraction: nan,
      pumpDropFraction: nan,
      records: 0,
      batches: 0,
      jsCallsPer1k: nan,
      procCpuNsPerEvent: nan,
      jsCpuNsPerEvent: nan,
      eventsPerLoadSyscall: nan,
      drained: true,
      foreignProgs,
      load,
    };
  }
  return withProbes({ wakeupBytes: v.wakeupBytes, filterNetns: true, ringBytes: v.ringBytes }, async (probes) => {
    probes.open('sock_syscalls');
    const decoder = new Decoder(emptyHandler());
    let lastBatchAt = 0;
    probes.start(
      (batch) => {
        decoder.decode(batch);
        lastBatchAt = performance.now();
      },
      { pollMs: 10 },
    );
    let goAt = 0;
    let proc0 = process.cpuUsage();
    let thread0 = process.threadCpuUsage();
    let foreignProgs: number | null = null;
    const load = await runLoad<LoadgenResult>(bins.loadgen, loadArgs, (ino) => {
      foreignProgs = foreignTracingProgs(new Set(probes.progStats().map((p) => p.id)));
      probes.netnsAdd(ino);
      proc0 = process.cpuUsage();
      thread0 = process.threadCpuUsage();
      goAt = performance.now();
    });
    const drained = await drain(probes, decoder);
    const procNs = cpuNs(process.cpuUsage(proc0));
    const thread1 = process.threadCpuUsage();
    const threadNs = cpuNs({ user: thread1.user - thread0.user, system: thread1.system - thread0.system });
    const ks = probes.stats();
    const ps = probes.pumpStats();
    const records = decoder.stats.records;
    const produced = ks.events + ks.rbDrops;
    return {
      deliveredPerSec: records / ((lastBatchAt - goAt) / 1000),
      kernelPerSec: produced / (load.elapsedNs / 1e9),
      loadWritesPerSec: load.writes / (load.elapsedNs / 1e9),
      kernelEvents: ks.events,
      rbDrops: ks.rbDrops,
      pumpDroppedRecords: ps.droppedRecords,
      rbDropFraction: ratio(ks.rbDrops, produced),
      pumpDropFraction: ratio(ps.droppedRecords, produced),
      records,
      batches: ps.batches,
      jsCallsPer1k: ratio(ps.batches, ps.records) * 1000,
      procCpuNsPerEvent: ratio(procNs, records),
      jsCpuNsPerEvent: ratio(threadNs, records),
      eventsPerLoadSyscall: ratio(produced, load.writes + load.reads),
      drained,
      foreignProgs,
      load,
    };
  });
}

// ---- 2. ns per traced syscall ----

interface SysloopResult {
  calls: number;
  elapsedNs: number;
  /** mean over the whole timed loop */
  nsPerCall: number;
  /** the loop is timed in chunks of 10000 calls: the median chunk is robust to bursts of noise */
  medianChunkNsPerCall: number;
  minChunkNsPerCall: number;
  /** the writer thread's CPU time per call (CLOCK_THREAD_CPUTIME_ID): excludes preemption */
  cpuNsPerCall: number;
  reads: number;
}

interface SyscallVariant {
  id: 'none' | 'traced' | 'filtered' | 'tracedRunStats' | 'filteredRunStats' | 'rawTraced' | 'rawFiltered' | 'rawTracedRunStats' | 'rawFilteredRunStats'
    | 'ppidNone' | 'ppidTp' | 'ppidRaw';
  label: string;
  probes: 'none' | 'traced' | 'filtered';
  runStats: boolean;
  /** how the socket probes attach (registry: sock_syscalls variants) */
  attach: 'tracepoint' | 'raw_tp';
  /** what sysloop's timed loop calls: write() of 64 B on TCP, or getppid() (no socket) */
  loop: 'write' | 'getppid';
}

const SYSCALL_VARIANTS: SyscallVariant[] = [
  { id: 'none', label: 'a no probes', probes: 'none', runStats: false, attach: 'tracepoint', loop: 'write' },
  { id: 'traced', label: 'b tracepoints, netns traced (events)', probes: 'traced', runStats: false, attach: 'tracepoint', loop: 'write' },
  { id: 'filtered', label: 'c tracepoints, netns not traced', probes: 'filtered', runStats: false, attach: 'tracepoint', loop: 'write' },
  { id: 'rawTraced', label: 'd raw_tp, netns traced (events)', probes: 'traced', runStats: false, attach: 'raw_tp', loop: 'write' },
  { id: 'rawFiltered', label: 'e raw_tp, netns not traced', probes: 'filtered', runStats: false, attach: 'raw_tp', loop: 'write' },
  { id: 'tracedRunStats', label: 'b + BPF run stats on', probes: 'traced', runStats: true, attach: 'tracepoint', loop: 'write' },
  { id: 'filteredRunStats', label: 'c + BPF run stats on', probes: 'filtered', runStats: true, attach: 'tracepoint', loop: 'write' },
  { id: 'rawTracedRunStats', label: 'd + BPF run stats on', probes: 'traced', runStats: true, attach: 'raw_tp', loop: 'write' },
  { id: 'rawFilteredRunStats', label: 'e + BPF run stats on', probes: 'filtered', runStats: true, attach: 'raw_tp', loop: 'write' },
];
/** getppid(): what a process's other syscalls pay while the socket probes are attached */
const PPID_VARIANTS: SyscallVariant[] = [
  { id: 'ppidNone', label: 'f getppid(), no probes', probes: 'none', runStats: false, attach: 'tracepoint', loop: 'getppid' },
  { id: 'ppidTp', label: 'g getppid(), tracepoints attached', probes: 'filtered', runStats: false, attach: 'tracepoint', loop: 'getppid' },
  { id: 'ppidRaw', label: 'h getppid(), raw_tp attached', probes: 'filtered', runStats: false, attach: 'raw_tp', loop: 'getppid' },
];
const ALL_SC = [...SYSCALL_VARIANTS, ...PPID_VARIANTS];

interface SyscallRun {
  /** median-chunk ns per write() */
  nsPerCall: number;
  meanNsPerCall: number;
  cpuNsPerCall: number;
  /** tracing BPF programs of other processes loaded when the load started (null: unknown) */
  foreignProgs: number | null;
  kernelEvents: number;
  rbDrops: number;
  pumpDroppedRecords: number;
  filtered: number;
  /** BPF run-time statistics over the load (run-stats variants only) */
  progs: ProgDelta[];
  load: SysloopResult;
}

const WATCHED_PROGS = ['enter_write', 'exit_write', 'enter_read', 'exit_read', 'raw_sys_enter', 'raw_sys_exit'];

async function syscallRun(v: SyscallVariant, bins: Bins): Promise<SyscallRun> {
  if (v.probes === 'none') {
    let foreignProgs: number | null = null;
    const load = await runLoad<SysloopResult>(bins.sysloop, [String(CALLS), v.loop], () => {
      foreignProgs = foreignTracingProgs(new Set());
    });
    return {
      nsPerCall: load.medianChunkNsPerCall,
      meanNsPerCall: load.nsPerCall,
      cpuNsPerCall: load.cpuNsPerCall,
      foreignProgs,
      kernelEvents: 0,
      rbDrops: 0,
      pumpDroppedRecords: 0,
      filtered: 0,
      progs: [],
      load,
    };
  }
  return withProbes({ filterNetns: true, syscallAttach: v.attach }, async (probes) => {
    probes.open('sock_syscalls');
    if (v.runStats) probes.enableRunStats();
    // the pump runs as in the agent, so the traced variant pays for draining too
    const decoder = new Decoder(emptyHandler());
    probes.start((batch) => decoder.decode(batch), { pollMs: 10 });
    let before: ProgStat[] = [];
    let foreignProgs: number | null = null;
    const load = await runLoad<SysloopResult>(bins.sysloop, [String(CALLS), v.loop], (ino) => {
      foreignProgs = foreignTracingProgs(new Set(probes.progStats().map((p) => p.id)));
      if (v.probes === 'traced') probes.netnsAdd(ino);
      if (v.runStats) before = probes.progStats();
    });
    const after = v.runStats ? probes.progStats() : [];
    await drain(probes, decoder);
    const ks = probes.stats();
    return {
      nsPerCall: load.medianChunkNsPerCall,
      meanNsPerCall: load.nsPerCall,
      cpuNsPerCall: load.cpuNsPerCall,
      foreignProgs,
      kernelEvents: ks.events,
      rbDrops: ks.rbDrops,
      pumpDroppedRecords: probes.pumpStats().droppedRecords,
      filtered: ks.filtered,
      progs: progDeltas(before, after).filter((p) => WATCHED_PROGS.includes(p.name)),
      load,
    };
  });
}

// ---- rounds ----

/**
 * Runs every variant once per round, order alternating between rounds. Stops before a round
 * that would end past `deadline` (estimated from the slowest round so far): whole rounds only,
 * so every variant has the same number of samples.
 */
async function rounds<V extends { id: string; label: string }, R>(
  name: string,
  variants: readonly V[],
  deadline: number,
  run: (v: V) => Promise<R>,
): Promise<{ runs: Map<string, R[]>; rounds: number }> {
  const runs = new Map<string, R[]>(variants.map((v) => [v.id, []]));
  let slowest = 0;
  let done = 0;
  for (let r = 0; r < ROUNDS; r++) {
    if (r > 0 && performance.now() + slowest > deadline) {
      log(`${name}: time budget reached, stopping after ${r} rounds`);
      break;
    }
    const start = performance.now();
    for (const v of roundOrder(variants, r)) {
      log(`${name} round ${r + 1}/${ROUNDS}: ${v.label}`);
      runs.get(v.id)?.push(await run(v));
    }
    slowest = Math.max(slowest, performance.now() - start);
    done++;
  }
  return { runs, rounds: done };
}

const pick = <R>(runs: readonly R[], f: (r: R) => number): Summary => summarize(runs.map(f));
/** per-round paired differences: rounds interleave, so round r of b and of a shared conditions */
const paired = (x: readonly number[], y: readonly number[]): Summary => summarize(x.map((v, i) => v - (y[i] ?? Number.NaN)));
const pickProg = (runs: readonly SyscallRun[], name: string, f: (p: ProgDelta) => number): Summary =>
  pick(runs, (r) => {
    const p = r.progs.find((q) => q.name === name);
    return p ? f(p) : Number.NaN;
  });
const round1 = (s: Summary) => ({ median: +s.median.toFixed(1), min: +s.min.toFixed(1), max: +s.max.toFixed(1), n: s.n });

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench needs root (BPF programs, unshare(CLONE_NEWNET))');
  try {
    loadNative();
  } catch (e) {
    throw new Error(`native addon not loadable (run "npm run build"): ${(e as Error).message}`, { cause: e });
  }
  const bins = buildLoadPrograms();
  // warm the page cache and the loopback path once, unmeasured
  await runLoad<SysloopResult>(bins.sysloop, [String(Math.min(CALLS, 100000))], () => {});

  // about 40 % of the budget for throughput, the rest for the syscall variants (5 per round)
  const tp = await rounds('throughput', THROUGHPUT_VARIANTS, t0Bench + BUDGET_MS * 0.4, (v) => throughputRun(v, bins));
  // 3. loss accounting: a known number of syscalls at each rate, every event accounted for by stage
  const loss: { rate: number; ring: number | undefined; run: ThroughputRun }[] = [];
  for (const rate of LOSS_RATES) {
    log(`loss accounting: loadgen at ${rate ? `${rate} writes/s` : 'full speed'} for ${LOAD_MS} ms`);
    loss.push({ rate, ring: undefined, run: await throughputRun(THROUGHPUT_VARIANTS[0], bins, rate) });
  }
  for (const ring of LOSS_RINGS) {
    log(`loss accounting: loadgen at full speed into a ${ring / 1024} KiB ring buffer (wakeup at ${DEFAULT_WAKEUP_BYTES / 1024} KiB)`);
    loss.push({ rate: 0, ring, run: await throughputRun({ ...THROUGHPUT_VARIANTS[0], wakeupBytes: DEFAULT_WAKEUP_BYTES, ringBytes: ring }, bins, 0) });
  }
  // past what the pipeline holds: a 64 KiB ring buffer at full speed loses events, each counted
  log('loss accounting: loadgen at full speed into a 64 KiB ring buffer');
  loss.push({ rate: 0, ring: LOSS_RING, run: await throughputRun({ ...THROUGHPUT_VARIANTS[0], wakeupBytes: LOSS_RING / 4, ringBytes: LOSS_RING }, bins, 0) });
  const sc = await rounds('syscall', ALL_SC, t0Bench + BUDGET_MS, (v) => syscallRun(v, bins));

  // ---- throughput report ----
  const tpRuns = (id: ThroughputVariant['id']) => tp.runs.get(id) ?? [];
  const tpMetrics = (runs: ThroughputRun[]) => ({
    deliveredPerSec: pick(runs, (r) => r.deliveredPerSec),
    kernelPerSec: pick(runs, (r) => r.kernelPerSec),
    loadWritesPerSec: pick(runs, (r) => r.loadWritesPerSec),
    rbDropFraction: pick(runs, (r) => r.rbDropFraction),
    pumpDropFraction: pick(runs, (r) => r.pumpDropFraction),
    jsCallsPer1k: pick(runs, (r) => r.jsCallsPer1k),
    procCpuNsPerEvent: pick(runs, (r) => r.procCpuNsPerEvent),
    jsCpuNsPerEvent: pick(runs, (r) => r.jsCpuNsPerEvent),
  });
  const batched = tpMetrics(tpRuns('batched'));
  const perEvent = tpMetrics(tpRuns('perEvent'));
  const untraced = tpMetrics(tpRuns('none'));
  const tpRatio = (f: (m: typeof batched) => Summary) => ratio(f(batched).median, f(perEvent).median);
  const tpRatios = {
    deliveredPerSec: tpRatio((m) => m.deliveredPerSec),
    loadWritesPerSec: tpRatio((m) => m.loadWritesPerSec),
    jsCallsPer1k: tpRatio((m) => m.jsCallsPer1k),
    procCpuNsPerEvent: tpRatio((m) => m.procCpuNsPerEvent),
    jsCpuNsPerEvent: tpRatio((m) => m.jsCpuNsPerEvent),
  };
  const tpRow = (label: string, m: typeof batched) => [
    label,
    fmtSummary(m.deliveredPerSec, fmtSI),
    fmtSummary(m.kernelPerSec, fmtSI),
    fmtSummary(m.loadWritesPerSec, fmtSI),
    fmtSummary(m.rbDropFraction, fmtPct),
    fmtSummary(m.pumpDropFraction, fmtPct),
    fmtSummary(m.jsCallsPer1k),
    fmtSummary(m.procCpuNsPerEvent),
    fmtSummary(m.jsCpuNsPerEvent),
  ];
  const out: string[] = [];
  out.push(
    `1. Kernel -> JS throughput: loadgen write()s 64..256 B on TCP 127.0.0.1 for ${LOAD_MS} ms (+ its reads), ` +
      `median (min..max) over ${tp.rounds} rounds`,
  );
  out.push(
    table(
      ['variant', 'events/s to JS', 'kernel events/s', 'loadgen writes/s', 'rb drops', 'pump drops', 'JS calls/1k ev', 'proc CPU ns/ev', 'JS thread CPU ns/ev'],
      [
        tpRow(THROUGHPUT_VARIANTS[0].label, batched),
        tpRow(THROUGHPUT_VARIANTS[1].label, perEvent),
        ['reference: no probes', '', '', fmtSummary(untraced.loadWritesPerSec, fmtSI)],
        [
          'ratio a/b (medians)',
          fmtRatio(tpRatios.deliveredPerSec),
          '',
          fmtRatio(tpRatios.loadWritesPerSec),
          '',
          '',
          fmtRatio(tpRatios.jsCallsPer1k),
          fmtRatio(tpRatios.procCpuNsPerEvent),
          fmtRatio(tpRatios.jsCpuNsPerEvent),
        ],
      ],
    ),
  );
  const undrained = [...tpRuns('batched'), ...tpRuns('perEvent')].filter((r) => !r.drained).length;
  if (undrained) out.push(`warning: ${undrained} throughput runs did not drain within 15 s`);

  // ---- loss accounting report ----
  const lossRows = loss.map(({ rate, ring, run: r }) => {
    const syscalls = r.load.writes + r.load.reads;
    const produced = r.kernelEvents + r.rbDrops;
    const dropped = r.rbDrops + r.pumpDroppedRecords;
    return {
      rate, ring: ring ?? null, writesPerSec: r.loadWritesPerSec, syscalls, produced, extra: produced - syscalls, delivered: r.records,
      rbDrops: r.rbDrops, pumpDrops: r.pumpDroppedRecords, exact: r.drained && produced === r.records + dropped, lost: dropped,
    };
  });
  const lossless = lossRows.filter((x) => x.lost === 0 && x.exact && !x.ring).map((x) => x.writesPerSec);
  out.push('');
  out.push(
    `3. Loss accounting: loadgen paced at a target rate for ${LOAD_MS} ms (known writes and reads, each one traced syscall), ` +
      'every kernel event accounted for by stage (one run per rate)',
  );
  out.push(
    table(
      ['target writes/s', 'writes/s', 'syscalls', 'kernel events', 'events - syscalls', 'delivered to JS', 'ring-buffer drops', 'JS-queue drops', 'produced = delivered + dropped'],
      lossRows.map((x) => [
        (x.rate ? fmtSI(x.rate) : 'unpaced') + (x.ring ? `, ${x.ring / 1024} KiB ring` : ''), fmtSI(x.writesPerSec), String(x.syscalls), String(x.produced), String(x.extra), String(x.delivered),
        String(x.rbDrops), String(x.pumpDrops), x.exact ? 'yes' : 'NO',
      ]),
    ),
  );
  out.push(lossless.length ? `   0 lost up to ${fmtSI(Math.max(...lossless))} writes/s (${fmtSI(2 * Math.max(...lossless))} traced syscalls/s with the reads)` : '   events were lost at every rate');

  // ---- syscall report ----
  const scRuns = (id: SyscallVariant['id']) => sc.runs.get(id) ?? [];
  const ns = (id: SyscallVariant['id']) => scRuns(id).map((r) => r.nsPerCall);
  const scRow = (v: SyscallVariant) => {
    const runs = scRuns(v.id);
    const added = v.probes === 'none' ? '' : fmtSummary(paired(ns(v.id), ns(v.loop === 'getppid' ? 'ppidNone' : 'none')));
    const dropped = runs.reduce((a, r) => a + r.rbDrops + r.pumpDroppedRecords, 0);
    const events = v.probes === 'traced' ? `${fmtSummary(pick(runs, (r) => r.kernelEvents), fmtSI)}${dropped ? ` (${dropped} dropped)` : ''}` : '';
    return [
      v.label,
      fmtSummary(summarize(ns(v.id))),
      added,
      fmtSummary(pick(runs, (r) => r.meanNsPerCall)),
      fmtSummary(pick(runs, (r) => r.cpuNsPerCall)),
      events,
    ];
  };
  out.push('');
  out.push(
    `2. ns per write() of 64 B on TCP 127.0.0.1 (${CALLS} timed calls, a reader thread draining), ` +
      `median (min..max) over ${sc.rounds} rounds; added = per-round paired difference`,
  );
  out.push(table(['variant', 'ns/write (median chunk)', 'added ns vs a', 'mean ns/write', 'writer CPU ns/write', 'events per run'], SYSCALL_VARIANTS.map(scRow)));
  out.push('');
  out.push(`   ns per getppid() (${CALLS} timed calls): every other syscall of every process while the socket probes are attached; added vs f`);
  out.push(table(['variant', 'ns/call (median chunk)', 'added ns vs f', 'mean ns/call', 'CPU ns/call', ''], PPID_VARIANTS.map(scRow)));
  const progRow = (name: string) => {
    const raw = name.startsWith('raw_');
    return [
      name,
      fmtSummary(pickProg(scRuns(raw ? 'rawTracedRunStats' : 'tracedRunStats'), name, (p) => p.nsPerRun)),
      fmtSummary(pickProg(scRuns(raw ? 'rawFilteredRunStats' : 'filteredRunStats'), name, (p) => p.nsPerRun)),
      fmtSummary(pickProg(scRuns(raw ? 'rawTracedRunStats' : 'tracedRunStats'), name, (p) => p.runs / SYSLOOP_WRITES)),
    ];
  };
  out.push('');
  out.push('   BPF run-time statistics (kernel run_time_ns / run_cnt over the sysloop run, run-stats variants)');
  out.push(table(['program', 'ns/run, traced', 'ns/run, not traced', 'runs per loop write'], WATCHED_PROGS.map(progRow)));
  const allRuns: { foreignProgs: number | null }[] = [...[...tp.runs.values()].flat(), ...[...sc.runs.values()].flat()];
  const foreign = allRuns.map((r) => r.foreignProgs);
  out.push('');
  if (foreign.some((f) => f === null)) out.push('note: bpftool missing or failing: could not check for other processes\' BPF tracing programs');
  const affected = foreign.filter((f) => (f ?? 0) > 0);
  if (affected.length)
    out.push(
      `note: other processes had up to ${Math.max(...(affected as number[]))} tracing BPF programs loaded in ${affected.length} of ${foreign.length} runs: ` +
        'their filters ran on these syscalls too (the "no probes" baseline included)',
    );
  else if (!foreign.some((f) => f === null)) out.push(`no other process had tracing BPF programs loaded during the ${foreign.length} runs`);
  process.stdout.write(`${out.join('\n')}\n\n`);

  // ---- JSON ----
  const rawTp = (runs: ThroughputRun[]) =>
    runs.map((r) => ({
      deliveredPerSec: Math.round(r.deliveredPerSec),
      kernelPerSec: Math.round(r.kernelPerSec),
      loadWritesPerSec: Math.round(r.loadWritesPerSec),
      kernelEvents: r.kernelEvents,
      rbDrops: r.rbDrops,
      pumpDroppedRecords: r.pumpDroppedRecords,
      records: r.records,
      batches: r.batches,
      procCpuNsPerEvent: Math.round(r.procCpuNsPerEvent),
      jsCpuNsPerEvent: Math.round(r.jsCpuNsPerEvent),
      eventsPerLoadSyscall: +r.eventsPerLoadSyscall.toFixed(3),
      drained: r.drained,
      foreignProgs: r.foreignProgs,
    }));
  const mediansOf = (m: Record<string, Summary>) => Object.fromEntries(Object.entries(m).map(([k, s]) => [k, Number(s.median.toPrecision(4))]));
  const progJson = (id: SyscallVariant['id']) =>
    Object.fromEntries(WATCHED_PROGS.map((name) => [name, round1(pickProg(scRuns(id), name, (p) => p.nsPerRun))]));
  const summary = {
    bench: 'strata',
    at: new Date().toISOString(),
    env: { kernel: os.release(), cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', node: process.version },
    params: { rounds: ROUNDS, loadMs: LOAD_MS, calls: CALLS, wakeupBytes: DEFAULT_WAKEUP_BYTES },
    throughput: {
      rounds: tp.rounds,
      batched: { median: mediansOf(batched), raw: rawTp(tpRuns('batched')) },
      perEvent: { median: mediansOf(perEvent), raw: rawTp(tpRuns('perEvent')) },
      untracedLoadWritesPerSec: round1(untraced.loadWritesPerSec),
      untracedForeignProgs: tpRuns('none').map((r) => r.foreignProgs),
      ratioBatchedOverPerEvent: Object.fromEntries(Object.entries(tpRatios).map(([k, r]) => [k, +r.toFixed(3)])),
    },
    loss: lossRows,
    syscall: {
      rounds: sc.rounds,
      /** ns per call of each variant (write() for a..e, getppid() for f..h) */
      nsPerWrite: Object.fromEntries(ALL_SC.map((v) => [v.id, round1(summarize(ns(v.id)))])),
      addedNs: Object.fromEntries(ALL_SC.filter((v) => v.probes !== 'none').map((v) => [v.id, round1(paired(ns(v.id), ns(v.loop === 'getppid' ? 'ppidNone' : 'none')))])),
      raw: Object.fromEntries(ALL_SC.map((v) => [v.id, ns(v.id).map((x) => +x.toFixed(1))])),
      rawMean: Object.fromEntries(ALL_SC.map((v) => [v.id, scRuns(v.id).map((r) => +r.meanNsPerCall.toFixed(1))])),
      rawWriterCpu: Object.fromEntries(ALL_SC.map((v) => [v.id, scRuns(v.id).map((r) => +r.cpuNsPerCall.toFixed(1))])),
      foreignProgs: Object.fromEntries(ALL_SC.map((v) => [v.id, scRuns(v.id).map((r) => r.foreignProgs)])),
      tracedEvents: scRuns('traced').map((r) => r.kernelEvents),
      tracedDrops: scRuns('traced').map((r) => r.rbDrops + r.pumpDroppedRecords),
      bpfNsPerRun: {
        traced: progJson('tracedRunStats'), filtered: progJson('filteredRunStats'),
        rawTraced: progJson('rawTracedRunStats'), rawFiltered: progJson('rawFilteredRunStats'),
      },
    },
    elapsedS: +((performance.now() - t0Bench) / 1000).toFixed(1),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

main()
  .catch((e: unknown) => {
    log(`failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  })
  .finally(cleanup);
