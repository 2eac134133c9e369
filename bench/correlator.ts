// Correlator throughput before/after: the span pipeline (decoder -> correlator -> SDK sink -> OTLP
// protobuf bytes) of a baseline commit against the working tree's, in the same run, A/B
// interleaved. Input: ring-buffer batches captured on the real kernel (--capture: a lab run through
// NGINX to the app; root) or the small test/fixtures/skeleton capture, replayed `replays` times.
//
//   node bench/correlator.ts [--base 801d2e1] [--capture [--prefix capfx]] [--capture-dir DIR] [--requests 400] [--rounds 5] [--replays 20]
//                            [--base-node-flags=...] [--node-flags=...] [--write-set DIR]
// Node flags apply to the timed runs of that side: `--base HEAD "--node-flags=--max-semi-space-size=1"`
// compares a V8 setting on one tree (with `=`: parseArgs refuses a separate value that starts with a dash).
//
// The baseline is checked out into a temporary git worktree (node_modules linked from this tree;
// --build-base also builds the native addon there), removed at the end, on failure and on
// SIGINT/SIGTERM. Each side of each round runs in its own child process (bench/correlator-worker.ts)
// that loads that tree's modules: its bench/pipeline-adapter.ts, else the pre-redesign chain. Every
// round runs both sides, in reversed order on odd rounds. Output: a table, then one JSON line.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { EVENT_TYPE, HDR, PKT_EVENT, SOCK_EVENT } from '../agent/src/events/layout.generated.ts';
import { loadFixture } from '../test/helpers/replay.ts';
import { encodeSet } from './correlator-worker.ts';
import { fmtRatio, fmtSI, fmtSummary, ratio, roundOrder, summarize, table } from './stats.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER = fileURLToPath(new URL('./correlator-worker.ts', import.meta.url));
const MIN_ROUNDS = 5;

const { values } = parseArgs({
  options: {
    base: { type: 'string', default: '801d2e1' },
    'base-node-flags': { type: 'string', default: '' },
    'node-flags': { type: 'string', default: '' },
    capture: { type: 'boolean', default: false },
    // the lab's name prefix for --capture (netns, links): one of your own on a shared machine
    prefix: { type: 'string', default: 'capfx' },
    // keep the capture in DIR (capture.batches + capture.meta.json) and reuse it when it is there
    'capture-dir': { type: 'string' },
    requests: { type: 'string', default: '400' },
    rounds: { type: 'string', default: String(MIN_ROUNDS) },
    replays: { type: 'string', default: '20' },
    'build-base': { type: 'boolean', default: false },
    // write the replay sets (set.bin, warm.bin, alloc.bin, meta.json) into DIR and stop: the input of
    // `node --cpu-prof bench/correlator-worker.ts --root . --set DIR/set.bin --warmup DIR/warm.bin --meta DIR/meta.json`
    'write-set': { type: 'string' },
  },
});
const rounds = Math.max(MIN_ROUNDS, Number(values.rounds));
const replays = Math.max(1, Number(values.replays));

/** The capture replayed `replays` times, each copy shifted in time, socket and TCP sequence space. */
function replaySet(dir: string | undefined, n: number) {
  const { batches, meta } = dir ? loadFixture('capture', dir) : loadFixture('skeleton');
  const span = lastTs(batches) - firstTs(batches) + 1e9;
  const out: Buffer[] = [];
  const ticks: number[] = [];
  let records = 0;
  let newest = 0;
  for (let r = 0; r < n; r++) {
    for (const b of batches) {
      const c = Buffer.from(b);
      for (let o = 0; o + HDR.SIZE <= c.length; ) {
        const len = c.readUInt32LE(o + HDR.len);
        const type = c.readUInt16LE(o + HDR.type);
        addU64(c, o + HDR.ts_ns, r * span);
        if (type === EVENT_TYPE.EV_PKT) {
          c.writeUInt32LE((c.readUInt32LE(o + PKT_EVENT.seq) + r * 0x100000) >>> 0, o + PKT_EVENT.seq);
        } else if (type >= EVENT_TYPE.EV_SOCK_DATA && type <= EVENT_TYPE.EV_SOCK_CLOSE) {
          addU64(c, o + SOCK_EVENT.enter_ts_ns, r * span);
          c.writeUInt32LE((c.readUInt32LE(o + SOCK_EVENT.sk) ^ (r << 20)) >>> 0, o + SOCK_EVENT.sk);
          c.writeUInt32LE((c.readUInt32LE(o + SOCK_EVENT.seq) + r * 0x100000) >>> 0, o + SOCK_EVENT.seq);
        }
        newest = Math.max(newest, readU64(c, o + HDR.ts_ns));
        records++;
        o += len;
      }
      out.push(c);
      ticks.push(newest);
    }
  }
  return { batches: out, ticks, records, meta };
}

