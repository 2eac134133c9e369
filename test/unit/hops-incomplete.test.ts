// Hop chains on the recorded lab run (test/fixtures/http): a close-delimited HTTP/1.0 response
// through NGINX keeps its response-path hops (the read that also consumed the FIN reports a seq one
// too high), and a chain that stays incomplete (pipelined requests after the first: TC reports only
// the first data packet of a burst) says so on the exchange span.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { CLIENT, SERVER, conversation, runRecords, type Turn } from '../helpers/conversation.ts';
import { loadFixture, replay } from '../helpers/replay.ts';
import { pktRecord } from '../helpers/synth.ts';

const { batches, meta } = loadFixture('http');
const { sink, correlator } = replay(batches, meta);

function traceOf(path: string): SpanRecord[] {
  const nginx = sink.spans.find((s) => s.kind === SpanKind.SERVER && s.resource.serviceName === 'ingress-nginx' && s.attributes['url.path'] === path);
  assert.ok(nginx, `nginx SERVER for ${path}`);
  return sink.spans.filter((s) => s.traceId === nginx.traceId);
}
const hopsUnder = (t: SpanRecord[], parent: SpanRecord, direction: string) =>
  t.filter((s) => s.kind === SpanKind.INTERNAL && s.parentSpanId === parent.spanId && s.attributes['strata.direction'] === direction);

describe('hop chains', () => {
  test('HTTP/1.0 close-delimited response through NGINX: the upstream CLIENT span has its response-path hops', () => {
    const t = traceOf('/h10/fx');
    const upstream = t.find((s) => s.kind === SpanKind.CLIENT && s.attributes['server.port'] === 8081);
    assert.ok(upstream);
    const resp = hopsUnder(t, upstream, 'response');
    assert.deepEqual(resp.map((h) => h.attributes['strata.layer']), ['pod', 'bridge', 'pod']);
    assert.equal(resp[0]?.name, 'response frontend -> frontend veth');
    assert.equal(resp[2]?.name, 'response ingress-nginx veth -> ingress-nginx');
    assert.equal(hopsUnder(t, upstream, 'request').length, 3);
    assert.equal(upstream.attributes['strata.hops.incomplete'], undefined);
    // the response hops end where NGINX read the response, inside the CLIENT span
    const ns = (x: [number, number]) => x[0] * 1e9 + x[1];
    for (const h of resp) assert.ok(ns(h.end) <= ns(upstream.end) && ns(h.start) >= ns(upstream.start), h.name);
  });

  test('pipelined requests after the first: the chain is marked incomplete, with the reason', () => {
    const first = traceOf('/fx/pipe/1').find((s) => s.kind === SpanKind.SERVER && s.resource.serviceName === 'ingress-nginx');
    assert.equal(first?.attributes['strata.hops.incomplete'], undefined, 'the first of the burst has its packet points');
    for (const p of ['/fx/pipe/2', '/fx/pipe/3']) {
      const nginx = traceOf(p).find((s) => s.kind === SpanKind.SERVER && s.resource.serviceName === 'ingress-nginx');
      assert.equal(nginx?.attributes['strata.hops.incomplete'], true, p);
      assert.match(String(nginx?.attributes['strata.hops.incomplete_reason']), /pipelined/);
    }
    assert.equal(correlator.stats.hopsIncomplete, 2);
  });

  test('no other exchange of the capture is marked', () => {
    const marked = sink.spans.filter((s) => s.attributes['strata.hops.incomplete']).map((s) => s.attributes['url.path']);
    assert.deepEqual(marked.sort(), ['/fx/pipe/2', '/fx/pipe/3']);
  });

  test('a retransmission seen twice on one interface does not make the next chain look short', () => {
    const B = (x: string) => Buffer.from(x, 'latin1');
    const turn = (p: string): Turn => ({ request: B(`GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`), response: B('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n') });
    const recs = conversation([turn('/r/1'), turn('/r/2')], (d) => [d], (d) => [d], { serverOnly: true });
    const len = turn('/r/1').request.length;
    const rlen = turn('/r/1').response.length;
    // the first request crosses the traced interface twice (retransmitted), the second once
    const pkts = [
      pktRecord({ ts: 1_002_500, ifindex: 9, src: CLIENT, dst: SERVER, seq: 0xfffff000, dataLen: len, dir: 2 }),
      pktRecord({ ts: 1_002_600, ifindex: 9, src: CLIENT, dst: SERVER, seq: 0xfffff000, dataLen: len, dir: 2 }),
      pktRecord({ ts: 1_006_500, ifindex: 9, src: CLIENT, dst: SERVER, seq: (0xfffff000 + len) >>> 0, dataLen: len, dir: 2 }),
      // and each response once on its way out
      pktRecord({ ts: 1_004_500, ifindex: 9, src: SERVER, dst: CLIENT, seq: 0x1000, dataLen: rlen, dir: 1 }),
      pktRecord({ ts: 1_008_500, ifindex: 9, src: SERVER, dst: CLIENT, seq: 0x1000 + rlen, dataLen: rlen, dir: 1 }),
    ];
    const r = runRecords([...recs, ...pkts]);
    const servers = r.spans.filter((s) => s.kind === SpanKind.SERVER);
    assert.equal(servers.length, 2);
    for (const s of servers) assert.equal(s.attributes['strata.hops.incomplete'], undefined, String(s.attributes['url.path']));
  });

  test('a response path with no points while the request path has them is marked', () => {
    // packets of the request seen on a traced interface, none of the response: both sockets traced
    const turn: Turn = { request: Buffer.from('GET /one-way HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1'), response: Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 'latin1') };
    const recs = conversation([turn], (d) => [d], (d) => [d], { serverOnly: true });
    const pkt = pktRecord({ ts: 1_001_500, ifindex: 9, src: CLIENT, dst: SERVER, seq: 0xfffff000, dataLen: turn.request.length, dir: 2 });
    const r = runRecords([...recs, pkt]);
    const server = r.spans.find((s) => s.kind === SpanKind.SERVER);
    assert.equal(server?.attributes['strata.hops.incomplete'], true);
    assert.equal(server?.attributes['strata.hops.incomplete_reason'], 'response path not observed');
  });
});
