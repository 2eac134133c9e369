// A dual-stack server socket (AF_INET6 bound to ::, what Node.js and many servers listen on by
// default) with an IPv4 client: the kernel keeps its addresses IPv4-mapped (::ffff:127.0.0.1),
// while the client's socket and the packets carry IPv4. The socket probes report the IPv4 tuple
// for it, so the message key (client endpoint, seq of the first byte) is the same at both ends
// and the server's span joins the client's trace (seen on the real node: an NGINX pod in front of
// a Node.js app pod made two traces per request before).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Decoder, addrString } from '../../agent/src/events/decode.ts';
import { DIR, EVENT_TYPE } from '../../agent/src/events/layout.generated.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { makeCgroup, removeCgroup } from '../helpers/cgroup.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

interface Seen {
  dir: number;
  family: number;
  local: string;
  remote: string;
  seq: number;
  payload: string;
}

// one process: a server on [::]:0 and an IPv4 client of it, one request and its response
const TALK = `
  const net = require('node:net');
  const srv = net.createServer((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok')));
  srv.on('error', (e) => { console.error(e.code); process.exit(3); });
  srv.listen(0, '::', () => {
    const c = net.connect(srv.address().port, '127.0.0.1', () => c.write('GET /dual-stack HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));
    c.on('data', () => {});
    c.on('end', () => srv.close());
  });
  setInterval(() => {}, 1000);`;

test('a dual-stack server socket with an IPv4 peer is reported with the IPv4 tuple: the same message key as its client', async (t) => {
  const dir = makeCgroup(t, 'strata-dual');
  if (!dir) return;
  const probes = new ProbeSet({ filterCgroups: true });
  let child: ChildProcess | undefined;
  try {
    probes.open('sock_syscalls');
    probes.cgroupAdd(statSync(dir).ino);
    const seen: Seen[] = [];
    const decoder = new Decoder({
      onSock: (e) => {
        if (e.type !== EVENT_TYPE.EV_SOCK_DATA || e.pid !== child?.pid) return;
        seen.push({
          dir: e.dir, family: e.tuple.family, seq: e.seq,
          local: `${addrString(e.buf, e.tuple.saddrOff, e.tuple.family)}:${e.tuple.sport}`,
          remote: `${addrString(e.buf, e.tuple.daddrOff, e.tuple.family)}:${e.tuple.dport}`,
          payload: e.buf.toString('latin1', e.payloadOff, e.payloadOff + e.payloadLen),
        });
      },
      onPkt() {}, onState() {}, onNetDev() {},
    });
    probes.start((b) => decoder.decode(b), { pollMs: 10 });
    child = spawn('sh', ['-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "${process.execPath}" -e "$0"`, TALK], { stdio: 'ignore' });
    const request = (d: number) => seen.find((s) => s.dir === d && s.payload.startsWith('GET /dual-stack'));
    await waitFor(() => request(DIR.DIR_OUT) && request(DIR.DIR_IN), 'the request written by the client and read by the server', 15_000);
    const sent = request(DIR.DIR_OUT) as Seen;
    const read = request(DIR.DIR_IN) as Seen;
    assert.equal(sent.family, 2, 'the client: an IPv4 socket');
    assert.equal(read.family, 2, 'the server\'s dual-stack socket reported as IPv4, not ::ffff:127.0.0.1');
    assert.equal(read.remote, sent.local, 'the server\'s peer is the client\'s endpoint');
    assert.equal(read.local, sent.remote);
    assert.equal(read.seq, sent.seq, 'the seq of the first byte, the other half of the message key');
  } finally {
    child?.kill('SIGKILL');
    probes.close();
    await removeCgroup(dir);
  }
});
