// Socket syscalls whose exit reads the call's arguments back from the task's registers (the
// raw_tp variant on every kernel, the tracepoint variant where the kernel has bpf_task_pt_regs):
// no per-call map between entry and exit, no entry program for a receive. Every call of each
// family (read, recvfrom with and without MSG_PEEK, recvmsg, readv; write, sendto, sendmsg,
// writev) must still be reported with its bytes, its TCP seq and its flags, and a read that moved
// nothing (EAGAIN) with nothing at all.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Decoder } from '../../agent/src/events/decode.ts';
import { DIR, EVENT_TYPE, FLAGS, SOCK_OP } from '../../agent/src/events/layout.generated.ts';
import { readPreflightEnv } from '../../agent/src/probes/preflight.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { family, programsOf } from '../../agent/src/probes/registry.ts';
import { makeCgroup, removeCgroup } from '../helpers/cgroup.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

interface Seen {
  op: number;
  dir: number;
  flags: number;
  seq: number;
  ret: number;
  enterTsNs: number;
  tsNs: number;
  payload: string;
}

// one process, a connected TCP pair over 127.0.0.1: the client sends with each send syscall, the
// server reads with each receive syscall (non-blocking reads that find nothing first), prints "done"
const TALK = String.raw`
import os, socket, select, sys
ls = socket.socket(); ls.bind(('127.0.0.1', 0)); ls.listen(1)
c = socket.create_connection(ls.getsockname()); s, _ = ls.accept()
s.setblocking(False)
eagain = 0
for _ in range(3):
    try:
        s.recv(100)
    except BlockingIOError:
        eagain += 1
def wait():
    select.select([s], [], [], 5)
def send_and_wait(f, data):
    f(data); wait()
send_and_wait(lambda d: os.write(c.fileno(), d), b'W-write-0123456789')
assert s.recv(4, socket.MSG_PEEK) == b'W-wr'
assert os.read(s.fileno(), 100) == b'W-write-0123456789'
send_and_wait(c.send, b'S-sendto-0123456789')
assert s.recv(100) == b'S-sendto-0123456789'
send_and_wait(lambda d: c.sendmsg([d[:4], d[4:]]), b'M-sendmsg-0123456789')
data, _, _, _ = s.recvmsg(100)
assert data == b'M-sendmsg-0123456789'
send_and_wait(lambda d: os.writev(c.fileno(), [d[:3], d[3:]]), b'V-writev-0123456789')
buf = bytearray(100)
n = os.readv(s.fileno(), [buf])
assert bytes(buf[:n]) == b'V-writev-0123456789'
print('done', eagain, flush=True)
sys.stdin.read()
`;

const PAYLOADS = ['W-write-0123456789', 'S-sendto-0123456789', 'M-sendmsg-0123456789', 'V-writev-0123456789'];

