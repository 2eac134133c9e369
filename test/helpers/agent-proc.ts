// Runs the agent as a child process (the way it runs in a pod) and waits for its ready line.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AGENT_NODE_FLAGS } from '../../agent/src/runtime-flags.ts';

const CLI = fileURLToPath(new URL('../../agent/src/cli.ts', import.meta.url));

export interface AgentProc {
  child: ChildProcess;
  metricsPort: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** the agent's ready line */
  ready: () => Record<string, unknown>;
}

/**
 * `agent ...args` on the CLI, with node (and its arguments) as `prefix` runs it (e.g. unshare,
 * taskset); `cli`: another entry point (scripts/build-js.ts's dist/src/cli.js)
 */
export const agentCommand = (args: string[], cli = CLI): string[] => [process.execPath, ...AGENT_NODE_FLAGS, cli, 'agent', ...args];

/** agentCommand for a test: without CPU-budget shedding unless the test sets `shedding.*` (below) */
export const testAgentCommand = (args: string[], cli = CLI): string[] => agentCommand([...args, ...noShedding(args)], cli);

/**
 * Tests count requests exactly, on a machine whose load they do not control: the CPU-budget
 * controller (default 0.5 cores) would shed whole requests whenever a test's burst and the
 * machine's other work push the agent past it (the skeleton's garbage requests were shed in 1 run
 * of 6 so). An agent started here never sheds unless the test sets `shedding.*` itself (the
 * shedding and outage tests do, to test the controller).
 */
function noShedding(args: string[]): string[] {
  return args.some((a) => a.startsWith('shedding.')) ? [] : ['--set', 'shedding.cpuBudget=0'];
}

/**
 * Spawns `cmd` (a command that ends up exec'ing the agent: agentCommand(), maybe behind unshare or
 * taskset) and resolves at its ready line; rejects when it exits first or after timeoutMs.
 * `stderrMax` keeps only the tail of stderr (long runs).
 */
export async function spawnAgent(cmd: string[], timeoutMs = 90_000, stderrMax = Infinity): Promise<AgentProc> {
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > stderrMax) err = err.slice(-stderrMax);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent not ready after ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as Record<string, unknown>);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`agent exited (${code ?? signal}) before ready: ${err}`));
    });
  }).catch((e: unknown) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw e;
  });
  return { child, metricsPort: Number(ready.metricsPort), stderr: () => err, exited, ready: () => ready };
}

export function startAgent(args: string[], timeoutMs = 90_000): Promise<AgentProc> {
  return spawnAgent(testAgentCommand(args), timeoutMs);
}

export async function stopAgent(a: AgentProc, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill(signal);
  return a.exited;
}

/** One metric's value from the Prometheus text format (sum over label sets matching `labels`). */
export function metricValue(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name && (!labels || (m[2] ?? '').includes(labels))) sum += Number(m[3]);
  }
  return sum;
}

/** Whether the process holds a BPF_ENABLE_STATS file descriptor (the kernel names it anon_inode:bpf-stats). */
export function holdsBpfStatsFd(pid: number): boolean {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:bpf-stats') return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}
