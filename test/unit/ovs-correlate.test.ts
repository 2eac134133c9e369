// correlate/ovs.ts without a kernel: which 'bridge' hops become 'ovs' hops (both ends ports of one
// OVS bridge), and which flow misses are marked on them: a miss on a message's own first packet
// marks that message; misses on a connection's data-less packets (SYN, SYN-ACK) are charged once,
// to the first message the same sender sends afterwards, in that direction only. Plus the /proc
// readings the tracker makes (probes/ovs.ts) on a fake /proc.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { OvsCorrelator, type OvsPort } from '../../agent/src/correlate/ovs.ts';
import { reqMsgKey, respMsgKey } from '../../agent/src/correlate/hops.ts';
import type { HopRecord, ObservationPoint } from '../../agent/src/correlate/records.ts';
import type { OvsUpcallEvent } from '../../agent/src/events/decode.ts';
import { dbSocketOf, findVswitchd, libcOf } from '../../agent/src/probes/ovs.ts';
import type { PreflightEnv } from '../../agent/src/probes/preflight.ts';
import { OVS, OVS_KERNEL } from '../../agent/src/probes/registry.ts';

const C = { ip: '10.244.3.10', port: 40000 };
const S = { ip: '10.244.3.20', port: 8080 };
const ports = new Map<string, OvsPort>([['va', { bridge: 'br-int', ofport: 1 }], ['vb', { bridge: 'br-int', ofport: 2 }], ['vx', { bridge: 'br-ex', ofport: 1 }]]);

const tc = (name: string, tsNs: number): ObservationPoint => ({ kind: 'tc', tsNs, name, side: 'node', dir: 1 });
const sockPt = (tsNs: number): ObservationPoint => ({ kind: 'write', tsNs, name: 'client' });

function hop(from: ObservationPoint, to: ObservationPoint, direction: 'request' | 'response', messageKey: string, layer: HopRecord['layer'] = 'bridge'): HopRecord {
  return { spanId: `${from.tsNs}`, direction, layer, from, to, start: [0, from.tsNs], end: [0, to.tsNs], messageKey };
}

function upcall(o: { src: typeof C; dst: typeof C; seq: number; dataLen: number; flags: number; rx: number; ns: number; family?: number }): OvsUpcallEvent {
  const buf = Buffer.alloc(32);
  buf.set(o.src.ip.split('.').map(Number), 0);
  buf.set(o.dst.ip.split('.').map(Number), 16);
  return {
    buf, type: 10, flags: 0, tsNs: o.rx + o.ns, kernel: false, rxTsNs: o.rx, pid: 1, tid: 1, batch: 1, nth: 1, seq: o.seq, ack: 0, tcpFlags: o.flags, dataLen: o.dataLen,
    tuple: { family: o.family ?? 2, saddrOff: 0, daddrOff: 16, sport: o.src.port, dport: o.dst.port },
  };
}

