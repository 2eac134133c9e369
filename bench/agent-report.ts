// Pure helpers for bench/agent.ts: parsers of the Debian load generators' output (wrk, hey,
// iperf3 -J), /proc/<pid>/stat CPU ticks, and the markdown table of the results file. No I/O
// here, so test/unit/bench-agent-report.test.ts covers all of it.

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  /** latency percentiles in microseconds (wrk --latency: 50, 75, 90, 99) */
  latencyUs: Record<string, number>;
  /** non-2xx/3xx responses plus socket errors */
  errors: number;
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };

/** "1.23ms" -> 1230 (microseconds); NaN when not a wrk duration */
export function wrkDurationUs(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(s.trim());
  return m ? Number(m[1]) * (UNIT_US[m[2]] ?? Number.NaN) : Number.NaN;
}

/** Parses `wrk --latency` text output. Throws when the summary line is missing. */
export function parseWrk(out: string): WrkResult {
  const sum = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  if (!sum) throw new Error(`wrk output without a summary line:\n${out}`);
  const requests = Number(sum[1]);
  const durationS = wrkDurationUs(`${sum[2]}${sum[3]}`) / 1e6;
  const rpsM = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const latencyUs: Record<string, number> = {};
  const dist = out.split('Latency Distribution')[1] ?? '';
  for (const m of dist.matchAll(/^\s+(\d+(?:\.\d+)?)%\s+(\S+)\s*$/gm)) latencyUs[m[1]] = wrkDurationUs(m[2]);
  let errors = 0;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  if (non2xx) errors += Number(non2xx[1]);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  if (sock) errors += Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]);
  return { requests, durationS, rps: rpsM ? Number(rpsM[1]) : requests / durationS, latencyUs, errors };
}

export interface HeyResult {
  rps: number;
  /** responses counted in the status code distribution */
  responses: number;
  /** latency percentiles in microseconds (hey: 10, 25, 50, 75, 90, 95, 99) */
  latencyUs: Record<string, number>;
  /** non-2xx responses plus lines of the error distribution */
  errors: number;
}

/** Parses hey's default text report. Throws when the summary is missing. */
export function parseHey(out: string): HeyResult {
  const rpsM = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rpsM) throw new Error(`hey output without Requests/sec:\n${out}`);
  const latencyUs: Record<string, number> = {};
  for (const m of out.matchAll(/^\s+(\d+(?:\.\d+)?)% in ([\d.]+) secs/gm)) latencyUs[m[1]] = Number(m[2]) * 1e6;
  let responses = 0;
  let errors = 0;
  for (const m of out.matchAll(/^\s+\[(\d+)\]\s+(\d+) responses/gm)) {
    responses += Number(m[2]);
    if (!m[1].startsWith('2')) errors += Number(m[2]);
  }
  const errDist = out.split('Error distribution:')[1];
  if (errDist) for (const m of errDist.matchAll(/^\s+\[(\d+)\]/gm)) errors += Number(m[1]);
  return { rps: Number(rpsM[1]), responses, latencyUs, errors };
}

export interface IperfResult {
  /** receiver-side goodput */
  bitsPerSecond: number;
  retransmits: number;
}

/** Parses `iperf3 -J` of the client: end.sum_received (what arrived), sum_sent retransmits. */
export function parseIperf(json: string): IperfResult {
  const j = JSON.parse(json) as {
    error?: string;
    end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } };
  };
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const bps = j.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error('iperf3 -J output without end.sum_received');
  return { bitsPerSecond: bps, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
}

/** utime + stime (clock ticks) from the text of /proc/<pid>/stat; comm may hold spaces. */
export function statCpuTicks(statText: string): number {
  const rest = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
  // after ") ": state is field 3, utime field 14, stime field 15 (1-based, proc(5))
  return Number(rest[11]) + Number(rest[12]);
}

/** VmRSS in bytes from the text of /proc/<pid>/status; NaN when absent. */
export function statusRssBytes(statusText: string): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(statusText);
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** Markdown pipe escaping: cells are user text (interface names, figures with '|') */
const mdCell = (s: string) => s.replace(/\|/g, '\\|');

/** A GitHub-flavoured markdown table, first column left-aligned, the others right-aligned. */
export function mdTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${header.map((_, i) => mdCell(cells[i] ?? '')).join(' | ')} |`;
  const rule = `|${header.map((_, i) => (i === 0 ? ':---' : '---:')).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

/** Whether a ratio meets a goal; "n/a" when it could not be measured. */
export function goalMet(r: number, goal: number, higherIsBetter = true): 'met' | 'not met' | 'n/a' {
  if (!Number.isFinite(r)) return 'n/a';
  return (higherIsBetter ? r >= goal : r <= goal) ? 'met' : 'not met';
}

/** A filesystem-safe ISO timestamp: 2026-12-02T04-31-07Z */
export function fileStamp(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

export interface BpfProgCost {
  runs: number;
  ns: number;
}

/**
 * Per BPF program, its run count and kernel run time (ns) from the agent's Prometheus text
 * (strata_bpf_runs_total, strata_bpf_run_time_seconds_total, label program).
 */
export function parseBpfPrograms(metricsText: string): Record<string, BpfProgCost> {
  const out: Record<string, BpfProgCost> = {};
  const at = (p: string) => (out[p] ??= { runs: 0, ns: 0 });
  for (const m of metricsText.matchAll(/^strata_bpf_(runs_total|run_time_seconds_total)\{program="([^"]+)"\} (\S+)$/gm)) {
    const v = Number(m[3]);
    if (m[1] === 'runs_total') at(m[2] as string).runs += v;
    else at(m[2] as string).ns += Math.round(v * 1e9);
  }
  return out;
}

/** after - before, per program (a program absent before counts from 0), divided by `per` */
export function bpfDelta(before: Record<string, BpfProgCost>, after: Record<string, BpfProgCost>, per: number): Record<string, BpfProgCost> {
  const out: Record<string, BpfProgCost> = {};
  for (const [p, a] of Object.entries(after)) {
    const b = before[p] ?? { runs: 0, ns: 0 };
    const d = { runs: (a.runs - b.runs) / per, ns: (a.ns - b.ns) / per };
    if (d.runs > 0 || d.ns > 0) out[p] = d;
  }
  return out;
}
