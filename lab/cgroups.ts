// Kubelet-style cgroups for the lab's pods, on this host's layout: the kubelet's cgroupfs driver puts
// a container at kubepods/<qos>/pod<uid>/<container id> in every hierarchy. The lab does the same
// under a parent of its own, <prefix>.lab, in the cgroup v2 hierarchy (whose ids the BPF programs
// see) and, on a hybrid host (v1 controllers plus v2 "unified", like this VM), in the v1 pids and
// name=systemd hierarchies too. Processes are placed before they exec, so their children (NGINX's
// workers) are born inside. labDown kills what is left in them and removes them, also after a crash.
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, rmdirSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Mount points of the hierarchies the lab uses: the cgroup2 one, and the v1 pids and name=systemd ones if mounted. */
export function hierarchies(): { v2?: string; all: string[] } {
  let mounts: string[][];
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '));
  } catch {
    return { all: [] };
  }
  const v2 = mounts.find((m) => m[2] === 'cgroup2')?.[1];
  const v1 = mounts.filter((m) => m[2] === 'cgroup' && /(^|,)(pids|name=systemd)(,|$)/.test(m[3] ?? '')).map((m) => m[1] as string);
  return { v2, all: [...(v2 ? [v2] : []), ...v1] };
}

const labHierarchies = (): string[] => hierarchies().all;

/** the lab's parent cgroup (relative to each hierarchy's root) */
export const labCgroupParent = (prefix: string): string => `/${prefix}.lab`;

/**
 * kubepods/besteffort/pod<uid>/<container id> under the lab's parent, or under the lab's parent's
 * <node> when the lab has several nodes (each node's kubelet its own kubepods, as kind nests them)
 */
export const containerCgroup = (prefix: string, podUid: string, containerId: string, node?: string): string =>
  `${labCgroupParent(prefix)}${node ? `/${node}` : ''}/kubepods/besteffort/pod${podUid}/${containerId}`;

/** a container ID as runtimes make them: 64 hex */
export const newContainerId = (): string => randomBytes(32).toString('hex');

/** Creates the cgroup in every hierarchy the lab uses; returns its cgroup v2 id (0 without cgroup2). */
export function makeCgroup(rel: string): number {
  const hs = hierarchies();
  if (hs.all.length === 0) throw new Error('no cgroup hierarchy mounted (/proc/self/mounts)');
  for (const h of hs.all) mkdirSync(join(h, rel), { recursive: true });
  return hs.v2 ? statSync(join(hs.v2, rel)).ino : 0;
}

/**
 * `cmd args` run through a shell that first moves itself into the cgroup in every hierarchy, then
 * execs: the pid stays the command's, and everything it forks is born in the cgroup. (Outside `ip
 * netns exec`, which mounts a fresh /sys: the cgroup mounts are not visible behind it.)
 */
export function inCgroup(rel: string, cmd: string, args: readonly string[]): [string, string[]] {
  const moves = labHierarchies().map((h) => `echo $$ > '${join(h, rel, 'cgroup.procs')}'`).join(' && ');
  return ['sh', ['-c', `${moves} && exec "$0" "$@"`, cmd, ...args]];
}

/** every pid in the lab's cgroups (any hierarchy, any depth) */
export function labCgroupPids(prefix: string): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    try {
      for (const p of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (p) pids.add(Number(p));
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
    } catch {
      // gone
    }
  };
  for (const h of labHierarchies()) walk(join(h, labCgroupParent(prefix)));
  return [...pids];
}

/** Removes the lab's cgroups, deepest first; the error names what stayed (processes still inside). */
export function removeLabCgroups(prefix: string): void {
  const left: string[] = [];
  const rm = (dir: string) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // gone
    }
    for (const e of entries) if (e.isDirectory()) rm(join(dir, e.name));
    try {
      rmdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(`${dir}: ${(e as Error).message}`);
    }
  };
  for (const h of labHierarchies()) rm(join(h, labCgroupParent(prefix)));
  if (left.length) throw new Error(`lab cgroups not removed: ${left.join('; ')}`);
}

/** Removes one cgroup (no children) from every hierarchy; already gone is fine. */
export function removeCgroupDir(rel: string): void {
  for (const h of labHierarchies()) {
    try {
      rmdirSync(join(h, rel));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}
