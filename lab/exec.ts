// Running commands: plain, inside a network namespace, and detached long-lived processes.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
}

/** Runs a command to completion; resolves with stdout, rejects with a clear error on failure. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 30_000,
      killSignal: 'SIGKILL',
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    child.on('error', (e) => reject(new Error(`${formatCmd(cmd, args)}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(Buffer.concat(out).toString());
      const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
      const stderr = Buffer.concat(err).toString().trim();
      reject(new Error(`${formatCmd(cmd, args)} ${why}${stderr ? `: ${stderr}` : ''}`));
    });
  });
}

/** Runs `cmd args` inside the named network namespace (`ip netns exec`). */
export function inNetns(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<string> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

export interface Detached {
  pid: number;
  /** Set once the process has exited (it is our child, so we can observe that). */
  exited: () => { code: number | null; signal: string | null } | undefined;
}

/**
 * Starts a long-lived process in a netns, in its own session, with stdout/stderr appended to
 * logFile so it never holds the caller's stdio (a test runner waits for those to close).
 * `ip netns exec` execs the command, so the returned pid is the command's own pid.
 */
export function spawnDetached(ns: string, cmd: string, args: readonly string[], logFile: string): Detached {
  return spawnDetachedCmd('ip', ['netns', 'exec', ns, cmd, ...args], logFile);
}

/** spawnDetached for any command line (one that execs into the long-lived process keeps its pid). */
export function spawnDetachedCmd(cmd: string, args: readonly string[], logFile: string): Detached {
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    if (child.pid === undefined) throw new Error(`could not start ${formatCmd(cmd, args)}`);
    let status: { code: number | null; signal: string | null } | undefined;
    child.on('exit', (code, signal) => {
      status = { code, signal };
    });
    child.on('error', () => {});
    child.unref();
    return { pid: child.pid, exited: () => status };
  } finally {
    closeSync(fd);
  }
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Checked before each poll: a message here means waiting longer is pointless. */
  abort?: () => string | undefined;
}

/** Polls `check` until it returns true (errors count as false) or the deadline passes. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  { timeoutMs = 10_000, intervalMs = 50, abort }: WaitOptions = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const fatal = abort?.();
    if (fatal) throw new Error(`gave up waiting for ${what}: ${fatal}`);
    try {
      if (await check()) return;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

function formatCmd(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].join(' ');
}