const readU64 = (b: Buffer, o: number) => b.readUInt32LE(o + 4) * 4294967296 + b.readUInt32LE(o);

function addU64(b: Buffer, o: number, add: number): void {
  const v = readU64(b, o) + add;
  b.writeUInt32LE(v % 4294967296 >>> 0, o);
  b.writeUInt32LE(Math.floor(v / 4294967296) >>> 0, o + 4);
}

function eachTs(batches: Buffer[], f: (ts: number) => void): void {
  for (const b of batches) {
    for (let o = 0; o + HDR.SIZE <= b.length; o += b.readUInt32LE(o + HDR.len)) f(readU64(b, o + HDR.ts_ns));
  }
}
const firstTs = (bs: Buffer[]) => {
  let m = Number.MAX_SAFE_INTEGER;
  eachTs(bs, (t) => (m = Math.min(m, t)));
  return m;
};
const lastTs = (bs: Buffer[]) => {
  let m = 0;
  eachTs(bs, (t) => (m = Math.max(m, t)));
  return m;
};

// ---- temporary state, removed on every way out ----
let tmp: string | undefined;
let baseTree: string | undefined;
function cleanup(): void {
  if (baseTree) {
    spawnSync('git', ['-C', ROOT, 'worktree', 'remove', '--force', baseTree], { stdio: 'ignore' });
    rmSync(baseTree, { recursive: true, force: true });
    spawnSync('git', ['-C', ROOT, 'worktree', 'prune'], { stdio: 'ignore' });
    baseTree = undefined;
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  tmp = undefined;
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

interface TimeResult {
  adapter: string;
  eventsPerSec: number;
  cpuNsPerEvent: number;
  spans: number;
  otlpBytes: number;
}
interface AllocResult {
  bytesPerEvent: number;
  gcDuring: number;
  spans: number;
}

function worker<T>(root: string, args: string[], nodeFlags: string[] = []): T {
  const r = spawnSync(process.execPath, [...nodeFlags, WORKER, '--root', root, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`worker for ${root} failed (${r.status ?? r.signal}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as T;
}

try {
  tmp = mkdtempSync(join(tmpdir(), 'strata-bench-correlator-'));
  let dir: string | undefined;
  const keep = values['capture-dir'];
  if (keep && existsSync(join(keep, 'capture.batches'))) {
    dir = keep;
    process.stderr.write(`reusing the capture in ${keep}\n`);
  } else if (values.capture || keep) {
    const { captureLab } = await import('../scripts/capture-fixture.ts');
    if (keep) mkdirSync(keep, { recursive: true });
    const c = await captureLab(keep ?? tmp, 'capture', Number(values.requests), 'basic', values.prefix);
    process.stderr.write(`captured ${c.records} records in ${c.batches} batches (${c.spans} exchange spans) from the lab\n`);
    dir = keep ?? tmp;
  }
  const set = replaySet(dir, replays);
  const allocSet = replaySet(dir, Math.min(replays, 2));
  const warm = replaySet(dir, 2);
  const out = values['write-set'] ?? tmp;
  if (values['write-set']) mkdirSync(out, { recursive: true });
  const files = { set: join(out, 'set.bin'), alloc: join(out, 'alloc.bin'), warm: join(out, 'warm.bin'), meta: join(out, 'meta.json') };
  writeFileSync(files.set, encodeSet(set.batches, set.ticks, set.records));
  writeFileSync(files.alloc, encodeSet(allocSet.batches, allocSet.ticks, allocSet.records));
  writeFileSync(files.warm, encodeSet(warm.batches, warm.ticks, warm.records));
  writeFileSync(files.meta, JSON.stringify(set.meta));
  if (values['write-set']) {
    process.stderr.write(`wrote ${set.records} records (${replays} shifted copies) to ${out}\n`);
    cleanup();
    process.exit(0);
  }
  const baseRev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', `${values.base}^{commit}`], { encoding: 'utf8' }).trim();
  const headRev = execFileSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  const dirty = execFileSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
  baseTree = join(tmp, `base-${baseRev}`);
  execFileSync('git', ['-C', ROOT, 'worktree', 'add', '--detach', baseTree, baseRev], { stdio: 'ignore' });
  symlinkSync(join(ROOT, 'node_modules'), join(baseTree, 'node_modules'));
  if (values['build-base']) execFileSync('npm', ['run', '--silent', 'build'], { cwd: baseTree, stdio: 'ignore' });

  process.stderr.write(`replaying ${set.records} records (${replays} shifted copies of the ${dir ? 'capture' : 'skeleton fixture'}); base ${baseRev} vs working tree (${headRev}${dirty ? ' + changes' : ''}), ${rounds} rounds\n`);

  const flagsOf = (v: string | undefined) => (v ?? '').split(/\s+/).filter(Boolean);
  const sides = [
    { name: `base ${baseRev}${values['base-node-flags'] ? ` ${values['base-node-flags']}` : ''}`, root: baseTree, flags: flagsOf(values['base-node-flags']) },
    { name: `working tree ${headRev}${dirty ? '+' : ''}${values['node-flags'] ? ` ${values['node-flags']}` : ''}`, root: ROOT, flags: flagsOf(values['node-flags']) },
  ];
  const res = sides.map(() => ({ time: [] as TimeResult[], alloc: [] as AllocResult[] }));
  for (let round = 0; round < rounds; round++) {
    for (const i of roundOrder([0, 1], round)) {
      const s = sides[i] as (typeof sides)[number];
      const t = worker<TimeResult>(s.root, ['--mode', 'time', '--set', files.set, '--warmup', files.warm, '--meta', files.meta], s.flags);
      const a = worker<AllocResult>(s.root, ['--mode', 'alloc', '--set', files.alloc, '--warmup', files.warm, '--meta', files.meta], [
        '--expose-gc',
        '--min-semi-space-size=512',
        '--max-semi-space-size=512',
      ]);
      res[i]?.time.push(t);
      res[i]?.alloc.push(a);
      process.stderr.write(`round ${round + 1}/${rounds} ${s.name}: ${fmtSI(t.eventsPerSec)} events/s, ${a.bytesPerEvent.toFixed(0)} B/event\n`);
    }
  }

  const ev = res.map((r) => summarize(r.time.map((x) => x.eventsPerSec)));
  const cpu = res.map((r) => summarize(r.time.map((x) => x.cpuNsPerEvent)));
  // a round whose replay saw a GC gives a lower bound: the GC-free rounds are the figure when any
  const cleanAlloc = (r: (typeof res)[number]) => (r.alloc.some((x) => x.gcDuring === 0) ? r.alloc.filter((x) => x.gcDuring === 0) : r.alloc);
  const al = res.map((r) => summarize(cleanAlloc(r).map((x) => x.bytesPerEvent)));
  const rows = sides.map((s, i) => {
    const r = res[i] as (typeof res)[number];
    const clean = r.alloc.filter((x) => x.gcDuring === 0).length;
    const gc = clean === 0 ? ' (GC ran: lower bound)' : clean < r.alloc.length ? ` (${clean} GC-free rounds)` : '';
    const spans = r.time[0]?.spans ?? 0;
    return [
      `${s.name} [${r.time[0]?.adapter === 'tree' ? 'pipeline-adapter.ts' : 'built-in adapter'}]`,
      fmtSummary(ev[i] as ReturnType<typeof summarize>, fmtSI),
      fmtSummary(cpu[i] as ReturnType<typeof summarize>, (x) => x.toFixed(0)),
      fmtSummary(al[i] as ReturnType<typeof summarize>, (x) => x.toFixed(0)) + gc,
      String(spans),
      (spans ? (r.time[0]?.otlpBytes ?? 0) / spans : 0).toFixed(0),
    ];
  });
  rows.push([
    'ratio working tree / base (medians)',
    fmtRatio(ratio(ev[1]?.median ?? NaN, ev[0]?.median ?? NaN)),
    fmtRatio(ratio(cpu[1]?.median ?? NaN, cpu[0]?.median ?? NaN)),
    fmtRatio(ratio(al[1]?.median ?? NaN, al[0]?.median ?? NaN)),
    '',
    '',
  ]);
  console.log(`\nSpan pipeline, one core: ${set.records} captured events replayed (decode -> correlate -> SDK sink -> OTLP protobuf, bytes counted), ${rounds} rounds interleaved, median (min..max)`);
  console.log(table(['side', 'events/s', 'CPU ns/event', 'heap B allocated/event', 'spans/run', 'OTLP B/span'], rows));
  console.log(
    JSON.stringify({
      bench: 'correlator',
      base: baseRev,
      head: headRev,
      dirty,
      records: set.records,
      rounds,
      sides: sides.map((s, i) => ({ name: s.name, time: res[i]?.time, alloc: res[i]?.alloc })),
      ratio: { eventsPerSec: ratio(ev[1]?.median ?? NaN, ev[0]?.median ?? NaN), bytesPerEvent: ratio(al[1]?.median ?? NaN, al[0]?.median ?? NaN) },
    }),
  );
} finally {
  cleanup();
}