describe('ovs hops', () => {
  test('a bridge hop between two ports of one OVS bridge becomes an ovs hop naming the bridge and ports; others stay', () => {
    const o = new OvsCorrelator();
    o.setPorts(42, ports);
    const k = reqMsgKey(`${C.ip}:${C.port}`, 1000);
    const hops = [
      hop(sockPt(10), tc('va', 20), 'request', k, 'pod'),
      hop(tc('va', 20), tc('vb', 50), 'request', k),
      hop(tc('va', 60), tc('vx', 70), 'request', k), // two bridges: not one crossing
      hop(tc('va', 80), tc('vz', 90), 'request', k), // vz is no OVS port (a Linux bridge's)
      hop(tc('br-int', 100), tc('vb', 110), 'request', k, 'node'), // the internal port (routed traffic) into a pod
      hop(tc('eth0', 120), tc('vb', 130), 'request', k, 'node'), // an uplink straight to a veth: no crossing seen
      { ...hop(tc('br-int', 140), tc('br-int', 150), 'request', k, 'node'), qdisc: true as const }, // time in the internal port's qdisc
    ];
    o.setPorts(43, new Map([['br-int', { bridge: 'br-int', ofport: 65534 }]]));
    o.decorate(hops, C, S, false);
    assert.deepEqual(hops.map((h) => h.layer), ['pod', 'ovs', 'bridge', 'bridge', 'ovs', 'node', 'node']);
    assert.deepEqual(hops[4]?.ovs, { bridge: 'br-int', inPort: 'br-int', outPort: 'vb', upcall: false });
    assert.deepEqual(hops[1]?.ovs, { bridge: 'br-int', inPort: 'va', outPort: 'vb', upcall: false });
    assert.equal(o.stats.ovsHops, 2);
    // its ovs-vswitchd gone: the ports are forgotten
    o.dropProcess(42);
    const again = [hop(tc('va', 20), tc('vb', 50), 'request', k)];
    o.decorate(again, C, S, false);
    assert.equal(again[0]?.layer, 'bridge');
  });

  test('handshake misses: charged to the first message of the connection in their direction, once', () => {
    const o = new OvsCorrelator();
    o.setPorts(42, ports);
    o.onUpcall(upcall({ src: C, dst: S, seq: 999, dataLen: 0, flags: 0x02, rx: 100, ns: 40_000 })); // SYN
    o.onUpcall(upcall({ src: S, dst: C, seq: 5000, dataLen: 0, flags: 0x12, rx: 200, ns: 15_000 })); // SYN-ACK
    const req1 = reqMsgKey(`${C.ip}:${C.port}`, 1000);
    const resp1 = respMsgKey(`${C.ip}:${C.port}`, 5001);
    const first = [hop(tc('va', 1000), tc('vb', 1100), 'request', req1), hop(tc('vb', 2000), tc('va', 2100), 'response', resp1)];
    // the server's exchange of the same connection sees it the other way round: same result
    o.decorate(first, S, C, true);
    assert.deepEqual(first.map((h) => [h.ovs?.upcall, h.ovs?.upcallNs, h.ovs?.upcallCause]), [[true, 40_000, 'handshake'], [true, 15_000, 'handshake']]);
    const req2 = reqMsgKey(`${C.ip}:${C.port}`, 1100);
    const second = [hop(tc('va', 3000), tc('vb', 3100), 'request', req2)];
    o.decorate(second, C, S, false);
    assert.equal(second[0]?.ovs?.upcall, false, 'the next request on the same flow: no upcall');
    assert.equal(second[0]?.ovs?.upcallNs, undefined);
    assert.equal(o.stats.upcallsCharged, 2);
  });

  test('a miss seen after the message entered the switch is not charged to it', () => {
    const o = new OvsCorrelator();
    o.setPorts(42, ports);
    o.onUpcall(upcall({ src: C, dst: S, seq: 999, dataLen: 0, flags: 0x10, rx: 5000, ns: 1000 }));
    const h = [hop(tc('va', 1000), tc('vb', 1100), 'request', reqMsgKey(`${C.ip}:${C.port}`, 1000))];
    o.decorate(h, C, S, false);
    assert.equal(h[0]?.ovs?.upcall, false);
    const later = [hop(tc('va', 6000), tc('vb', 6100), 'request', reqMsgKey(`${C.ip}:${C.port}`, 1200))];
    o.decorate(later, C, S, false);
    assert.equal(later[0]?.ovs?.upcall, true);
  });

  test("a miss on a message's own first packet marks that message", () => {
    const o = new OvsCorrelator();
    o.setPorts(42, ports);
    o.onUpcall(upcall({ src: C, dst: S, seq: 7000, dataLen: 120, flags: 0x18, rx: 100, ns: 25_000 }));
    const h = [hop(tc('va', 100), tc('vb', 30_000), 'request', reqMsgKey(`${C.ip}:${C.port}`, 7000))];
    o.decorate(h, C, S, false);
    assert.deepEqual([h[0]?.ovs?.upcall, h[0]?.ovs?.upcallNs, h[0]?.ovs?.upcallCause], [true, 25_000, 'message']);
  });

  test('not-TCP misses are counted, never attributed; the tables are bounded and count evictions', () => {
    const o = new OvsCorrelator(2);
    o.onUpcall(upcall({ src: C, dst: S, seq: 0, dataLen: 0, flags: 0, rx: 1, ns: 1, family: 0 }));
    assert.equal(o.stats.upcallsNotTcp, 1);
    for (let i = 0; i < 5; i++) o.onUpcall(upcall({ src: { ip: C.ip, port: 41000 + i }, dst: S, seq: 1, dataLen: 0, flags: 2, rx: 1, ns: 1 }));
    assert.equal(o.stats.upcalls, 6);
    assert.equal(o.stats.upcallEvictions, 3);
  });
});

