// A node whose bridge is Open vSwitch with the userspace datapath (datapath_type=netdev): this
// kernel has no openvswitch module (../shared/platform.md, "Open vSwitch"). Each OVS node runs its
// own ovsdb-server and ovs-vswitchd inside the node's netns (a netdev datapath opens its ports in
// the netns it runs in), with every socket, database and log under the lab's state dir, so labs
// and other OVS instances on this machine never share anything. The bridge's internal port (a tap
// device in the node netns) holds the pods' gateway address. Teardown is the lab's: the processes
// are in the lab's cgroups and the node netns, and the tap devices go with the netns.
// Gotcha handled here: TCP through the userspace datapath needs transmit checksum offload off in
// each pod (`ethtool -K eth0 tx off`), else the checksums stay partial and SYNs are retransmitted.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { inNetns, run, waitFor } from '../exec.ts';
import { ip } from '../netns.ts';

export const OVS_BIN = {
  dbServer: '/usr/sbin/ovsdb-server',
  vswitchd: '/usr/sbin/ovs-vswitchd',
  vsctl: '/usr/bin/ovs-vsctl',
  dbTool: '/usr/bin/ovsdb-tool',
} as const;
const OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const START_TIMEOUT_MS = 20_000;

/** Why OVS cannot be used here, or undefined when it can. */
export function ovsMissing(): string | undefined {
  for (const [what, path] of [...Object.entries(OVS_BIN), ['schema', OVS_SCHEMA]]) {
    if (!existsSync(path as string)) return `Open vSwitch is not installed (${what}: ${path} missing; scripts/setup.sh installs openvswitch-switch)`;
  }
  return undefined;
}

/** how the lab starts a long-lived process in a netns (its cgroup, its log, its pid record) */
export type StartProcess = (name: string, netns: string, cmd: string, args: string[], env: Record<string, string>) => { pid: number; exited: () => unknown };

export interface OvsBridge {
  /** the dir holding db, sockets and logs */
  dir: string;
  /** adds a pod's host veth as a port */
  addPort: (ifname: string) => Promise<void>;
}

/**
 * Starts ovsdb-server and ovs-vswitchd for one node and creates `bridge` (netdev datapath) with
 * `cidr` on its internal port, up. Resolves once the bridge device exists in the node netns.
 */
export async function startOvsBridge(o: { node: string; netns: string; dir: string; bridge: string; cidr: string; start: StartProcess }): Promise<OvsBridge> {
  mkdirSync(o.dir, { recursive: true });
  const db = join(o.dir, 'conf.db');
  const sock = join(o.dir, 'db.sock');
  // OVS_RUNDIR: vswitchd's per-bridge OpenFlow sockets (<bridge>.mgmt) go there, not /var/run/openvswitch
  const env = { OVS_RUNDIR: o.dir, OVS_DBDIR: o.dir, OVS_LOGDIR: o.dir };
  const vsctl = (...args: string[]) => run(OVS_BIN.vsctl, [`--db=unix:${sock}`, '--timeout=20', ...args]);
  await run(OVS_BIN.dbTool, ['create', db, OVS_SCHEMA]);
  const dbServer = o.start(`${o.node}-ovsdb-server`, o.netns, OVS_BIN.dbServer, [
    db, `--remote=punix:${sock}`, `--unixctl=${join(o.dir, 'ovsdb-server.ctl')}`, `--log-file=${join(o.dir, 'ovsdb-server.log')}`,
  ], env);
  const dead = (what: string, p: { exited: () => unknown }) => () => (p.exited() ? `${what} exited; see ${o.dir}` : undefined);
  await waitFor(`ovsdb-server of ${o.node} (${sock})`, () => existsSync(sock), { timeoutMs: START_TIMEOUT_MS, abort: dead('ovsdb-server', dbServer) });
  await vsctl('--no-wait', 'init');
  const vswitchd = o.start(`${o.node}-ovs-vswitchd`, o.netns, OVS_BIN.vswitchd, [
    `unix:${sock}`, `--unixctl=${join(o.dir, 'ovs-vswitchd.ctl')}`, `--log-file=${join(o.dir, 'ovs-vswitchd.log')}`,
  ], env);
  // without --no-wait, vsctl returns once vswitchd has applied it: the bridge device exists
  await vsctl('add-br', o.bridge, '--', 'set', 'bridge', o.bridge, 'datapath_type=netdev').catch((e: Error) => {
    throw new Error(`${e.message}${vswitchd.exited() ? ` (ovs-vswitchd exited; see ${o.dir})` : ''}`);
  });
  await ip(o.netns, 'addr', 'add', o.cidr, 'dev', o.bridge);
  await ip(o.netns, 'link', 'set', o.bridge, 'up');
  // --no-wait: vswitchd applies ports one reconfiguration at a time (slow when a dozen arrive at
  // once); the pod's readiness probe crosses the bridge, so it waits for the port anyway
  return { dir: o.dir, addPort: async (ifname) => void (await vsctl('--no-wait', 'add-port', o.bridge, ifname)) };
}

/** transmit checksum offload off on a pod's eth0 (the userspace datapath does not complete checksums) */
export async function ovsPodFixup(podNetns: string): Promise<void> {
  await inNetns(podNetns, 'ethtool', ['-K', 'eth0', 'tx', 'off']);
}
