// A/B of the paths every process and every packet pays (issue 8): this tree against another one
// (a scratch worktree of a base commit, built), interleaved in one run. Each side runs in a child
// process of its own tree (bench/prefilter-ab-child.ts, copied into the other tree), kept alive
// for the whole run; every round runs each measurement on both sides back to back, the order
// reversed every other round, next to a no-probes run of the same loop. Figures: median
// (min..max) over rounds; "added" is the per-round paired difference to the no-probes run.
// Usage: node bench/prefilter-ab.ts --base /path/to/base/worktree [--rounds 5] [--calls 300000] [--only id,id]
// Needs root. Tables, then one JSON line, on stdout; progress on stderr.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { AbCommand, AbResult } from './prefilter-ab-child.ts';
import { fmtSummary, posInt, roundOrder, type Summary, summarize, table } from './stats.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { values: argv } = parseArgs({
  options: { base: { type: 'string' }, rounds: { type: 'string', default: '5' }, calls: { type: 'string', default: '300000' }, only: { type: 'string', default: '' } },
});
if (!argv.base) throw new Error('--base <worktree of the base commit, built> is required');
const ROUNDS = posInt('rounds', argv.rounds);
const CALLS = Math.floor(posInt('calls', argv.calls) / 10000) * 10000;
const t0 = performance.now();
const log = (m: string) => process.stderr.write(`[ab ${((performance.now() - t0) / 1000).toFixed(0)}s] ${m}\n`);

// ---- the two sides ----

interface Side {
  name: 'base' | 'new';
  child: ChildProcess;
  pending: ((r: { ok: boolean; result?: AbResult; error?: string }) => void)[];
}

