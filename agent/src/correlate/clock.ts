// Time: BPF timestamps are CLOCK_MONOTONIC; spans need wall-clock time. The offset is measured once
// per batch (the agent reads both clocks back to back in the addon), so the spans of one local
// trace may be converted with slightly different offsets: nest() keeps children inside parents.
import type { ExchangeRecord, HopRecord, WallTime } from './records.ts';

export type WallClock = (monoNs: number) => WallTime;

/**
 * mono -> wall with an offset measured now (CLOCK_MONOTONIC is what bpf_ktime_get_ns reads).
 * `pair` reads both clocks back to back (the agent uses the native clockPair, per batch);
 * without it, the process start time plus the monotonic clock stand in.
 */
export function measureWallClock(pair?: { realtimeNs: bigint; monotonicNs: bigint }): WallClock {
  const mono = pair?.monotonicNs ?? process.hrtime.bigint();
  const wallNs = pair?.realtimeNs ?? BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  const off = wallNs - mono;
  const offSec = Number(off / 1_000_000_000n);
  const offNs = Number(off % 1_000_000_000n);
  return (monoNs: number) => {
    const ns = (monoNs % 1e9) + offNs;
    const sec = Math.floor(monoNs / 1e9) + offSec + Math.floor(ns / 1e9);
    return [sec, ns % 1e9];
  };
}

export const wallLess = (a: WallTime, b: WallTime): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/**
 * Keeps every span of one local trace inside its parent on this node (exchange in exchange, hop in
 * its exchange). Returns how many times were moved.
 */
export function nest(records: ExchangeRecord[]): number {
  let clamps = 0;
  const clamp = (x: { start: WallTime; end: WallTime }, p: { start: WallTime; end: WallTime }) => {
    if (wallLess(x.start, p.start)) {
      x.start = p.start;
      clamps++;
    }
    if (wallLess(p.end, x.end)) {
      x.end = p.end;
      clamps++;
    }
    if (wallLess(x.end, x.start)) x.end = x.start;
  };
  if (records.length > 1) {
    const byId = new Map<string, ExchangeRecord>();
    for (let i = 0; i < records.length; i++) byId.set((records[i] as ExchangeRecord).spanId, records[i] as ExchangeRecord);
    for (let i = 0; i < records.length; i++) {
      const x = records[i] as ExchangeRecord;
      const p = x.parentSpanId ? byId.get(x.parentSpanId) : undefined;
      if (p && p !== x) clamp(x, p);
    }
  }
  for (let i = 0; i < records.length; i++) {
    const x = records[i] as ExchangeRecord;
    for (let j = 0; j < x.hops.length; j++) clamp(x.hops[j] as HopRecord, x);
  }
  return clamps;
}
