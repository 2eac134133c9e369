// The agent-to-agent channel of cross-node stitching: HMAC over the body, batching, bounds, and
// what an unreachable, slow or misconfigured peer costs (counters, not memory).
import assert from 'node:assert/strict';
import { type Server, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentArgs } from '../../agent/src/config/flags.ts';
import { loadConfig, toAgentOptions } from '../../agent/src/config/index.ts';
import { STRATA_ERR_CONFIG, STRATA_ERR_PEER_AUTH, STRATA_ERR_PEER_BATCH } from '../../agent/src/errors.ts';
import { parsePeers, readSecretFile } from '../../agent/src/peers/peers-file.ts';
import { type PeerOptions, Peers } from '../../agent/src/peers/peers.ts';
import { PEER_PATH, SIGNATURE_HEADER, type PeerMapping, decodeBatch, encodeBatch, openBatch, sign, verify } from '../../agent/src/peers/protocol.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const SECRET = Buffer.from('0123456789abcdef-shared');
const mapping = (i: number): PeerMapping => ({ key: `10.244.1.5:${40000 + i}/${1000 + i}/q`, traceId: i.toString(16).padStart(32, '0'), parentSpanId: (i + 1).toString(16).padStart(16, '0'), flags: i % 2 });

/** polls until `cond` holds, or fails after `ms` (no fixed sleeps) */
const until = (cond: () => boolean, ms: number, what: string) => waitFor(cond, what, ms, 5);

function options(over: Partial<PeerOptions>): PeerOptions {
  return { nodeName: 'node-1', peers: [], secret: SECRET, flushMs: 20, batchMax: 100, maxBatchBytes: 64 * 1024, maxPending: 1000, timeoutMs: 2000, ...over };
}

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers) await c();
});

async function receiver(over: Partial<PeerOptions> = {}) {
  const got: { from: string; m: PeerMapping[] }[] = [];
  const p = new Peers(options({ nodeName: 'node-2', ...over }));
  const port = await p.listen(0, '127.0.0.1', (from, m) => got.push({ from, m }));
  closers.push(() => p.close());
  return { p, port, got, count: () => got.reduce((n, g) => n + g.m.length, 0) };
}

function sender(port: number, over: Partial<PeerOptions> = {}) {
  const p = new Peers(options({
    peers: [
      { name: 'node-1', podCidr: '10.244.1.0/24', address: 'http://127.0.0.1:1' },
      { name: 'node-2', podCidr: '10.244.2.0/24', address: `http://127.0.0.1:${port}` },
    ],
    ...over,
  }));
  closers.push(() => p.close());
  return p;
}