describe('ovs-vswitchd from /proc', () => {
  test('found by comm with its netns; libc through its root; db socket from argv, OVS_RUNDIR or the default', () => {
    const proc = mkdtempSync(join(tmpdir(), 'sov-proc-'));
    try {
      const fake = (pid: number, comm: string, argv: string[], environ: string[], maps: string) => {
        mkdirSync(join(proc, `${pid}`, 'ns'), { recursive: true });
        writeFileSync(join(proc, `${pid}`, 'comm'), `${comm}\n`);
        writeFileSync(join(proc, `${pid}`, 'cmdline'), `${argv.join('\0')}\0`);
        writeFileSync(join(proc, `${pid}`, 'environ'), `${environ.join('\0')}\0`);
        writeFileSync(join(proc, `${pid}`, 'maps'), maps);
        symlinkSync(`net:[${4026530000 + pid}]`, join(proc, `${pid}`, 'ns', 'net'));
      };
      const maps = '7f00-7f10 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n7f20-7f30 r-xp 00028000 08:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6\n';
      fake(10, 'ovs-vswitchd', ['ovs-vswitchd', 'unix:/run/x/db.sock', '--pidfile'], [], maps);
      fake(11, 'ovs-vswitchd', ['ovs-vswitchd', '--pidfile'], ['OVS_RUNDIR=/tmp/o'], maps);
      fake(12, 'ovs-vswitchd', ['ovs-vswitchd'], [], '');
      fake(13, 'nginx', ['nginx'], [], maps);
      const found = findVswitchd(proc).sort((a, b) => a.pid - b.pid);
      assert.deepEqual(found.map((p) => [p.pid, p.netns]), [[10, 4026530010], [11, 4026530011], [12, 4026530012]]);
      assert.equal(libcOf(10, proc), `${proc}/10/root/usr/lib/x86_64-linux-gnu/libc.so.6`);
      assert.throws(() => libcOf(12, proc), /maps no libc/);
      assert.equal(dbSocketOf(found[0] as (typeof found)[0], proc), `${proc}/10/root/run/x/db.sock`);
      assert.equal(dbSocketOf(found[1] as (typeof found)[0], proc), `${proc}/11/root/tmp/o/db.sock`);
      assert.equal(dbSocketOf(found[2] as (typeof found)[0], proc), `${proc}/12/root/var/run/openvswitch/db.sock`);
    } finally {
      rmSync(proc, { recursive: true, force: true });
    }
  });
});

