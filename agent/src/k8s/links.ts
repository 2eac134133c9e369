// The node's network interfaces, and news of them: `ip -d -o monitor link` (rtnetlink RTNLGRP_LINK
// events, one line per change, with the link kind) tells the attach loop at once that a veth came
// or went, running in the node's netns (nsenter --net when node.netns names one). The agent lists
// them with the addon's RTM_GETLINK dump (~70 µs); listLinks() here is the same through `ip -j -d
// link show` (a process, ~30 ms). Without iproute2 (a minimal image) the loop polls the dump.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';

const SETPRIV = '/usr/bin/setpriv';

export interface NodeLink {
  ifindex: number;
  name: string;
  /** rtnetlink's IFLA_INFO_KIND: veth, bridge, ...; undefined for physical devices */
  kind?: string;
  /** a veth's peer ifindex (in the peer's netns) */
  peerIfindex?: number;
}

export interface LinkEvent {
  ifindex: number;
  name: string;
  deleted: boolean;
  /** what `ip -d` says of the device (veth, bridge, ...); undefined when it says nothing */
  kind?: string;
  /** a veth's peer ifindex (@ifN) */
  peerIfindex?: number;
  /** performance.now() when the event was read */
  at: number;
}

/** polling interval when `ip monitor` cannot run (a dump costs ~70 µs) */
export const LINK_POLL_FALLBACK_MS = 100;

const withNetns = (netns: string, args: string[]): [string, string[]] => (netns ? ['nsenter', [`--net=${netns}`, 'ip', ...args]] : ['ip', args]);

/** The interfaces of the netns at `netns` (a path; "" = ours). */
export function listLinks(netns: string): Promise<NodeLink[]> {
  const [cmd, args] = withNetns(netns, ['-j', '-d', 'link', 'show']);
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 << 20, timeout: 10_000 }, (err, stdout) => {
      if (err) return reject(new Error(`listing the interfaces of ${netns || 'the agent\'s netns'}: ${err.message}`));
      try {
        const raw = JSON.parse(stdout) as { ifindex: number; ifname: string; link_index?: number; linkinfo?: { info_kind?: string } }[];
        resolve(raw.map((l) => ({ ifindex: l.ifindex, name: l.ifname, kind: l.linkinfo?.info_kind, peerIfindex: l.link_index })));
      } catch (e) {
        reject(new Error(`ip -j link show: ${(e as Error).message}`));
      }
    });
  });
}

// "12: vx-abc@if2: <...> ... \    link/ether ... \    veth numtxqueues ..." (ip -d -o monitor link),
// "Deleted 12: vx-abc@if2: <...>"
const LINE = /^(Deleted )?(\d+): ([^:@\s]+)(?:@(?:if(\d+)|\S+))?: /;
// -o joins the detail lines with " \    "; the third starts with the link kind (none for plain devices)
const KIND = / \\ {4}link\/\S+ [^\\]*\\ {4}([a-z][a-z0-9_]*) /;

export function parseMonitorLine(line: string, at: number): LinkEvent | undefined {
  const m = LINE.exec(line);
  if (!m) return undefined;
  const k = KIND.exec(line)?.[1];
  const e: LinkEvent = { ifindex: Number(m[2]), name: m[3] ?? '', deleted: m[1] !== undefined, at };
  if (k && k !== 'numtxqueues' && k !== 'addrgenmode') e.kind = k;
  if (m[4]) e.peerIfindex = Number(m[4]);
  return e;
}

/**
 * `ip -o monitor link` in the node's netns; each event is passed on as read. When it cannot run or
 * dies, onFail says why once and the caller polls instead.
 */
export class LinkMonitor {
  private child?: ChildProcess;
  private stopped = false;
  private readonly netns: string;
  private readonly onEvent: (e: LinkEvent) => void;
  private readonly onFail: (why: string) => void;

  constructor(netns: string, onEvent: (e: LinkEvent) => void, onFail: (why: string) => void) {
    this.netns = netns;
    this.onEvent = onEvent;
    this.onFail = onFail;
  }

  /** Resolves once the monitor runs (its netlink socket is subscribed soon after exec). */
  start(): Promise<void> {
    const [ipCmd, ipArgs] = withNetns(this.netns, ['-d', '-o', 'monitor', 'link']);
    // the monitor dies with the agent, SIGKILL included (it writes only on events: SIGPIPE would be late)
    const [cmd, args] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', ipCmd, ...ipArgs]] : [ipCmd, ipArgs];
    return new Promise((resolve) => {
      let child: ChildProcess;
      try {
        child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        this.onFail(`cannot run ${cmd}: ${(e as Error).message}`);
        return resolve();
      }
      this.child = child;
      let err = '';
      child.stderr?.on('data', (d: Buffer) => {
        if (err.length < 1000) err += d.toString();
      });
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
        const e = parseMonitorLine(l, performance.now());
        if (e) this.onEvent(e);
      });
      child.once('spawn', () => resolve());
      child.once('error', (e) => {
        if (!this.stopped) this.onFail(`cannot run ${cmd} ${args.join(' ')}: ${e.message}`);
        resolve();
      });
      child.once('exit', (code, sig) => {
        if (!this.stopped) this.onFail(`${cmd} ${args.join(' ')} exited (${code ?? sig})${err ? `: ${err.trim()}` : ''}`);
      });
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}