for (const attach of ['tracepoint', 'raw_tp'] as const) {
  test(`${attach}: every send and receive syscall reported with bytes, seq and flags; EAGAIN reads with nothing`, async (t) => {
    const env = readPreflightEnv();
    if (attach === 'tracepoint' && !env.tracefs.accessible) {
      if (process.env.CI === 'true') assert.fail('tracefs is not mounted (scripts/setup.sh mounts it)');
      t.skip('tracefs not mounted');
      return;
    }
    const dir = makeCgroup(t, `strata-regs-${attach}`);
    if (!dir) return;
    const probes = new ProbeSet({ filterCgroups: true, syscallAttach: attach }, env);
    let child: ChildProcess | undefined;
    try {
      probes.open('sock_syscalls');
      const loaded = probes.progStats().map((p) => p.name);
      if (attach === 'tracepoint') {
        const expected = programsOf(family('sock_syscalls'), 'tracepoint', env).map((p) => p.name).sort();
        assert.deepEqual(loaded.filter((n) => expected.includes(n)).sort(), expected, 'every program the registry chose is loaded');
        if (env.exitRegs) {
          for (const n of ['enter_read', 'enter_recvfrom', 'enter_recvmsg', 'enter_readv', 'enter_accept', 'enter_connect']) {
            assert.ok(!loaded.includes(n), `${n}: no entry program for a receive (the exit reads the registers)`);
          }
          assert.ok(loaded.includes('enter_write'), 'a send still decides at entry');
        }
      }
      probes.cgroupAdd(statSync(dir).ino);
      const seen: Seen[] = [];
      const decoder = new Decoder({
        onSock: (e) => {
          if (e.type !== EVENT_TYPE.EV_SOCK_DATA || e.pid !== child?.pid) return;
          seen.push({
            op: e.op, dir: e.dir, flags: e.flags, seq: e.seq, ret: e.ret, enterTsNs: e.enterTsNs, tsNs: e.tsNs,
            payload: e.buf.toString('latin1', e.payloadOff, e.payloadOff + e.payloadLen),
          });
        },
        onPkt() {}, onState() {}, onNetDev() {},
      });
      probes.start((b) => decoder.decode(b), { pollMs: 10 });
      let out = '';
      child = spawn('sh', ['-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec python3 -c "$0"`, TALK], { stdio: ['pipe', 'pipe', 'inherit'] });
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor(() => out.includes('done'), 'the program made every call', 20_000);
      const eagain = Number(/done (\d+)/.exec(out)?.[1]);
      assert.equal(eagain, 3, 'three reads found nothing (EAGAIN)');
      await waitFor(() => seen.filter((s) => s.dir === DIR.DIR_IN).length >= 5 && seen.filter((s) => s.dir === DIR.DIR_OUT).length >= 4,
        'the four sends and five receives reported', 15_000);

      const sends = seen.filter((s) => s.dir === DIR.DIR_OUT);
      const recvs = seen.filter((s) => s.dir === DIR.DIR_IN);
      assert.deepEqual(sends.map((s) => s.op), [SOCK_OP.OP_WRITE, SOCK_OP.OP_SENDTO, SOCK_OP.OP_SENDMSG, SOCK_OP.OP_WRITEV]);
      assert.deepEqual(sends.map((s) => s.payload), PAYLOADS, 'each send\'s bytes, gathered across its buffers');
      assert.deepEqual(recvs.map((s) => s.op), [SOCK_OP.OP_RECVFROM, SOCK_OP.OP_READ, SOCK_OP.OP_RECVFROM, SOCK_OP.OP_RECVMSG, SOCK_OP.OP_READV],
        'the peek, then one read per message: no event for the reads that found nothing');
      const [peek, ...reads] = recvs;
      assert.ok(peek.flags & FLAGS.F_PEEK, 'MSG_PEEK read from the registers at exit');
      assert.ok(!(peek.flags & FLAGS.F_SEQ_VALID), 'a peek has no seq of its own');
      assert.equal(peek.payload, 'W-wr');
      assert.deepEqual(reads.map((s) => s.payload), PAYLOADS);
      for (const [i, r] of reads.entries()) {
        assert.ok(r.flags & FLAGS.F_SEQ_VALID);
        assert.ok(!(r.flags & FLAGS.F_PEEK));
        assert.equal(r.seq, sends[i].seq, `${PAYLOADS[i]}: the reader's seq is the sender's`);
        assert.equal(r.ret, PAYLOADS[i].length);
      }
      for (let i = 1; i < sends.length; i++) {
        assert.equal(sends[i].seq, (sends[i - 1].seq + sends[i - 1].ret) >>> 0, 'sends are contiguous in seq');
      }
      for (const s of sends) {
        assert.ok(s.enterTsNs > 0 && s.enterTsNs <= s.tsNs, 'a send carries the time it entered the kernel, before its exit');
      }
      for (let i = 1; i < sends.length; i++) assert.ok(sends[i].enterTsNs > sends[i - 1].tsNs, 'each send\'s own entry time');
    } finally {
      child?.kill('SIGKILL');
      probes.close();
      await removeCgroup(dir);
    }
  });
}
