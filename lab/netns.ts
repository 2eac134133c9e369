// Network namespaces, veth pairs and the node bridge, driven through iproute2.
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { inNetns, run } from './exec.ts';

export const NETNS_DIR = '/run/netns';
export const BRIDGE = 'br0';

export const netnsPath = (name: string): string => `${NETNS_DIR}/${name}`;

/** Inode of the namespace behind /run/netns/<name> (what /proc/<pid>/ns/net links to). */
export const netnsInode = (name: string): number => statSync(netnsPath(name)).ino;

/** Names of the namespaces belonging to a lab: `<prefix>-...`. */
export function listLabNetns(prefix: string): string[] {
  try {
    return readdirSync(NETNS_DIR).filter((n) => n.startsWith(`${prefix}-`));
  } catch {
    return [];
  }
}

export async function netnsPids(name: string): Promise<number[]> {
  try {
    const out = await run('ip', ['netns', 'pids', name]);
    return out.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return []; // namespace already gone
  }
}

/** Pids of every process in any of these namespaces: one pass over /proc, as `ip netns pids` makes for one. */
export function pidsInNetns(names: readonly string[]): number[] {
  const inodes = new Set<number>();
  for (const n of names) {
    try {
      inodes.add(netnsInode(n));
    } catch {
      // already gone
    }
  }
  const pids: number[] = [];
  if (inodes.size === 0) return pids;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${d}/ns/net`));
      if (m && inodes.has(Number(m[1]))) pids.push(Number(d));
    } catch {
      // exited, or a kernel thread
    }
  }
  return pids;
}

export async function deleteNetns(name: string): Promise<void> {
  try {
    await run('ip', ['netns', 'del', name]);
  } catch (e) {
    if (existsNetns(name)) throw e; // otherwise: already gone
  }
}

function existsNetns(name: string): boolean {
  try {
    statSync(netnsPath(name));
    return true;
  } catch {
    return false;
  }
}

/** `ip -n <ns> ...` */
export const ip = (ns: string, ...args: string[]): Promise<string> => run('ip', ['-n', ns, ...args]);

/** `ip -n <ns> -batch -`: one process for many commands (a lab builds hundreds of links) */
export const ipBatch = (ns: string, lines: readonly string[]): Promise<string> => run('ip', ['-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });

export async function addNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'add', name]);
  // IPv6 off: router solicitations and MLD reports would only add noise to traced links.
  await inNetns(name, 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await ip(name, 'link', 'set', 'lo', 'up');
}

export async function addBridge(ns: string, cidr: string, name = BRIDGE): Promise<void> {
  await ipBatch(ns, [`link add ${name} type bridge`, `addr add ${cidr} dev ${name}`, `link set ${name} up`]);
}

export interface PodLink {
  nodeNs: string;
  podNs: string;
  hostVeth: string;
  /** Pod address with prefix length, e.g. 10.244.1.10/24. */
  cidr: string;
  gateway: string;
  /** the Linux bridge the host end joins (default br0) */
  bridge?: string;
  /** both ends' MTU (an overlay's pods get less than 1500) */
  mtu?: number;
  /** joins the host end to something other than a Linux bridge (an OVS port) instead of `master` */
  attach?: (hostVeth: string) => Promise<void>;
}

/** A CNI-style veth: the pod end is eth0 in the pod netns, the host end is a port of the bridge. */
export async function addPodLink(l: PodLink): Promise<void> {
  const mtu = l.mtu ? ` mtu ${l.mtu}` : '';
  const add = `link add ${l.hostVeth}${mtu} type veth peer name eth0${mtu} netns ${l.podNs}`;
  if (l.attach) {
    await ip(l.nodeNs, ...add.split(' '));
    await l.attach(l.hostVeth);
    await ip(l.nodeNs, 'link', 'set', l.hostVeth, 'up');
  } else {
    await ipBatch(l.nodeNs, [add, `link set ${l.hostVeth} master ${l.bridge ?? BRIDGE} up`]);
  }
  await ipBatch(l.podNs, [`addr add ${l.cidr} dev eth0`, 'link set eth0 up', `route add default via ${l.gateway}`]);
}
