// The correlator on the traffic real clusters carry, with real NGINX and real upstreams in the
// lab: pipelining, chunked responses, a 1 MiB upload over many reads, HTTP/1.0 close-delimited
// responses, b3 / uber-trace-id contexts, and a Service IP behind DNAT without any header.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curlFromClient, pipelineFromClient, runClient } from '../../lab/lab.ts';
import { holdsBpfStatsFd, metricValue } from '../helpers/agent-proc.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { KIND_INTERNAL, KIND_SERVER, LabTracing, assertNested, chain } from '../helpers/lab-tracing.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);

describe('HTTP/1.x through real NGINX and real upstreams', { skip: why }, () => {
  const lt = new LabTracing('ht');

  before(() => lt.up());
  after(() => lt.down());

  test('by default the agent leaves the kernel\'s BPF run-time statistics off (they cost every BPF run on the node)', () => {
    const pid = lt.agent?.child.pid;
    assert.ok(pid, 'the agent runs');
    assert.equal(holdsBpfStatsFd(pid), false, 'no BPF_ENABLE_STATS fd');
  });

  test('pipelined requests on one connection: one trace each, in order', async () => {
    const paths = ['/pipe/1', '/pipe/2', '/pipe/3'];
    const res = await pipelineFromClient(lt.lab, lt.lab.nginxUrl, paths);
    assert.deepEqual(res.map((r) => r.path), paths);
    for (const p of paths) {
      const t = await lt.tree(p, { hops: 2 });
      const { nginx, app } = chain(t);
      assert.equal(nginx.span.attributes['http.response.status_code'], 200);
      assert.equal(app.span.attributes['url.path'], p);
      assert.ok(t.every((r) => r.span.attributes['url.path'] === p));
      assertNested(t);
    }
  });

  test('chunked responses end at their last chunk', async () => {
    const r = await curlFromClient(lt.lab, `${lt.lab.nginxUrl}/chunked/7`);
    assert.equal(r.status, 200);
    const t = await lt.tree('/chunked/7');
    const { nginx, upstream, app } = chain(t);
    for (const s of [nginx, upstream, app]) {
      assert.equal(s.span.attributes['strata.incomplete'], undefined, s.span.name);
      assert.equal(s.span.attributes['http.response.status_code'], 200);
    }
    assert.ok(Number(app.span.attributes['strata.response.bytes']) >= 700);
    assertNested(t);
  });

  test('a 1 MiB POST over many reads: exact sizes, one trace', async () => {
    const file = join(lt.lab.stateDir, 'upload.bin');
    writeFileSync(file, Buffer.alloc(1 << 20, 0x61));
    const r = await curlFromClient(lt.lab, `${lt.lab.nginxUrl}/upload/big`, ['-X', 'POST', '--data-binary', `@${file}`, '-H', 'Content-Type: application/octet-stream']);
    assert.equal(r.status, 200);
    assert.match(r.body, /"bytes":1048576/);
    const t = await lt.tree('/upload/big');
    const { nginx, upstream, app } = chain(t);
    for (const s of [nginx, upstream, app]) {
      assert.equal(s.span.attributes['http.request.method'], 'POST');
      // head + body: the body counted from syscall return values, not from the capture
      assert.ok(Number(s.span.attributes['strata.request.bytes']) > 1 << 20, `${s.span.name}: ${s.span.attributes['strata.request.bytes']}`);
      assert.ok(Number(s.span.attributes['strata.request.bytes']) < (1 << 20) + 2048);
    }
    assertNested(t);
  });

  test('HTTP/1.0 close-delimited responses end at close', async () => {
    const r = await curlFromClient(lt.lab, `${lt.lab.nginxUrl}/h10/x`);
    assert.equal(r.status, 200);
    const t = await lt.tree('/h10/x', { hops: 4 });
    const raw = t.find((x) => x.span.kind === KIND_SERVER && x.span.attributes['server.port'] === 8081);
    assert.ok(raw, 'the raw HTTP/1.0 server span');
    const upstream = t.find((x) => x.span.spanId === raw.span.parentSpanId);
    assert.equal(upstream?.span.attributes['server.port'], 8081);
    assert.equal(raw.span.attributes['http.response.status_code'], 200);
    assert.equal(raw.span.attributes['strata.incomplete'], undefined);
    assert.ok(Number(raw.span.attributes['strata.response.bytes']) > 1500);
    // the response path hop by hop, though NGINX may read the response together with the FIN
    const back = t.filter((x) => x.span.kind === KIND_INTERNAL && x.span.parentSpanId === upstream?.span.spanId && x.span.attributes['strata.direction'] === 'response');
    assert.ok(back.length >= 2, `response hops: ${back.map((h) => h.span.name).join(', ')}`);
    assert.equal(upstream?.span.attributes['strata.hops.incomplete'], undefined);
    assertNested(t);
  });

  const TID = '0af7651916cd43dd8448eb211c80319c';
  for (const [name, headers] of [
    ['b3', { b3: `${TID}-b7ad6b7169203331-1` }],
    ['uber-trace-id', { 'uber-trace-id': `${TID}:b7ad6b7169203331:0:1` }],
  ] as const) {
    test(`${name} requests land in the caller's trace`, async () => {
      const path = `/ctx/${name}`;
      const res = await runClient(lt.lab, { paths: [path], headers });
      assert.equal(res[0]?.status, 200);
      const t = await lt.tree(path, { traceId: TID });
      const { nginx } = chain(t);
      assert.equal(nginx.span.parentSpanId, 'b7ad6b7169203331');
      assert.ok(t.every((r) => r.span.traceId === TID));
      assertNested(t, 'b7ad6b7169203331');
    });
  }

  test('a malformed traceparent does not join anything and is counted', async () => {
    const before = metricValue(await lt.metrics(), 'strata_correlator_malformed_context_total');
    await runClient(lt.lab, { paths: ['/ctx/bad'], headers: { traceparent: '00-notahex-00f067aa0ba902b7-01' } });
    const t = await lt.tree('/ctx/bad');
    const { nginx } = chain(t);
    assert.equal(nginx.span.parentSpanId, '');
    await waitFor(async () => metricValue(await lt.metrics(), 'strata_correlator_malformed_context_total') > before, 'malformed counter');
  });

  test('an Authorization header sent by the client never appears in any export', async () => {
    const secret = 'Bearer tok-7f3a9c1e5b';
    await runClient(lt.lab, { paths: ['/private'], headers: { Authorization: secret, Cookie: 'sid=0xfeedface' } });
    const t = await lt.tree('/private');
    chain(t);
    // the file exporter writes after a short debounce: wait until it holds this trace
    const files = () => ['otlp-traces.json', 'jaeger-traces.json'].map((f) => {
      try {
        return readFileSync(join(lt.tracesDir, f), 'utf8');
      } catch {
        return '';
      }
    });
    await waitFor(() => files().every((f) => f.includes('/private')), 'trace files with /private');
    for (const text of [...files(), ...lt.receiver.requests.map((r) => r.body.toString('latin1'))]) {
      assert.ok(!text.includes('tok-7f3a9c1e5b'), 'no Authorization value');
      assert.ok(!text.includes('0xfeedface'), 'no Cookie value');
    }
  });

  test('without any header, a request through a DNAT-ed Service IP is one trace with its hops', async () => {
    const r = await curlFromClient(lt.lab, `${lt.lab.nginxUrl}/svc/plain`);
    assert.equal(r.status, 200);
    const t = await lt.tree('/svc/plain');
    const { upstream, app } = chain(t);
    // NGINX's socket still sees the Service IP; the app sees the pod IP; the key survived
    assert.equal(upstream.span.attributes['server.address'], lt.lab.serviceIp);
    assert.equal(app.span.attributes['server.address'], lt.lab.pods.app.ip);
    const hops = t.filter((x) => x.span.kind === KIND_INTERNAL && x.span.parentSpanId === upstream.span.spanId);
    assert.ok(hops.some((h) => h.span.attributes['network.interface.name'] === lt.lab.pods.app.hostVeth && h.span.attributes['strata.direction'] === 'request'));
    assert.ok(hops.some((h) => h.span.attributes['network.interface.name'] === lt.lab.pods.app.hostVeth && h.span.attributes['strata.direction'] === 'response'));
    assertNested(t);
  });
});