describe('ovs preflight', () => {
  const env = (u: PreflightEnv['ovsUserspace']): PreflightEnv => ({
    tracefs: { mounted: true, mountPoints: [], debugfsFallback: false, path: '/sys/kernel/tracing', accessible: true, rawTracepointFallbackNeeded: false },
    btf: true, kprobes: false, ovs: { module: false, tracepoints: [] }, ovsUserspace: u,
  });
  test('off, in plain words, without ovs-vswitchd; on when it runs or is installed (then attached when it starts)', () => {
    const off = OVS.preflight(env({ pids: [], binary: null }), {});
    assert.equal(off.ok, false);
    assert.match(off.reason, /no ovs-vswitchd found: no such process running and not installed/);
    const idle = OVS.preflight(env({ pids: [], binary: '/usr/sbin/ovs-vswitchd' }), {});
    assert.deepEqual([idle.ok, idle.reason], [true, '/usr/sbin/ovs-vswitchd is installed but not running: attached when it starts']);
    assert.deepEqual(OVS.preflight(env({ pids: [321], binary: null }), {}), { ok: true, variant: 'tracepoint', reason: '' });
    assert.equal(OVS.preflight(env(undefined), {}).ok, false);
  });

  test('the syscall tracepoints where tracefs is readable, else libc uprobes for recvmmsg/sendmmsg too, saying so', () => {
    const e = env({ pids: [321], binary: null });
    const noTracefs = OVS.preflight({ ...e, tracefs: { ...e.tracefs, accessible: false, path: null } }, {});
    assert.equal(noTracefs.variant, 'uprobe');
    assert.match(noTracefs.reason, /tracefs is not readable: recvmmsg\/sendmmsg through libc uprobes/);
    const progs = (v: string) => OVS.programs.filter((p) => p.variant === undefined || p.variant === v).map((p) => `${p.kind}:${p.name}`).sort();
    assert.deepEqual(progs('tracepoint'), ['tracepoint:ovs_rx_enter_tp', 'tracepoint:ovs_rx_exit_tp', 'tracepoint:ovs_tx_enter_tp', 'uprobe:ovs_flow_new']);
    assert.deepEqual(progs('uprobe'), ['uprobe:ovs_flow_new', 'uprobe:ovs_rx_enter', 'uprobe:ovs_rx_exit', 'uprobe:ovs_tx_enter']);
  });
});

describe('ovs_kernel preflight (kernel datapath)', () => {
  const env = (o: Partial<PreflightEnv> & { tracepoints?: string[]; module?: boolean }): PreflightEnv => ({
    tracefs: { mounted: true, mountPoints: [], debugfsFallback: false, path: '/sys/kernel/tracing', accessible: true, rawTracepointFallbackNeeded: false },
    btf: true, kprobes: true, ovs: { module: o.module ?? true, tracepoints: o.tracepoints ?? [] }, ...o,
  });
  const progs = (v: string) => OVS_KERNEL.programs.filter((p) => p.variant === undefined || p.variant === v).map((p) => `${p.kind}:${p.name}`).sort();

  test('off without the openvswitch module, without kprobes or BTF, each saying why', () => {
    const noModule = OVS_KERNEL.preflight(env({ module: false }), {});
    assert.equal(noModule.ok, false);
    assert.match(noModule.reason, /the openvswitch kernel module is not loaded: no kernel OVS datapath on this node/);
    const noKprobes = OVS_KERNEL.preflight(env({ kprobes: false, tracepoints: ['ovs_do_execute_action', 'ovs_dp_upcall'] }), {});
    assert.equal(noKprobes.ok, false);
    assert.match(noKprobes.reason, /no kprobes .*ovs_packet_cmd_execute/);
    assert.equal(OVS_KERNEL.preflight(env({ btf: false }), {}).ok, false);
  });

  test('the module tracepoints where it has both (6.0+), else kprobes on the functions they sit in (5.10), saying so', () => {
    const tp = OVS_KERNEL.preflight(env({ tracepoints: ['ovs_do_execute_action', 'ovs_dp_upcall'] }), {});
    assert.deepEqual([tp.ok, tp.variant], [true, 'tracepoint']);
    const kp = OVS_KERNEL.preflight(env({ tracepoints: [] }), {});
    assert.deepEqual([kp.ok, kp.variant], [true, 'kprobe']);
    assert.match(kp.reason, /openvswitch module has no ovs_dp_upcall, ovs_do_execute_action tracepoint: kprobes on ovs_dp_upcall and ovs_execute_actions/);
    const hidden = OVS_KERNEL.preflight(env({ tracefs: { ...env({}).tracefs, accessible: false } }), {});
    assert.equal(hidden.variant, 'kprobe');
    assert.match(hidden.reason, /tracefs is not readable/);
    assert.deepEqual(progs('tracepoint'), ['kprobe:ovs_kexec_enter', 'kprobe:ovs_kexec_exit', 'raw_tp:ovs_kaction_tp', 'raw_tp:ovs_kupcall_tp']);
    assert.deepEqual(progs('kprobe'), ['kprobe:ovs_kaction_kp', 'kprobe:ovs_kexec_enter', 'kprobe:ovs_kexec_exit', 'kprobe:ovs_kupcall_kp']);
  });
});