function post(port: number, body: Buffer, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: PEER_PATH, method: 'POST', headers: { 'content-length': body.length, ...headers } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('protocol', () => {
  test('the HMAC covers every byte of the body and the secret', () => {
    const body = encodeBatch({ from: 'node-1', sentAtMs: 1, mappings: [mapping(1), mapping(2)] });
    const sig = sign(SECRET, body);
    assert.match(sig, /^sha256=[0-9a-f]{64}$/);
    assert.ok(verify(SECRET, body, sig));
    const flipped = Buffer.from(body);
    flipped[flipped.length - 3] ^= 1;
    assert.ok(!verify(SECRET, flipped, sig), 'one bit of the body changed');
    assert.ok(!verify(Buffer.from('another-secret-of-16'), body, sig), 'another secret');
    assert.ok(!verify(SECRET, body, undefined));
    assert.ok(!verify(SECRET, body, sig.slice(0, -1)));
    assert.deepEqual(openBatch(SECRET, body, sig).mappings, [mapping(1), mapping(2)]);
    assert.throws(() => openBatch(SECRET, flipped, sig), (e: Error & { code?: string }) => e.code === STRATA_ERR_PEER_AUTH);
  });

  test('decoding refuses what is not a batch of well-formed mappings', () => {
    const bad = (o: unknown) => assert.throws(() => decodeBatch(Buffer.from(JSON.stringify(o))), (e: Error & { code?: string }) => e.code === STRATA_ERR_PEER_BATCH, JSON.stringify(o));
    bad({ v: 2, from: 'a', sentAtMs: 1, m: [] });
    bad({ v: 1, from: 'a', m: [] });
    bad({ v: 1, from: 'a', sentAtMs: 1, m: [['k', 'xyz', '0000000000000001', 1]] });
    bad({ v: 1, from: 'a', sentAtMs: 1, m: [['k', '0'.repeat(31) + '1', '01', 1]] });
    bad({ v: 1, from: 'a', sentAtMs: 1, m: [['', '0'.repeat(31) + '1', '0'.repeat(15) + '1', 1]] });
    bad({ v: 1, from: 'a', sentAtMs: 1, m: [['k', '0'.repeat(31) + '1', '0'.repeat(15) + '1', 1.5]] });
    assert.throws(() => decodeBatch(Buffer.from('{')), (e: Error & { code?: string }) => e.code === STRATA_ERR_PEER_BATCH);
  });

  test('peers file: cluster.json nodes (agent on stitch.port) or an explicit list; errors name the entry', () => {
    const cluster = JSON.stringify({ nodes: [{ name: 'node-1', podCidr: '10.244.1.0/24', ip: '172.18.0.11' }] });
    assert.deepEqual(parsePeers(cluster, 'c.json', 9465), [{ name: 'node-1', podCidr: '10.244.1.0/24', address: 'http://172.18.0.11:9465' }]);
    const list = JSON.stringify([{ name: 'n', podCidr: '10.0.0.0/16', address: 'http://127.0.0.1:7000' }]);
    assert.equal(parsePeers(list, 'l.json', 1)[0]?.address, 'http://127.0.0.1:7000');
    assert.throws(() => parsePeers(JSON.stringify([{ name: 'n', podCidr: '10.0.0/16', address: 'http://x:1' }]), 'l.json', 1), /\[0\] n: podCidr/);
  });
});

describe('configuration', () => {
  test('stitch.peersFile needs a readable secret of at least 16 bytes; one trailing newline is not part of it', () => {
    const d = mkdtempSync(join(tmpdir(), 'strata-peers-'));
    try {
      const peers = join(d, 'peers.json');
      writeFileSync(peers, JSON.stringify([{ name: 'node-2', podCidr: '10.244.2.0/24', address: 'http://127.0.0.1:9' }]));
      const secret = join(d, 'secret');
      writeFileSync(secret, 'sixteen-bytes-ok\n');
      assert.equal(readSecretFile(secret).toString(), 'sixteen-bytes-ok');
      const load = (sets: string[]) => loadConfig({ env: {}, hostname: 'node-1', flags: parseAgentArgs(sets.flatMap((x) => ['--set', x])).settings });
      const opts = (extra: string[]) => toAgentOptions(load([`stitch.peersFile=${peers}`, ...extra]), []);
      const o = opts([`stitch.secretFile=${secret}`, 'stitch.port=0']);
      assert.equal(o.stitch?.peers.peers[0]?.name, 'node-2');
      assert.equal(o.stitch?.peers.secret.toString(), 'sixteen-bytes-ok');
      const code = (e: Error & { code?: string }) => e.code === STRATA_ERR_CONFIG;
      assert.throws(() => opts([]), (e: Error & { code?: string }) => code(e) && /secretFile is not/.test(e.message));
      assert.throws(() => opts([`stitch.secretFile=${join(d, 'missing')}`]), (e: Error & { code?: string }) => code(e) && /ENOENT/.test(e.message));
      writeFileSync(secret, 'short\n');
      assert.throws(() => opts([`stitch.secretFile=${secret}`]), (e: Error & { code?: string }) => code(e) && /at least 16 bytes/.test(e.message));
      assert.equal(toAgentOptions(load([]), []).stitch, undefined, 'off by default');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('channel', () => {
  test('mappings reach the node owning the address, in batches; its own CIDR goes nowhere; a Service VIP to every peer', async () => {
    const r = await receiver();
    const s = sender(r.port, { batchMax: 10, flushMs: 60_000 });
    for (let i = 0; i < 25; i++) s.publish('10.244.2.7', mapping(i));
    s.publish('10.244.1.9', mapping(99)); // this node's own pod
    // batchMax reached twice: two batches sent at once, the flush timer (1 min) does not run
    await until(() => r.count() === 20, 10_000, '20 mappings');
    assert.equal(s.pending, 5);
    // one request in flight per peer: a flush while the second batch is unanswered waits for the next one
    await until(() => {
      s.flush();
      return r.count() === 25;
    }, 10_000, '25 mappings');
    assert.deepEqual(r.got.flatMap((g) => g.m), Array.from({ length: 25 }, (_, i) => mapping(i)));
    assert.ok(r.got.every((g) => g.from === 'node-1'));
    assert.equal(r.got.length, 3);
    await until(() => s.stats.sent === 25, 10_000, 'the answers (one request in flight per peer)');
    s.publish('10.96.0.10', mapping(100)); // a ClusterIP: whoever has the endpoint
    await until(() => {
      s.flush();
      return r.count() === 26;
    }, 10_000, 'the VIP mapping');
    await until(() => s.stats.sent === 26, 10_000, 'sent counted');
    assert.equal(r.p.stats.received, 26);
    assert.ok(r.p.skewMs.has('node-1'));
  });

  test('a wrong secret is rejected (401) and counted on both sides; the sender warns once', async () => {
    const r = await receiver();
    const warnings: string[] = [];
    const s = new Peers(options({ secret: Buffer.from('not-the-same-secret!'), peers: [{ name: 'node-2', podCidr: '10.244.2.0/24', address: `http://127.0.0.1:${r.port}` }] }), (m) => warnings.push(m));
    closers.push(() => s.close());
    for (let k = 0; k < 3; k++) {
      s.publish('10.244.2.7', mapping(k));
      s.flush();
      await until(() => s.stats.droppedSendError === k + 1, 10_000, 'the refused batch');
    }
    assert.equal(r.p.stats.rejectedAuth, 3);
    assert.equal(r.count(), 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /node-2.*HTTP 401/);
    // unsigned, and oversize bodies
    assert.equal(await post(r.port, Buffer.from('{}'), {}), 401);
    assert.equal(r.p.stats.rejectedAuth, 4);
    const big = encodeBatch({ from: 'x', sentAtMs: 0, mappings: Array.from({ length: 2000 }, (_, i) => mapping(i)) });
    assert.ok(big.length > 64 * 1024);
    await post(r.port, big, { [SIGNATURE_HEADER]: sign(SECRET, big) }).catch(() => 413);
    await until(() => r.p.stats.rejectedBatch === 1, 10_000, 'the oversize batch');
  });

  test('an unreachable peer costs counters, not memory: at most maxPending wait, the oldest dropped', async () => {
    // a port nothing listens on
    const dead = createServer();
    await new Promise<void>((res) => dead.listen(0, '127.0.0.1', res));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((res) => dead.close(() => res()));
    const s = sender(port, { maxPending: 50, batchMax: 1000, flushMs: 60_000 });
    for (let i = 0; i < 500; i++) s.publish('10.244.2.7', mapping(i));
    assert.equal(s.pending, 50);
    assert.equal(s.stats.droppedQueueFull, 450);
    s.flush();
    await until(() => s.stats.droppedSendError === 50, 10_000, 'the failed batch');
    assert.equal(s.pending, 0);
    assert.equal(s.stats.sent, 0);
    // and per peer: whose joins were lost, and that it does not answer
    assert.deepEqual(s.linkStats().get('node-2'), { delivered: 0, droppedQueueFull: 450, droppedSendError: 50, up: false, pending: 0 });
    assert.deepEqual([...s.linkStats().keys()], ['node-2'], 'its own node is no peer');
  });

  test('a peer that does not answer: the batch times out, counted', async () => {
    const sockets: import('node:net').Socket[] = [];
    const silent: Server = createServer(() => {});
    silent.on('connection', (c) => sockets.push(c));
    await new Promise<void>((res) => silent.listen(0, '127.0.0.1', res));
    closers.push(() => new Promise<void>((res) => {
      for (const c of sockets) c.destroy();
      silent.close(() => res());
    }));
    const s = sender((silent.address() as AddressInfo).port, { timeoutMs: 150, flushMs: 60_000 });
    s.publish('10.244.2.7', mapping(1));
    s.publish('10.244.2.7', mapping(2));
    s.flush();
    await until(() => s.stats.timeouts === 1, 10_000, 'the timeout');
    await until(() => s.stats.droppedSendError === 2, 10_000, 'the dropped mappings');
  });

  test('a peer that goes away and comes back on its port: lost mappings counted for it, then delivered again, one warning each way', async () => {
    const r1 = await receiver();
    const port = r1.port;
    const warnings: string[] = [];
    const s = new Peers(options({ flushMs: 60_000, peers: [{ name: 'node-2', podCidr: '10.244.2.0/24', address: `http://127.0.0.1:${port}` }] }), (m) => warnings.push(m));
    closers.push(() => s.close());
    s.publish('10.244.2.7', mapping(1));
    s.flush();
    await until(() => r1.count() === 1, 10_000, 'delivered while up');
    await until(() => s.linkStats().get('node-2')?.delivered === 1, 10_000, 'counted as delivered');
    await r1.p.close();
    for (let k = 0; k < 3; k++) {
      s.publish('10.244.2.7', mapping(10 + k));
      s.flush();
      await until(() => s.linkStats().get('node-2')?.droppedSendError === k + 1, 10_000, 'a lost mapping');
    }
    assert.equal(s.linkStats().get('node-2')?.up, false);
    // back, same port
    const back = new Peers(options({ nodeName: 'node-2' }));
    const got: PeerMapping[] = [];
    await back.listen(port, '127.0.0.1', (_from, m) => got.push(...m));
    closers.push(() => back.close());
    s.publish('10.244.2.7', mapping(20));
    s.flush();
    await until(() => got.length === 1, 10_000, 'delivered again');
    await until(() => s.linkStats().get('node-2')?.up === true, 10_000, 'up again');
    assert.deepEqual(s.linkStats().get('node-2'), { delivered: 2, droppedQueueFull: 0, droppedSendError: 3, up: true, pending: 0 });
    assert.equal(warnings.length, 2, warnings.join('; '));
    assert.match(warnings[0] ?? '', /node-2.*dropped and counted/);
    assert.match(warnings[1] ?? '', /node-2.*answers again/);
  });

  test('batches are cut at maxBatchBytes', async () => {
    const r = await receiver();
    const s = sender(r.port, { maxBatchBytes: 2048, batchMax: 1000, flushMs: 60_000 });
    for (let i = 0; i < 100; i++) s.publish('10.244.2.7', mapping(i));
    await until(() => { s.flush(); return r.count() === 100; }, 10_000, 'all mappings');
    assert.ok(r.got.length >= 4, `${r.got.length} batches for 100 mappings of ~100 bytes under 2 KiB each`);
    assert.equal(r.p.stats.rejectedBatch, 0);
  });
});
