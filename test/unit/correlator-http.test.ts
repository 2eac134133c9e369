// HTTP/1.x from partial captures, through decoder + correlator, on synthetic traffic with both
// ends traced (a proxy's upstream connection and the app's).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { CLIENT, SERVER, conversation, runRecords, shape, type Turn } from '../helpers/conversation.ts';
import { lcg } from '../helpers/rng.ts';
import { cut, pktRecord } from '../helpers/synth.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const whole = (d: Buffer) => [d];
const json = (o: unknown) => JSON.stringify(o);
const resp = (status: number, body: string, extra = '') => B(`HTTP/1.1 ${status} X\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`);
const chunked = (parts: string[]) => B(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('')}0\r\n\r\n`);

const upload = 'x'.repeat(4096);
const TURNS: Turn[] = [
  { request: B('GET /a HTTP/1.1\r\nHost: app\r\n\r\n'), response: resp(200, json({ path: '/a' })) },
  { request: B(`POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: ${upload.length}\r\n\r\n${upload}`), response: chunked(['one', 'two-two', 'three'.repeat(50)]) },
  { request: B('HEAD /h HTTP/1.1\r\nHost: app\r\n\r\n'), response: B('HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n') },
  { request: B('DELETE /d HTTP/1.1\r\nHost: app\r\n\r\n'), response: B('HTTP/1.1 204 No Content\r\n\r\n') },
  { request: B('PUT /c HTTP/1.1\r\nHost: app\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello'), response: Buffer.concat([B('HTTP/1.1 100 Continue\r\n\r\n'), resp(201, 'ok')]) },
  { request: B('GET /chunk-ext HTTP/1.1\r\nHost: app\r\n\r\n'), response: B('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;name=v\r\nabcd\r\n0\r\nX-Trailer: 1\r\n\r\n') },
  { request: B('GET /last HTTP/1.0\r\nHost: app\r\n\r\n'), response: B(`HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n${'z'.repeat(3000)}`) },
];

function byPath(spans: SpanRecord[], kind: SpanKind): Map<string, SpanRecord> {
  return new Map(spans.filter((s) => s.kind === kind).map((s) => [String(s.attributes['url.path']), s]));
}

describe('HTTP/1.x on one keep-alive connection', () => {
  const base = runRecords(conversation(TURNS, whole, whole, { serverCloses: true }));

  test('every exchange gives a CLIENT span (proxy side) and a SERVER span (app side) with the right fields', () => {
    const servers = byPath(base.spans, SpanKind.SERVER);
    const clients = byPath(base.spans, SpanKind.CLIENT);
    const want: [string, string, number, number, number][] = [
      // path, method, status, request bytes, response bytes
      ['/a', 'GET', 200, TURNS[0]!.request.length, TURNS[0]!.response.length],
      ['/upload', 'POST', 200, TURNS[1]!.request.length, TURNS[1]!.response.length],
      ['/h', 'HEAD', 200, TURNS[2]!.request.length, TURNS[2]!.response.length],
      ['/d', 'DELETE', 204, TURNS[3]!.request.length, TURNS[3]!.response.length],
      ['/c', 'PUT', 201, TURNS[4]!.request.length, resp(201, 'ok').length],
      ['/chunk-ext', 'GET', 200, TURNS[5]!.request.length, TURNS[5]!.response.length],
      ['/last', 'GET', 200, TURNS[6]!.request.length, TURNS[6]!.response.length],
    ];
    assert.equal(servers.size, want.length);
    for (const [path, method, status, reqBytes, respBytes] of want) {
      const s = servers.get(path);
      const c = clients.get(path);
      assert.ok(s && c, path);
      assert.equal(s.attributes['http.request.method'], method);
      assert.equal(s.attributes['http.response.status_code'], status, path);
      assert.equal(s.attributes['strata.request.bytes'], reqBytes, `${path} request bytes`);
      assert.equal(c.attributes['strata.response.bytes'], respBytes, `${path} response bytes`);
      assert.equal(s.parentSpanId, c.spanId, `${path}: app SERVER under proxy CLIENT`);
      assert.equal(s.traceId, c.traceId);
      assert.equal(s.attributes['strata.incomplete'], undefined, path);
    }
    assert.equal(base.correlator.stats.orphanResponses, 0);
    assert.equal(base.correlator.stats.incomplete, 0);
  });

  test('property: the same byte streams cut into random segments (1 byte to whole) give the same spans', () => {
    const want = base.spans.map(shape).sort();
    const rnd = lcg(42);
    for (let round = 0; round < 150; round++) {
      const max = [1, 2, 7, 64, 1500, 1 << 20][round % 6] as number;
      const recs = conversation(TURNS, (d) => cut(d, rnd, max), (d) => cut(d, rnd, max), { serverCloses: true });
      const got = runRecords(recs, 1 + (round % 17)).spans.map(shape).sort();
      assert.deepEqual(got, want, `round ${round} (segments up to ${max} bytes)`);
    }
  });

  test('pipelined requests are answered in order', () => {
    const turns = TURNS.slice(0, 4);
    const r = runRecords(conversation(turns, whole, whole, { pipelined: true }));
    const servers = byPath(r.spans, SpanKind.SERVER);
    assert.deepEqual([...servers.keys()].sort(), ['/a', '/d', '/h', '/upload']);
    assert.equal(servers.get('/d')?.attributes['http.response.status_code'], 204);
    assert.equal(servers.get('/h')?.attributes['http.response.status_code'], 200);
    // one write carrying all requests, one carrying all responses: each request still gets its
    // own span and key (the seq of its own first byte)
    const merged: Turn[] = [{ request: Buffer.concat(turns.map((t) => t.request)), response: Buffer.concat(turns.map((t) => t.response)) }];
    const one = runRecords(conversation(merged, whole, whole));
    const oneServers = one.spans.filter((x) => x.kind === SpanKind.SERVER);
    assert.equal(oneServers.length, 4);
    assert.equal(new Set(oneServers.map((x) => x.spanId)).size, 4);
    assert.ok(oneServers.every((x) => x.parentSpanId && one.spans.some((c) => c.spanId === x.parentSpanId)));
  });

  test('a head longer than the capture keeps what was seen and is marked truncated', () => {
    const longHead = B(`GET /long HTTP/1.1\r\nHost: app\r\nX-Pad: ${'p'.repeat(400)}\r\n\r\n`);
    const turns: Turn[] = [{ request: longHead, response: resp(200, 'ok') }, TURNS[0]!];
    const r = runRecords(conversation(turns, whole, whole, { cap: 256 }));
    const s = byPath(r.spans, SpanKind.SERVER);
    assert.equal(s.get('/long')?.attributes['strata.request.head_truncated'], true);
    assert.equal(s.get('/long')?.attributes['http.request.method'], 'GET');
    assert.equal(s.get('/long')?.attributes['http.response.status_code'], 200);
    assert.equal(s.get('/a')?.attributes['http.response.status_code'], 200, 'the next request is found again');
    assert.ok(r.correlator.stats.truncatedHeads >= 1);
  });

  test('chunked bodies whose framing is lost in uncaptured bytes still end at their terminator', () => {
    const parts = Array.from({ length: 12 }, (_, i) => `${i}`.padEnd(100, '.'));
    const turns: Turn[] = [{ request: B('GET /lost HTTP/1.1\r\nHost: app\r\n\r\n'), response: chunked(parts) }, TURNS[0]!];
    // reads of 600 bytes, 256 captured: the chunk-size lines fall in the gaps
    const r = runRecords(conversation(turns, whole, (d) => (d.length > 600 ? [d.subarray(0, 600), d.subarray(600)] : [d]), { cap: 256 }));
    const c = byPath(r.spans, SpanKind.CLIENT);
    assert.equal(c.get('/lost')?.attributes['strata.incomplete'], undefined);
    assert.equal(c.get('/lost')?.attributes['strata.response.bytes'], chunked(parts).length);
    assert.equal(c.get('/a')?.attributes['http.response.status_code'], 200);
  });

  test('a response whose framing is lost ends after a quiet period', () => {
    const parts = Array.from({ length: 12 }, (_, i) => `${i}`.padEnd(100, '.'));
    const body = chunked(parts);
    const turns: Turn[] = [{ request: B('GET /quiet HTTP/1.1\r\nHost: app\r\n\r\n'), response: body }];
    // the last segment is bigger than the capture too: no terminator is ever seen
    const recs = conversation(turns, whole, (d) => [d.subarray(0, 600), d.subarray(600)], { cap: 256 });
    // the conversation's clock runs from 1 ms; the quiet period is 1 s
    const { spans } = runRecords(recs, 16, 0.5e9);
    assert.equal(spans.filter((x) => x.kind === SpanKind.CLIENT).length, 0, 'not before the quiet period');
    const later = runRecords(recs, 16, 1.5e9);
    assert.equal(later.spans.filter((x) => x.kind === SpanKind.CLIENT).length, 1);
  });

  test('Upgrade: the span ends at 101 and the tunnel is not parsed', () => {
    const turns: Turn[] = [{
      request: B('GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'),
      response: Buffer.concat([B('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'), Buffer.from([0x81, 0x05, 1, 2, 3, 4, 5])]),
    }, { request: Buffer.from([0x81, 0x85, 9, 9, 9, 9, 1, 2, 3, 4, 5]), response: Buffer.from([0x81, 0x01, 0x41]) }];
    const r = runRecords(conversation(turns, whole, whole, { serverCloses: true }));
    const servers = r.spans.filter((s) => s.kind === SpanKind.SERVER);
    assert.equal(servers.length, 1);
    assert.equal(servers[0]?.attributes['http.response.status_code'], 101);
    assert.equal(servers[0]?.attributes['strata.upgraded'], true);
    assert.equal(r.correlator.stats.nonHttp, 0, 'tunnel bytes are not counted as garbage');
  });

  test('non-HTTP traffic is recognised, ignored and counted once per connection', () => {
    const turns: Turn[] = [{ request: Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'latin1'), response: Buffer.from('\x16\x03\x03\x00\x5a', 'latin1') }];
    const r = runRecords(conversation(turns, (d) => cut(d, lcg(1), 3), whole, { serverCloses: true }));
    assert.equal(r.spans.length, 0);
    assert.ok(r.correlator.stats.nonHttp >= 1 && r.correlator.stats.nonHttp <= 2);
  });
});

describe('trace context formats', () => {
  const TID = '4bf92f3577b34da6a3ce929d0e0e4736';
  const SID = '00f067aa0ba902b7';
  const with_ = (h: string): Turn => ({ request: B(`GET /ctx HTTP/1.1\r\nHost: app\r\n${h}\r\n\r\n`), response: resp(200, 'ok') });
  const serverSpan = (h: string) => {
    const r = runRecords(conversation([with_(h)], whole, whole, { serverOnly: true }));
    return { span: r.spans.find((s) => s.kind === SpanKind.SERVER), stats: r.correlator.stats };
  };

  for (const [name, header, format] of [
    ['W3C traceparent', `traceparent: 00-${TID}-${SID}-01`, 'w3c'],
    ['b3 single header', `b3: ${TID}-${SID}-1`, 'b3'],
    ['b3 multi header', `X-B3-TraceId: ${TID}\r\nX-B3-SpanId: ${SID}\r\nX-B3-Sampled: 1`, 'b3'],
    ['uber-trace-id', `uber-trace-id: ${TID}:${SID}:0:1`, 'jaeger'],
  ] as const) {
    test(`${name}: the span joins the caller's trace`, () => {
      const { span } = serverSpan(header);
      assert.equal(span?.traceId, TID);
      assert.equal(span?.parentSpanId, SID);
      assert.equal(span?.parentIsRemote, true);
      assert.equal(span?.attributes['strata.context.format'], format);
    });
  }

  for (const header of ['traceparent: 00-zzzz-yyyy-01', 'b3: nonsense', `uber-trace-id: ${TID}`, 'X-B3-TraceId: 123']) {
    test(`malformed "${header}" is ignored and counted`, () => {
      const { span, stats } = serverSpan(header);
      assert.ok(span);
      assert.notEqual(span.traceId, TID);
      assert.equal(span.parentSpanId, undefined);
      assert.equal(stats.malformedContext, 1);
    });
  }

  test('X-Request-ID becomes an attribute', () => {
    const { span } = serverSpan('X-Request-ID: abc-123');
    assert.equal(span?.attributes['http.request.header.x-request-id'], 'abc-123');
  });
});

