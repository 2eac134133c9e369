// Process records kept in the state dir, so that teardown works from the prefix alone
// (after a crash of the process that started the lab).
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './exec.ts';

export interface ProcRecord {
  name: string;
  pid: number;
  /** Kernel start time (clock ticks since boot): guards against killing a reused pid. */
  starttime: number;
  netns: string;
}

interface ProcStat {
  state: string;
  starttime: number;
}

function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: parse after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0] ?? '', starttime: Number(rest[19]) };
}

export function startTime(pid: number): number {
  const st = procStat(pid);
  if (!st) throw new Error(`process ${pid} exited right after start`);
  return st.starttime;
}

/** Alive = exists, is not a zombie, and (if given) started at the recorded time. */
export function isAlive(pid: number, starttime?: number): boolean {
  const st = procStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return starttime === undefined || st.starttime === starttime;
}

const pidDir = (stateDir: string) => join(stateDir, 'pids');

export function recordProc(stateDir: string, rec: ProcRecord): void {
  mkdirSync(pidDir(stateDir), { recursive: true });
  writeFileSync(join(pidDir(stateDir), `${rec.name}.json`), `${JSON.stringify(rec)}\n`);
}

export function readProcRecords(stateDir: string): ProcRecord[] {
  let files: string[];
  try {
    files = readdirSync(pidDir(stateDir));
  } catch {
    return [];
  }
  const recs: ProcRecord[] = [];
  for (const f of files.filter((f) => f.endsWith('.json'))) {
    try {
      recs.push(JSON.parse(readFileSync(join(pidDir(stateDir), f), 'utf8')) as ProcRecord);
    } catch {
      // A record half-written during a crash: the netns sweep still finds the process.
    }
  }
  return recs;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** SIGTERM, wait, then SIGKILL what is left. Resolves with the pids that survived both. */
export async function terminate(procs: readonly { pid: number; starttime?: number }[]): Promise<number[]> {
  const alive = () => procs.filter((p) => isAlive(p.pid, p.starttime));
  for (const p of alive()) signal(p.pid, 'SIGTERM');
  try {
    await waitFor('processes to exit after SIGTERM', () => alive().length === 0, { timeoutMs: 3000, intervalMs: 20 });
    return [];
  } catch {
    for (const p of alive()) signal(p.pid, 'SIGKILL');
  }
  try {
    await waitFor('processes to exit after SIGKILL', () => alive().length === 0, { timeoutMs: 3000, intervalMs: 20 });
  } catch {
    // reported below
  }
  return alive().map((p) => p.pid);
}
