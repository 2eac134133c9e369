// Recorded event batches of a real lab run (scripts/capture-fixture.ts --scenario http):
// pipelining, chunked, a 1 MiB POST, HTTP/1.0 close-delimited, b3, a DNAT'ed Service IP;
// replayed through decoder and correlator without root.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { loadFixture, replay } from '../helpers/replay.ts';

const { batches, meta } = loadFixture('http');
const { sink, correlator } = replay(batches, meta);
const spans = sink.spans;

function chainOf(path: string): { nginx: SpanRecord; upstream: SpanRecord; app: SpanRecord; all: SpanRecord[] } {
  const nginx = spans.find((s) => s.kind === SpanKind.SERVER && s.resource.serviceName === 'ingress-nginx' && s.attributes['url.path'] === path);
  assert.ok(nginx, `nginx SERVER for ${path}`);
  const all = spans.filter((s) => s.traceId === nginx.traceId);
  const upstream = all.find((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === nginx.spanId);
  assert.ok(upstream, `upstream CLIENT for ${path}`);
  const app = all.find((s) => s.kind === SpanKind.SERVER && s.parentSpanId === upstream.spanId);
  assert.ok(app, `upstream SERVER for ${path}`);
  return { nginx, upstream, app, all };
}

describe('replayed lab capture: HTTP/1.x shapes through real NGINX', () => {
  test('nothing lost or orphaned', () => {
    assert.equal(correlator.stats.orphanResponses, 0);
    assert.equal(correlator.stats.incomplete, 0);
    assert.equal(correlator.stats.exchanges, 30);
  });

  test('pipelined requests: one trace each', () => {
    const ids = new Set<string>();
    for (const p of ['/fx/pipe/1', '/fx/pipe/2', '/fx/pipe/3']) {
      const { all, app } = chainOf(p);
      assert.equal(app.attributes['http.response.status_code'], 200);
      assert.ok(all.every((s) => s.attributes['url.path'] === p));
      ids.add(all[0]?.traceId ?? '');
    }
    assert.equal(ids.size, 3);
  });

  test('chunked: the upstream response ends at its last chunk, sizes agree on both sides', () => {
    const { upstream, app } = chainOf('/chunked/5');
    assert.equal(upstream.attributes['strata.response.bytes'], app.attributes['strata.response.bytes']);
    assert.ok(Number(app.attributes['strata.response.bytes']) > 500);
  });

  test('1 MiB POST: sizes from the syscalls, not the captures', () => {
    const { nginx, upstream, app } = chainOf('/fx/upload');
    for (const s of [nginx, upstream, app]) {
      assert.ok(Number(s.attributes['strata.request.bytes']) > 1 << 20, s.name);
      assert.equal(s.attributes['http.request.method'], 'POST');
    }
    assert.equal(upstream.attributes['strata.request.bytes'], app.attributes['strata.request.bytes']);
  });

  test('HTTP/1.0 upstream: the close-delimited response ends at close', () => {
    const { upstream, app } = chainOf('/h10/fx');
    assert.equal(upstream.attributes['server.port'], 8081);
    assert.equal(app.attributes['strata.response.bytes'], upstream.attributes['strata.response.bytes']);
    assert.ok(Number(app.attributes['strata.response.bytes']) > 1500);
  });

  test('b3: the trace is the caller\'s', () => {
    const { nginx, all } = chainOf('/fx/b3');
    assert.equal(nginx.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(nginx.parentSpanId, 'b7ad6b7169203331');
    assert.ok(all.every((s) => s.traceId === nginx.traceId));
  });

  test('Service IP behind DNAT: linked by the client endpoint and seq, hops on the app veth', () => {
    const { upstream, app, all } = chainOf('/svc/fx');
    assert.equal(upstream.attributes['server.address'], '10.96.0.10');
    assert.equal(app.attributes['server.address'], meta.app.ip);
    const hops = all.filter((s) => s.kind === SpanKind.INTERNAL && s.parentSpanId === upstream.spanId);
    assert.ok(hops.some((h) => h.attributes['network.interface.name'] === meta.app.hostVeth));
  });
});
