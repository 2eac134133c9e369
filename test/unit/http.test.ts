import assert from 'node:assert/strict';
import { test } from 'node:test';
import { looksLikeRequest, looksLikeResponse, parseHead, splitTarget } from '../../agent/src/correlate/http.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

test('request head: method, target, version, headers (lowercased, first wins), lengths', () => {
  const s = 'POST /orders?id=7 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nX-Request-ID: r1\r\nx-request-id: r2\r\n\r\nitem=42&qty=1';
  const h = parseHead(b(s), 0, s.length, true);
  assert.ok(h);
  assert.equal(h.method, 'POST');
  assert.equal(h.target, '/orders?id=7');
  assert.equal(h.version, 'HTTP/1.1');
  assert.equal(h.headers.get('x-request-id'), 'r1');
  assert.equal(h.contentLength, 12);
  assert.equal(h.headLen, s.indexOf('\r\n\r\n') + 4);
  assert.equal(h.complete, true);
  assert.deepEqual(splitTarget(h.target), { path: '/orders', query: 'id=7' });
});

test('a head cut by the capture keeps what was seen and drops the cut header', () => {
  const s = 'GET /x HTTP/1.1\r\nHost: a\r\ntraceparent: 00-4bf92f3577b3';
  const h = parseHead(b(s), 0, s.length, true);
  assert.ok(h);
  assert.equal(h.complete, false);
  assert.equal(h.headLen, -1);
  assert.equal(h.headers.get('host'), 'a');
  assert.equal(h.headers.has('traceparent'), false);
});

test('response head: status, chunked, content-length; junk is refused', () => {
  const s = 'HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n';
  const h = parseHead(b(s), 0, s.length, false);
  assert.equal(h?.status, 503);
  assert.equal(h?.chunked, true);
  assert.equal(h?.contentLength, -1);
  assert.equal(parseHead(b('HTTP/2 200\r\n\r\n'), 0, 14, false), null);
  assert.equal(parseHead(b('HTTP/1.1 abc\r\n\r\n'), 0, 16, false), null);
  assert.equal(parseHead(b('BREW /pot HTTP/1.1\r\n\r\n'), 0, 22, true), null);
});

test('cheap sniffers', () => {
  assert.equal(looksLikeRequest(b('GET / HTTP/1.1'), 0, 14), true);
  assert.equal(looksLikeRequest(b('\x00\x01\x02 GET'), 0, 7), false);
  assert.equal(looksLikeRequest(b('GETX'), 0, 4), false);
  assert.equal(looksLikeResponse(b('HTTP/1.1 200 OK'), 0, 15), true);
  assert.equal(looksLikeResponse(b('HTTP/1.1'), 0, 8), false);
});
