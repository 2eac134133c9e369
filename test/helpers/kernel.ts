// Gate for tests that need root, the real kernel and Debian packages. Under CI=true a missing
// prerequisite fails the test; elsewhere it skips and says why.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';

export function missingPrerequisites(needs: { nginx?: boolean } = {}): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (BPF, netns, TC)';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'needs a kernel with BTF (/sys/kernel/btf/vmlinux)';
  if (!existsSync('/sys/kernel/tracing/events') && !existsSync('/sys/kernel/debug/tracing/events')) return 'needs tracefs mounted (scripts/setup.sh mounts it)';
  if (!existsSync(new URL('../../build/Release/strata_native.node', import.meta.url))) return 'native addon not built (npm run build)';
  if (needs.nginx && !existsSync('/usr/sbin/nginx')) return 'needs nginx (apt nginx; scripts/setup.sh installs it)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'needs iproute2';
  }
  return undefined;
}

/** Returns true when the test may run; skips (or fails under CI=true) otherwise. */
export function requireKernel(t: TestContext, needs: { nginx?: boolean } = {}): boolean {
  return gate(t, missingPrerequisites(needs));
}

/** true when nothing is missing (why undefined); else skips saying why, or fails under CI=true */
export function gate(t: TestContext, why: string | undefined): boolean {
  if (!why) return true;
  if (process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
  t.skip(why);
  return false;
}

/**
 * The BPF programs a process holds (prog_id of its BPF fds, from /proc/<pid>/fdinfo): what one
 * agent loaded, apart from other agents and tests on the same machine.
 */
export function progIdsOf(pid: number): number[] {
  const ids = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^prog_id:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return [...ids].sort((a, b) => a - b);
}

/** Which of these program ids the kernel still has loaded. */
export function stillLoaded(ids: readonly number[]): number[] {
  const out = execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const loaded = new Set((JSON.parse(out) as { id: number }[]).map((p) => p.id));
  return ids.filter((id) => loaded.has(id));
}

/** TC filters on an interface inside a netns (ingress + egress), as `tc` prints them. */
export function tcFilters(netns: string, ifname: string): string {
  const show = (dir: string) => {
    try {
      return execFileSync('ip', ['netns', 'exec', netns, 'tc', 'filter', 'show', 'dev', ifname, dir], { encoding: 'utf8' });
    } catch {
      return '';
    }
  };
  return (show('ingress') + show('egress')).trim();
}
