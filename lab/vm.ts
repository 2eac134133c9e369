// The project's VM for other kernels (scripts/vm.sh): Debian's kernels under qemu (TCG), the
// bookworm rootfs over 9p, this checkout read-only at its own path, so the agent built on this
// host (Node 24 from node_modules, build/Release/strata_native.node) runs unchanged in the guest.
// runInVm boots one kernel, runs a shell script as the guest's job and hands back what it left:
// exit code, stdout, stderr, the serial console and the files it wrote to $STRATA_VM_OUT.
// The qemu process and the output directory are gone when it returns or throws.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { STRATA_ERR_VM_BUILD, STRATA_ERR_VM_CRASH, STRATA_ERR_VM_TIMEOUT, StrataError } from '../agent/src/errors.ts';

const ROOT = resolve(import.meta.dirname, '..');
const VM_SH = join(ROOT, 'scripts/vm.sh');
/** what vm.sh writes into the output share itself; everything else there is the job's */
const OWN_FILES = new Set(['job.sh', 'stdout', 'stderr', 'exit-code']);
/**
 * Booting, powering off and qemu's start, over the job's own deadline. Measured under TCG on
 * this 2-vCPU machine: the guest's init ran the job 4-16 s after qemu started (load 2.5 to 9),
 * power-off under 1 s; the margin covers a machine loaded by other builds.
 */
export const VM_BOOT_ALLOWANCE_MS = 90_000;

export interface VmKernel {
  /** the id vm.sh knows it by: 5.10, 6.1, 6.12, 7.x */
  kernel: string;
  /** uname -r in the guest */
  release: string;
  /** its cache directory (vmlinuz, config, modules, initrd) */
  dir: string;
}

export interface VmRunOptions {
  kernel: string;
  /** sh script run as root in the guest, in this checkout; $STRATA_VM_OUT is where files go back */
  script: string;
  /** the job's deadline, kept by the guest (the job is killed: exit code 124) */
  timeoutMs: number;
  /** the host kills qemu after this long (default: timeoutMs + VM_BOOT_ALLOWANCE_MS) */
  vmTimeoutMs?: number;
  memMiB?: number;
  /** vCPUs (vm.sh's default: 1) */
  smp?: number;
}

export interface VmResult {
  kernel: string;
  /** the job's exit code (124: its deadline passed in the guest) */
  exitCode: number;
  stdout: string;
  stderr: string;
  /** the serial console: kernel messages and the guest init's lines */
  console: string;
  /** what the job wrote under $STRATA_VM_OUT, by relative path (utf8) */
  files: Record<string, string>;
  /** from qemu's start until it exited */
  durationMs: number;
  /** guest uptime when its init started the job, as the console says it */
  bootS: number | undefined;
  /** the output share on the host (removed by the time runInVm returns or throws; errors carry it in detail.outDir) */
  outDir: string;
}

/** vm.sh's kernel ids. */
export async function vmKernels(): Promise<string[]> {
  const { code, stdout, stderr } = await sh(['kernels'], 10_000);
  if (code !== 0) throw new StrataError(STRATA_ERR_VM_BUILD, `scripts/vm.sh kernels failed: ${stderr.trim()}`, 1);
  return stdout.split('\n').filter(Boolean);
}

/**
 * Builds (or finds cached) the rootfs, the kernels and their initramfs. Cold: minutes (a Debian
 * rootfs, ~400 MB of kernel packages per kernel); warm: under a second.
 */
export async function buildVm(kernels: string[], timeoutMs = 30 * 60_000): Promise<VmKernel[]> {
  const { code, stdout, stderr, timedOut } = await sh(['build', ...kernels], timeoutMs);
  if (code !== 0 || timedOut) {
    const tail = stderr.trim().split('\n').slice(-15).join('\n');
    throw new StrataError(STRATA_ERR_VM_BUILD, `scripts/vm.sh build ${kernels.join(' ')} ${timedOut ? `took longer than ${timeoutMs} ms` : `exited with ${code}`}:\n${tail}`, 1);
  }
  return stdout.split('\n').filter(Boolean).map((l) => {
    const [kernel = '', release = '', dir = ''] = l.split('\t');
    return { kernel, release, dir };
  });
}

/** Boots o.kernel, runs o.script, powers off. Throws STRATA_ERR_VM_TIMEOUT or STRATA_ERR_VM_CRASH with the console's tail. */
export async function runInVm(o: VmRunOptions): Promise<VmResult> {
  const out = mkdtempSync(join(tmpdir(), 'strata-vm-'));
  try {
    const args = ['run', o.kernel, '-c', o.script, '--out', out, '--timeout', String(Math.ceil(o.timeoutMs / 1000))];
    if (o.memMiB) args.push('--mem', String(o.memMiB));
    if (o.smp) args.push('--smp', String(o.smp));
    const started = Date.now();
    const vmTimeoutMs = o.vmTimeoutMs ?? o.timeoutMs + VM_BOOT_ALLOWANCE_MS;
    const r = await sh(args, vmTimeoutMs);
    const durationMs = Date.now() - started;
    const detail = { outDir: out, console: r.stdout };
    const consoleTail = () => `\n--- console (last lines) ---\n${r.stdout.trim().split('\n').slice(-25).join('\n')}\n--- qemu/vm.sh stderr ---\n${r.stderr.trim().split('\n').slice(-10).join('\n')}`;
    if (r.timedOut) {
      throw new StrataError(STRATA_ERR_VM_TIMEOUT, `VM ${o.kernel}: no power-off within ${vmTimeoutMs} ms (the job's deadline: ${o.timeoutMs} ms); qemu killed${consoleTail()}`, 1, detail);
    }
    let exit: string;
    try {
      exit = readFileSync(join(out, 'exit-code'), 'utf8');
    } catch {
      throw new StrataError(STRATA_ERR_VM_CRASH, `VM ${o.kernel}: qemu exited (${r.code}) without the job's exit code (kernel panic, or the guest's init failed)${consoleTail()}`, 1, detail);
    }
    const read = (f: string) => {
      try {
        return readFileSync(join(out, f), 'utf8');
      } catch {
        return '';
      }
    };
    const files: Record<string, string> = {};
    for (const f of walk(out)) {
      const rel = relative(out, f);
      if (!OWN_FILES.has(rel)) files[rel] = readFileSync(f, 'utf8');
    }
    const boot = /strata-vm: guest up at ([\d.]+) s/.exec(r.stdout)?.[1];
    return {
      kernel: o.kernel, exitCode: Number(exit.trim()), stdout: read('stdout'), stderr: read('stderr'), console: r.stdout, files, durationMs,
      bootS: boot === undefined ? undefined : Number(boot), outDir: out,
    };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

interface ShResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * bash scripts/vm.sh ARGS in a process group of its own (vm.sh execs qemu): at the deadline, or
 * if this process exits first, the whole group is killed, so no qemu outlives the caller.
 */
function sh(args: string[], timeoutMs: number): Promise<ShResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('bash', [VM_SH, ...args], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    process.on('exit', killGroup);
    child.on('error', (e) => {
      clearTimeout(timer);
      process.off('exit', killGroup);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      process.off('exit', killGroup);
      // anything qemu may have left in the group (nothing, normally) goes with it
      killGroup();
      resolvePromise({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), timedOut });
    });
  });
}
