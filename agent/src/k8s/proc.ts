// The program behind a pid, for `process.executable.name`: the basename of /proc/<pid>/exe, else of
// argv[0] from /proc/<pid>/cmdline (comm is the name of a thread, and is cut at 15 characters).
// Read once per pid (needs hostPID and CAP_SYS_PTRACE for other users' processes), bounded.
import { readFileSync, readlinkSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import type { ExecutableOf } from './topology.ts';

export function procExecutables(max: number, procRoot = '/proc'): ExecutableOf {
  const cache = new LRUCache<number, string>({ max });
  return (pid: number) => {
    const hit = cache.get(pid);
    if (hit !== undefined) return hit || undefined;
    let name = '';
    try {
      name = basename(readlinkSync(`${procRoot}/${pid}/exe`).replace(/ \(deleted\)$/, ''));
    } catch {
      try {
        const argv0 = readFileSync(`${procRoot}/${pid}/cmdline`, 'latin1').split('\0')[0] ?? '';
        // a process may rewrite its argv into one line ("nginx: worker process")
        name = basename(argv0.split(' ')[0] ?? '').replace(/:$/, '');
      } catch {
        // gone already, or not ours to read: the caller falls back to comm
      }
    }
    cache.set(pid, name);
    return name || undefined;
  };
}

function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}
