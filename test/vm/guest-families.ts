// Runs inside the VM, as the kernel matrix's job (test/vm/matrix-job.sh): every probe family of
// the registry loaded and attached on this kernel as the agent would, then fired by real traffic
// in a namespace: a "pod" netns (traced by the socket family, its eth0 watched by net_dev) joined
// by a veth to the guest's root netns, whose end carries the TC programs. An HTTP server in the
// pod (busybox httpd: it starts at once, where a second Node takes seconds under TCG) answers a
// request from the root netns. Prints one JSON report: per family whether it loaded and attached
// (or the error's code and stage), and the events of each kind that arrived.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decoder } from '../../agent/src/events/decode.ts';
import { DIR, EVENT_TYPE, NETDEV_POINT } from '../../agent/src/events/layout.generated.ts';
import { isNativeError } from '../../agent/src/probes/native.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { FAMILIES, type ProbeFamily, netdevWatch } from '../../agent/src/probes/registry.ts';
import { EXPECTED, type FamilyReport, type GuestReport } from './guest-report.ts';

const NS = 'vmpod';
const HOST_VETH = 'vmh0';
const HOST_IP = '10.201.0.1';
const POD_IP = '10.201.0.2';
const PORT = 8080;
/** under TCG on a loaded host a round trip through the pod takes seconds, not milliseconds */
const DEADLINE_MS = Number(process.env.STRATA_VM_EVENTS_DEADLINE_MS ?? 60_000);

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

async function poll(what: () => boolean, deadline: number): Promise<boolean> {
  while (!what()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function get(): Promise<string> {
  return new Promise((resolve, reject) => {
    const q = request({ host: POD_IP, port: PORT, path: '/matrix', headers: { connection: 'close' } }, (s) => {
      let body = '';
      s.on('data', (d: Buffer) => (body += d.toString()));
      s.on('end', () => resolve(body));
    });
    q.on('error', reject);
    q.end();
  });
}

/** the server is up once it answers (connection refused until then) */
async function getWhenUp(deadline: number): Promise<string> {
  for (;;) {
    try {
      return await get();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`the pod's server did not answer within ${DEADLINE_MS} ms: ${(e as Error).message}`, { cause: e });
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function main(): Promise<GuestReport> {
  const started = Date.now();
  const reports = new Map<string, FamilyReport>(FAMILIES.map((f) => [f.name, { name: f.name, loaded: false, attached: false, events: {} }]));
  const count = (family: string, kind: string) => {
    const e = (reports.get(family) as FamilyReport).events;
    e[kind] = (e[kind] ?? 0) + 1;
  };
  let server: ChildProcess | undefined;
  let probes: ProbeSet | undefined;
  const www = mkdtempSync(join(tmpdir(), 'matrix-www-'));
  writeFileSync(join(www, 'matrix'), 'pong');
  ip('netns', 'add', NS);
  try {
    ip('link', 'add', HOST_VETH, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS);
    ip('addr', 'add', `${HOST_IP}/24`, 'dev', HOST_VETH);
    ip('link', 'set', HOST_VETH, 'up');
    ip('-n', NS, 'addr', 'add', `${POD_IP}/24`, 'dev', 'eth0');
    ip('-n', NS, 'link', 'set', 'eth0', 'up');
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    const podNetns = statSync(`/run/netns/${NS}`).ino;
    const hostIfindex = Number(ip('-j', 'link', 'show', HOST_VETH).match(/"ifindex":(\d+)/)?.[1]);
    const podIfindex = Number(ip('-n', NS, '-j', 'link', 'show', 'eth0').match(/"ifindex":(\d+)/)?.[1]);

    probes = new ProbeSet({ wakeupBytes: 0 });
    const p = probes;
    // what the agent's track() does for a pod: its netns to the socket filter, TC on its host
    // veth, net_dev on its own interface
    const wire: Record<string, (f: ProbeFamily) => void> = {
      sock_syscalls: () => p.netnsAdd(podNetns),
      veth_tc: (f) => p.attachTc(f, HOST_VETH),
      net_dev: () => netdevWatch(p, podNetns, podIfindex),
    };
    for (const f of FAMILIES) {
      const r = reports.get(f.name) as FamilyReport;
      try {
        r.variant = p.load(f).variant;
        r.loaded = true;
        p.attach(f);
        wire[f.name]?.(f);
        r.attached = true;
      } catch (e) {
        r.error = isNativeError(e) ? { code: e.code, stage: e.stage, message: e.message } : { code: 'EUNKNOWN', stage: r.loaded ? 'attach' : 'load', message: (e as Error).message };
      }
    }

    const ours = (port: number) => port === PORT;
    const decoder = new Decoder({
      onSock: (e) => {
        if (e.netns !== podNetns) return;
        const kind = e.type === EVENT_TYPE.EV_SOCK_ACCEPT ? 'accept' : e.type === EVENT_TYPE.EV_SOCK_CLOSE ? 'close'
          : e.type === EVENT_TYPE.EV_SOCK_CONNECT ? 'connect' : e.dir === DIR.DIR_IN ? 'read' : 'write';
        count('sock_syscalls', kind);
      },
      onState: (e) => {
        if (e.netns === podNetns) count('sock_syscalls', 'state');
      },
      onPkt: (e) => {
        if (e.ifindex === hostIfindex && (ours(e.tuple.sport) || ours(e.tuple.dport))) count('veth_tc', e.dir === DIR.DIR_IN ? 'ingress' : 'egress');
      },
      onNetDev: (e) => {
        if (e.netns !== podNetns || !(ours(e.tuple.sport) || ours(e.tuple.dport))) return;
        count('net_dev', e.point === NETDEV_POINT.RX ? 'rx' : e.point === NETDEV_POINT.QUEUE ? 'queue' : 'xmit');
      },
    });
    p.start((b) => decoder.decode(b), { pollMs: 10 });

    server = spawn('ip', ['netns', 'exec', NS, 'busybox', 'httpd', '-f', '-p', `${POD_IP}:${PORT}`, '-h', www], { stdio: ['ignore', 'ignore', 'inherit'] });
    const deadline = Date.now() + DEADLINE_MS;
    const body = await getWhenUp(deadline);
    if (body !== 'pong') throw new Error(`unexpected response ${JSON.stringify(body)}`);
    const done = () => [...reports.values()].every((r) => !r.attached || (EXPECTED[r.name] ?? []).every((k) => (r.events[k] ?? 0) > 0));
    const waitedFrom = Date.now();
    const complete = await poll(done, deadline);
    return { release: release(), families: [...reports.values()], complete, waitedMs: Date.now() - waitedFrom };
  } finally {
    server?.kill('SIGKILL');
    probes?.stop();
    probes?.close();
    try {
      ip('link', 'del', HOST_VETH);
    } catch {
      // gone with its peer's netns
    }
    ip('netns', 'del', NS);
    rmSync(www, { recursive: true, force: true });
    process.stderr.write(`guest-families: ${Date.now() - started} ms\n`);
  }
}

if (process.env.STRATA_VM !== '1') {
  // its netns and veth names are fixed: meant for the VM's own kernel, not a shared host
  process.stderr.write('guest-families.ts runs inside the VM (scripts/vm.sh run KERNEL --script test/vm/matrix-job.sh); STRATA_VM=1 runs it here anyway\n');
  process.exit(2);
}
const report = await main();
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exitCode = report.complete ? 0 : 1;