function startSide(name: Side['name'], tree: string): Promise<Side> {
  const script = path.join(tree, 'bench', 'prefilter-ab-child.ts');
  // the child and the load protocol it uses (the other tree may predate them)
  if (path.resolve(tree) !== path.resolve(HERE, '..')) for (const f of ['prefilter-ab-child.ts', 'load-runner.ts']) copyFileSync(path.join(HERE, f), path.join(tree, 'bench', f));
  if (!existsSync(path.join(tree, 'build', 'Release', 'strata_native.node'))) throw new Error(`${tree}: not built (npm run build)`);
  const child = spawn(process.execPath, [script], { cwd: tree, stdio: ['pipe', 'pipe', 'inherit'] });
  const side: Side = { name, child, pending: [] };
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`${name} side exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line);
      if (msg.ready) resolve(side);
      else side.pending.shift()?.(msg);
    });
  });
}

function ask(side: Side, c: AbCommand): Promise<AbResult> {
  return new Promise((resolve, reject) => {
    side.pending.push((m) => (m.ok && m.result ? resolve(m.result) : reject(new Error(`${side.name}: ${m.error}`))));
    side.child.stdin!.write(`${JSON.stringify(c)}\n`);
  });
}

// ---- what is measured ----

interface Measure {
  id: string;
  label: string;
  probes: AbCommand['probes'];
  loop: AbCommand['loop'];
  runStats: boolean;
}

const MEASURES: Measure[] = [
  { id: 'untraced', label: 'write(), netns not traced', probes: 'filtered', loop: 'write', runStats: false },
  { id: 'traced', label: 'write(), netns traced (events)', probes: 'traced', loop: 'write', runStats: false },
  { id: 'ppid', label: 'getppid(), probes attached', probes: 'filtered', loop: 'getppid', runStats: false },
  { id: 'untracedStats', label: 'write(), not traced, BPF run stats', probes: 'filtered', loop: 'write', runStats: true },
  { id: 'tracedStats', label: 'write(), traced, BPF run stats', probes: 'traced', loop: 'write', runStats: true },
  { id: 'netdev', label: 'net_dev, loopback not watched, run stats', probes: 'netdev', loop: 'write', runStats: true },
  { id: 'netdevWatched', label: 'net_dev, loopback watched, run stats', probes: 'netdevWatched', loop: 'write', runStats: true },
];

const ONLY = argv.only.split(',').filter(Boolean);
for (const id of ONLY) if (!MEASURES.some((m) => m.id === id)) throw new Error(`--only: no measure ${id} (${MEASURES.map((m) => m.id).join(', ')})`);
const SELECTED = ONLY.length ? MEASURES.filter((m) => ONLY.includes(m.id)) : MEASURES;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'strata-ab-'));
  const sysloop = path.join(tmp, 'sysloop');
  execFileSync('gcc', ['-O2', '-Wall', '-pthread', '-o', sysloop, path.join(HERE, 'sysloop.c')]);
  const sides = [await startSide('base', argv.base!), await startSide('new', path.join(HERE, '..'))];
  const none: Record<'write' | 'getppid', AbResult[]> = { write: [], getppid: [] };
  const runs = new Map<string, AbResult[]>();
  const key = (side: string, id: string) => `${side}:${id}`;
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const steps: (() => Promise<void>)[] = [];
      for (const loop of ['write', 'getppid'] as const) {
        steps.push(async () => {
          none[loop].push(await ask(sides[0], { probes: 'none', loop, runStats: false, sysloop, calls: CALLS }));
        });
      }
      for (const m of SELECTED) {
        for (const s of sides) {
          steps.push(async () => {
            log(`round ${r + 1}/${ROUNDS}: ${s.name} ${m.label}`);
            const res = await ask(s, { probes: m.probes, loop: m.loop, runStats: m.runStats, sysloop, calls: CALLS });
            runs.set(key(s.name, m.id), [...(runs.get(key(s.name, m.id)) ?? []), res]);
          });
        }
      }
      for (const step of roundOrder(steps, r)) await step();
    }
  } finally {
    for (const s of sides) s.child.kill('SIGTERM');
    rmSync(tmp, { recursive: true, force: true });
  }

  // ---- report ----
  const f = (s: Summary) => fmtSummary(s, (x) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1)));
  const fr = (s: Summary) => fmtSummary(s, (x) => `${x.toFixed(2)}x`);
  const ns = (side: string, id: string) => (runs.get(key(side, id)) ?? []).map((x) => x.nsPerCall);
  const added = (side: string, m: Measure) => ns(side, m.id).map((v, i) => v - (none[m.loop][i]?.nsPerCall ?? Number.NaN));
  const out: string[] = [];
  out.push(`prefilter A/B: base = ${argv.base} vs new = this tree; ${ROUNDS} rounds interleaved (order reversed every other round), ${CALLS} timed calls per run`);
  out.push(`kernel ${os.release()}, ${os.cpus().length} CPUs; ns per call = median 10000-call chunk of the run; added = paired difference to the no-probes run of the same round`);
  out.push('');
  const rows: string[][] = [];
  for (const loop of ['write', 'getppid'] as const) rows.push([`${loop}(), no probes`, f(summarize(none[loop].map((x) => x.nsPerCall))), '', '', '', '', '']);
  for (const m of SELECTED.filter((x) => !x.runStats)) {
    const a = added('base', m);
    const b = added('new', m);
    const own = none[m.loop].map((x) => x.nsPerCall);
    rows.push([
      m.label, f(summarize(ns('base', m.id))), f(summarize(ns('new', m.id))), f(summarize(a)), f(summarize(b)),
      fr(summarize(b.map((v, i) => v / a[i]))), `${fr(summarize(a.map((v, i) => v / own[i])))} -> ${fr(summarize(b.map((v, i) => v / own[i])))}`,
    ]);
  }
  out.push(table(['ns per call', 'base', 'new', 'added, base', 'added, new', 'added new/base', 'added / call, base -> new'], rows));
  out.push('');
  const progNs = (side: string, id: string, prog: string, f2: (p: { runs: number; nsPerRun: number }) => number) =>
    (runs.get(key(side, id)) ?? []).map((x) => {
      const p = x.progs.find((q) => q.name === prog);
      return p ? f2(p) : Number.NaN;
    });
  const prow: string[][] = [];
  const progRows: [string, string, string][] = [
    ['untracedStats', 'enter_write', 'untraced write: entry'], ['untracedStats', 'exit_write', 'untraced write: exit'],
    ['tracedStats', 'enter_write', 'traced write: entry'], ['tracedStats', 'exit_write', 'traced write: exit'],
    ['netdev', 'nd_rx', 'net_dev rx, not watched'], ['netdev', 'nd_queue', 'net_dev queue, not watched'], ['netdev', 'nd_xmit', 'net_dev xmit, not watched'],
    ['netdevWatched', 'nd_rx', 'net_dev rx, watched'], ['netdevWatched', 'nd_queue', 'net_dev queue, watched'], ['netdevWatched', 'nd_xmit', 'net_dev xmit, watched'],
  ];
  for (const [id, prog, label] of progRows.filter(([id]) => SELECTED.some((m) => m.id === id))) {
    const a = progNs('base', id, prog, (p) => p.nsPerRun);
    const b = progNs('new', id, prog, (p) => p.nsPerRun);
    const runsPerCall = progNs('new', id, prog, (p) => p.runs / (CALLS + CALLS / 10));
    prow.push([label, `${prog}`, f(summarize(a)), f(summarize(b)), fr(summarize(b.map((v, i) => v / a[i]))), f(summarize(runsPerCall))]);
  }
  out.push(table(['BPF run time (run_time_ns / run_cnt)', 'program', 'ns/run, base', 'ns/run, new', 'new/base', 'runs per write'], prow));
  out.push('');
  out.push('note: a shared 2-vCPU VM; other engineers ran tests meanwhile; ranges are min..max over rounds, and BPF run stats add their own clock reads to every run.');
  process.stdout.write(`${out.join('\n')}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'prefilter-ab', at: new Date().toISOString(), kernel: os.release(), rounds: ROUNDS, calls: CALLS, base: argv.base, none, runs: Object.fromEntries(runs) })}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
