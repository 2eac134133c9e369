// The correlator on events captured from a real lab run (two GETs through NGINX to the app).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { loadFixture, records, replay } from '../helpers/replay.ts';
import { lcg } from '../helpers/rng.ts';

const ns = (t: [number, number]) => t[0] * 1e9 + t[1];
const { batches, meta } = loadFixture('skeleton');

function tree(spans: SpanRecord[], path: string) {
  const nginx = spans.find((s) => s.kind === SpanKind.SERVER && s.resource.serviceName === 'ingress-nginx' && s.attributes['url.path'] === path);
  assert.ok(nginx, `nginx SERVER for ${path}`);
  const t = spans.filter((s) => s.traceId === nginx.traceId);
  const upstream = t.find((s) => s.kind === SpanKind.CLIENT);
  const app = t.find((s) => s.kind === SpanKind.SERVER && s.resource.serviceName === 'frontend');
  assert.ok(upstream && app);
  return { nginx, upstream, app, all: t };
}

test('replayed capture: traceparent request joins the caller trace with the full tree', () => {
  const { sink } = replay(batches, meta);
  const { nginx, upstream, app, all } = tree(sink.spans, '/fx/with-context');
  assert.equal(nginx.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(nginx.parentSpanId, '00f067aa0ba902b7');
  assert.equal(nginx.parentIsRemote, true);
  assert.equal(upstream.parentSpanId, nginx.spanId);
  assert.equal(app.parentSpanId, upstream.spanId);
  assert.equal(app.attributes['http.response.status_code'], 200);
  assert.equal(upstream.attributes['server.address'], meta.app.ip);
  const hops = all.filter((s) => s.kind === SpanKind.INTERNAL && s.parentSpanId === upstream.spanId);
  assert.deepEqual(hops.map((h) => h.attributes['strata.layer']).sort(), ['bridge', 'bridge', 'pod', 'pod', 'pod', 'pod']);
  assert.ok(hops.some((h) => h.attributes['network.interface.name'] === meta.app.hostVeth));
  const byId = new Map(all.map((s) => [s.spanId, s]));
  for (const s of all) {
    const p = s.parentSpanId ? byId.get(s.parentSpanId) : undefined;
    if (!p) continue;
    assert.ok(ns(s.start) >= ns(p.start) && ns(s.end) <= ns(p.end), `${s.name} inside ${p.name}`);
  }
});

test('replayed capture: a request without a header gets a derived trace id and no parent', () => {
  const { sink } = replay(batches, meta);
  const { nginx, all } = tree(sink.spans, '/fx/plain');
  assert.equal(nginx.parentSpanId, undefined);
  assert.match(nginx.traceId, /^[0-9a-f]{32}$/);
  assert.notEqual(nginx.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.ok(all.every((s) => s.attributes['url.path'] === '/fx/plain'));
});

test('the same records cut into different batches give the same spans', () => {
  const base = replay(batches, meta).sink.spans.map((s) => `${s.traceId}/${s.spanId}/${s.parentSpanId}/${s.name}/${ns(s.start)}/${ns(s.end)}`).sort();
  const recs = records(batches);
  const rnd = lcg(7);
  for (let round = 0; round < 20; round++) {
    const cut: Buffer[] = [];
    for (let i = 0; i < recs.length; ) {
      const n = 1 + Math.floor(rnd() * 8);
      cut.push(Buffer.concat(recs.slice(i, i + n)));
      i += n;
    }
    const again = replay(cut, meta).sink.spans.map((s) => `${s.traceId}/${s.spanId}/${s.parentSpanId}/${s.name}/${ns(s.start)}/${ns(s.end)}`).sort();
    assert.deepEqual(again, base);
  }
  assert.ok(base.length >= 6);
});