describe('orphans and pending work are counted', () => {
  test('a request without its response is pending until the connection ends, then incomplete', () => {
    const turns: Turn[] = [{ request: B('GET /wait HTTP/1.1\r\nHost: app\r\n\r\n'), response: Buffer.alloc(0) }];
    const open = runRecords(conversation(turns, whole, whole), 16, 1.2e6);
    assert.equal(open.correlator.stats.pending, 2, 'proxy and app side');
    const closed = runRecords(conversation(turns, whole, whole, { serverCloses: true }));
    assert.equal(closed.correlator.stats.pending, 0);
    assert.equal(closed.correlator.stats.incomplete, 2);
  });

  test('packets no traced socket sent or received are counted once each', () => {
    const src = { ip: [10, 244, 1, 99] as [number, number, number, number], port: 5555 };
    const dst = { ip: [10, 244, 1, 98] as [number, number, number, number], port: 80 };
    const stray = [1, 2, 3].map((i) => pktRecord({ ts: 1e6 + i, ifindex: 7, src, dst, seq: 1000 * i, dataLen: 100, dir: 1 }));
    // and one packet of a conversation that a traced socket does read: not an orphan
    const conv = conversation([TURNS[0]!], whole, whole, { serverOnly: true });
    const claimed = pktRecord({ ts: 1_001_500, ifindex: 7, src: CLIENT, dst: SERVER, seq: 0xfffff000, dataLen: TURNS[0]!.request.length, dir: 2 });
    const r = runRecords([...stray, claimed, ...conv]);
    assert.equal(r.correlator.stats.packetsWithoutConnection, 3);
  });
});
