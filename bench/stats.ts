// Pure helpers for bench/run.ts: summaries over rounds, ratios, number formatting, a text
// table, BPF run-time deltas. No I/O here, so test/unit/bench-stats.test.ts covers all of it.

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median of the finite values (mean of the middle two for an even count); NaN when none. */
export function median(values: readonly number[]): number {
  const xs = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (xs.length === 0) return Number.NaN;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1 ? xs[mid] : (xs[mid - 1] + xs[mid]) / 2;
}

export function minMax(values: readonly number[]): { min: number; max: number } {
  const xs = values.filter(Number.isFinite);
  if (xs.length === 0) return { min: Number.NaN, max: Number.NaN };
  let min = xs[0];
  let max = xs[0];
  for (const x of xs) {
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return { min, max };
}

export function summarize(values: readonly number[]): Summary {
  return { median: median(values), ...minMax(values), n: values.filter(Number.isFinite).length };
}

/** a / b, NaN when either is not finite or b is 0 (a ratio to nothing is not a number). */
export function ratio(a: number, b: number): number {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return Number.NaN;
  return a / b;
}

/** 3 significant digits, at least one decimal below 10: "12.3x", "0.452x", "1234x"; "n/a". */
export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return 'n/a';
  return `${fmtSig(r)}x`;
}

/** A number with 3 significant digits; integers from 100 up are kept whole ("1234", not "1.23e+3"). */
export function fmtSig(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 100) return Math.round(x).toString();
  if (a >= 10) return x.toFixed(1);
  if (a >= 1 || a === 0) return x.toFixed(a === 0 ? 0 : 2);
  return x.toPrecision(3);
}

/** SI prefixes for rates and counts: "1.23 M", "456 k", "12.0". */
export function fmtSI(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  const a = Math.abs(x);
  if (a >= 1e9) return `${fmtSig(x / 1e9)} G`;
  if (a >= 1e6) return `${fmtSig(x / 1e6)} M`;
  if (a >= 1e3) return `${fmtSig(x / 1e3)} k`;
  return fmtSig(x);
}

/** A fraction (0..1) as a percentage: "12.3 %", "0 %", "0.0123 %". */
export function fmtPct(fraction: number): string {
  if (!Number.isFinite(fraction)) return 'n/a';
  return `${fmtSig(fraction * 100)} %`;
}

/** "median (min..max)", or just the value when every round agrees. */
export function fmtSummary(s: Summary, fmt: (x: number) => string = fmtSig): string {
  if (s.n === 0) return 'n/a';
  const m = fmt(s.median);
  const lo = fmt(s.min);
  const hi = fmt(s.max);
  return lo === hi ? m : `${m} (${lo}..${hi})`;
}

/** Left-aligned first column, right-aligned others, a rule under the header. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cols = header.length;
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    Array.from({ length: cols }, (_, i) => {
      const c = cells[i] ?? '';
      return i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]);
    })
      .join('  ')
      .trimEnd();
  const rule = width.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** Variants in round r: forward on even rounds, reversed on odd ones, so drift cancels. */
export function roundOrder<T>(variants: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...variants] : [...variants].reverse();
}

export interface ProgRun {
  name: string;
  runTimeNs: number;
  runCnt: number;
}

export interface ProgDelta {
  name: string;
  runs: number;
  runTimeNs: number;
  /** NaN when the program did not run in the interval */
  nsPerRun: number;
}

/**
 * Per-program difference between two progStats() snapshots (kernel BPF run-time statistics).
 * Programs are matched by name; one missing from `before` counts from zero.
 */
export function progDeltas(before: readonly ProgRun[], after: readonly ProgRun[]): ProgDelta[] {
  const base = new Map(before.map((p) => [p.name, p]));
  return after.map((p) => {
    const b = base.get(p.name);
    const runs = p.runCnt - (b?.runCnt ?? 0);
    const runTimeNs = p.runTimeNs - (b?.runTimeNs ?? 0);
    return { name: p.name, runs, runTimeNs, nsPerRun: runs > 0 ? runTimeNs / runs : Number.NaN };
  });
}

/** a command-line flag's value as a positive integer, or an error naming the flag */
export function posInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got "${v}"`);
  return n;
}
