// Sampling decided at the end of each local trace, and what leaves the node from the headers.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { conversation, runRecords, type Turn } from '../helpers/conversation.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const whole = (d: Buffer) => [d];
const ok = (body = 'ok') => B(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
const turn = (path: string, headers = '', response = ok()): Turn => ({ request: B(`GET ${path} HTTP/1.1\r\nHost: app\r\n${headers}\r\n`), response });
const paths = (spans: SpanRecord[]) => [...new Set(spans.filter((s) => s.kind !== SpanKind.INTERNAL).map((s) => String(s.attributes['url.path'])))].sort();

describe('sampling', () => {
  const turns = [turn('/ok-1'), turn('/ok-2'), turn('/fail', '', B('HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n')), turn('/ok-3')];

  test('ratio 1 keeps everything; ratio 0 keeps only failures, with all their spans', () => {
    const all = runRecords(conversation(turns, whole, whole), 16, undefined, { sampling: { ratio: 1 } });
    assert.deepEqual(paths(all.spans), ['/fail', '/ok-1', '/ok-2', '/ok-3']);
    const none = runRecords(conversation(turns, whole, whole), 16, undefined, { sampling: { ratio: 0 } });
    assert.deepEqual(paths(none.spans), ['/fail']);
    // the whole local trace: proxy CLIENT and app SERVER together
    assert.deepEqual(none.spans.filter((s) => s.kind !== SpanKind.INTERNAL).map((s) => s.kind).sort(), [SpanKind.SERVER, SpanKind.CLIENT].sort());
    assert.equal(none.correlator.stats.tracesSampledOut, 3);
    assert.equal(none.correlator.stats.tracesKept, 1);
    assert.ok(none.correlator.stats.spansSampledOut >= 6);
    const noErrors = runRecords(conversation(turns, whole, whole), 16, undefined, { sampling: { ratio: 0, keepErrors: false } });
    assert.deepEqual(noErrors.spans, []);
  });

  test('slow requests are kept whatever the ratio', () => {
    // the synthetic clock advances 1 µs per event: every exchange here lasts a few µs
    const r = runRecords(conversation(turns, whole, whole), 16, undefined, { sampling: { ratio: 0, keepErrors: false, slowThresholdMs: 0.001 } });
    assert.deepEqual(paths(r.spans), ['/fail', '/ok-1', '/ok-2', '/ok-3']);
  });

  test('a ratio keeps the same traces on every run (decided by trace id)', () => {
    const many = Array.from({ length: 200 }, (_, i) => turn(`/r/${i}`));
    const a = paths(runRecords(conversation(many, whole, whole), 16, undefined, { sampling: { ratio: 0.3 } }).spans);
    const b = paths(runRecords(conversation(many, whole, whole), 16, undefined, { sampling: { ratio: 0.3 } }).spans);
    assert.deepEqual(a, b);
    assert.ok(a.length > 30 && a.length < 100, `kept ${a.length} of 200 at ratio 0.3`);
  });

  test("the caller's sampled flag is respected", () => {
    const tp = (flags: string) => `traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-${flags}\r\n`;
    const ts = [turn('/sampled', tp('01')), turn('/not-sampled', tp('00'))];
    const r = runRecords(conversation(ts, whole, whole, { serverOnly: true }), 16, undefined, { sampling: { ratio: 0 } });
    assert.deepEqual(paths(r.spans), ['/sampled']);
    const ignore = runRecords(conversation(ts, whole, whole, { serverOnly: true }), 16, undefined, { sampling: { ratio: 1, respectParentSampled: false } });
    assert.deepEqual(paths(ignore.spans), ['/not-sampled', '/sampled']);
  });
});

describe('privacy', () => {
  const secret = 'Bearer s3cr3t-t0ken';
  const t = turn('/private', `Authorization: ${secret}\r\nCookie: session=abc\r\nX-Request-ID: rid-1\r\n`);

  test('only allow-listed headers become attributes; Authorization and Cookie never do', () => {
    const r = runRecords(conversation([t], whole, whole));
    const text = JSON.stringify(r.spans);
    assert.ok(!text.includes('s3cr3t'), 'no Authorization value');
    assert.ok(!text.includes('session=abc'), 'no Cookie value');
    const server = r.spans.find((s) => s.kind === SpanKind.SERVER);
    assert.equal(server?.attributes['http.request.header.x-request-id'], 'rid-1');
  });

  test('a redacted header is redacted even when allow-listed', () => {
    const r = runRecords(conversation([t], whole, whole), 16, undefined, { headerAllowList: ['Authorization', 'cookie', 'x-request-id'] });
    const server = r.spans.find((s) => s.kind === SpanKind.SERVER);
    assert.equal(server?.attributes['http.request.header.authorization'], '[REDACTED]');
    assert.equal(server?.attributes['http.request.header.cookie'], '[REDACTED]');
    assert.ok(!JSON.stringify(r.spans).includes('s3cr3t'));
  });

  test('request and response bodies never reach a span', () => {
    const body = 'card=4111111111111111';
    const post: Turn = { request: B(`POST /pay HTTP/1.1\r\nHost: app\r\nContent-Length: ${body.length}\r\n\r\n${body}`), response: ok('balance=12345') };
    const r = runRecords(conversation([post], whole, whole));
    const text = JSON.stringify(r.spans);
    assert.ok(!text.includes('4111111111111111') && !text.includes('balance=12345'));
    assert.ok(r.spans.length >= 2);
  });
});
