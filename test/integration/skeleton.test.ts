// Walking skeleton, end to end on the real kernel: the lab (netns node, nginx ingress pod, app
// pod, client), the agent as a child process attaching real BPF programs, OTLP received and
// decoded with the OTLP protobuf schema, Jaeger JSON on disk.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Lab, inNetns, labDown, runClient } from '../../lab/lab.ts';
import { metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites, progIdsOf, stillLoaded, tcFilters } from '../helpers/kernel.ts';
import { KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, LabTracing, type Row } from '../helpers/lab-tracing.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);

describe('walking skeleton: one request, one cross-layer trace', { skip: why }, () => {
  const lt = new LabTracing('sk');
  let lab: Lab;
  const rows = () => lt.rows();
  const metrics = () => lt.metrics();
  const treeOf = (path: string, traceId?: string) => lt.tree(path, { traceId });

  before(async () => {
    await lt.up();
    lab = lt.lab;
  });

  after(() => lt.down());

  function assertTree(t: Row[], path: string, remoteParent?: string): void {
    const byId = new Map(t.map((r) => [r.span.spanId, r]));
    const servers = t.filter((r) => r.span.kind === KIND_SERVER);
    const nginx = servers.find((r) => r.service === 'ingress-nginx');
    const app = servers.find((r) => r.service === 'frontend');
    assert.ok(nginx && app, 'nginx and app SERVER spans');
    assert.equal(servers.length, 2, 'exactly two SERVER spans');
    // root: the nginx SERVER span, child of the caller's span when a traceparent came in
    assert.equal(nginx.span.parentSpanId, remoteParent ?? '');
    assert.equal(nginx.span.attributes['strata.layer'], 'proxy');
    assert.equal(nginx.span.attributes['http.request.method'], 'GET');
    assert.equal(nginx.span.attributes['http.response.status_code'], 200);
    const clients = t.filter((r) => r.span.kind === KIND_CLIENT);
    assert.equal(clients.length, 1, 'one upstream CLIENT span');
    const upstream = clients[0] as Row;
    assert.equal(upstream.span.parentSpanId, nginx.span.spanId, 'upstream CLIENT under nginx SERVER');
    assert.equal(upstream.service, 'ingress-nginx');
    assert.equal(upstream.span.attributes['server.address'], lab.pods.app.ip);
    assert.equal(app.span.parentSpanId, upstream.span.spanId, 'app SERVER under nginx CLIENT');
    assert.equal(app.span.attributes['strata.layer'], 'app');
    assert.equal(app.span.attributes['http.response.status_code'], 200);
    // hop spans on the pod's veth, under the upstream CLIENT span
    const hops = t.filter((r) => r.span.kind === KIND_INTERNAL && r.span.parentSpanId === upstream.span.spanId);
    const onAppVeth = hops.filter((r) => r.span.attributes['network.interface.name'] === lab.pods.app.hostVeth);
    assert.ok(onAppVeth.length >= 2, `hops on ${lab.pods.app.hostVeth}: ${hops.map((h) => h.span.name).join(', ')}`);
    // named after the pods joined, not the lab's interface names, in the order the bytes went: the
    // proxy's socket, its pod's eth0 (net_dev: the pod's stack, then its qdisc), the veth pair, the
    // bridge, the app pod's veth pair and eth0, the app's socket
    const chain = (rows: Row[], direction: string) =>
      rows.filter((h) => h.span.attributes['strata.direction'] === direction)
        .sort((x, y) => Number(x.span.startTimeUnixNano - y.span.startTimeUnixNano) || Number(x.span.endTimeUnixNano - y.span.endTimeUnixNano))
        .map((h) => `${h.span.attributes['strata.layer']} ${h.span.name}`);
    assert.deepEqual(chain(hops, 'request'), [
      'pod request ingress-nginx -> ingress-nginx eth0',
      'pod request ingress-nginx eth0 qdisc',
      'veth request ingress-nginx eth0 -> ingress-nginx veth',
      'bridge request ingress-nginx veth -> frontend veth',
      'veth request frontend veth -> frontend eth0',
      'pod request frontend eth0 -> frontend',
    ]);
    assert.ok(hops.some((h) => h.span.name === 'request frontend eth0 -> frontend' && h.span.attributes['k8s.pod.name'] === 'frontend'));
    // the request came in from outside the cluster on the node's uplink (the client's link): a node hop under the proxy's SERVER span
    const inbound = t.filter((r) => r.span.kind === KIND_INTERNAL && r.span.parentSpanId === nginx.span.spanId);
    assert.equal(chain(inbound, 'request')[0], `node request ${lab.nodeName} ${lab.clientVeth} -> ingress-nginx veth`, chain(inbound, 'request').join(', '));
    assert.ok(hops.some((h) => h.span.attributes['strata.layer'] === 'bridge'));
    for (const r of t) {
      // every span of the trace carries its own request's path: nothing cross-linked
      assert.equal(r.span.attributes['url.path'], path, `${r.span.name} carries ${path}`);
      if (!r.span.parentSpanId || r.span.parentSpanId === remoteParent) continue;
      const parent = byId.get(r.span.parentSpanId);
      assert.ok(parent, `parent of ${r.span.name} is in the trace`);
      assert.ok(r.span.startTimeUnixNano >= parent.span.startTimeUnixNano, `${r.span.name} starts inside ${parent.span.name}`);
      assert.ok(r.span.endTimeUnixNano <= parent.span.endTimeUnixNano, `${r.span.name} ends inside ${parent.span.name}`);
      assert.ok(r.span.endTimeUnixNano >= r.span.startTimeUnixNano);
    }
  }

  test('a request with a traceparent joins the caller trace, hop by hop', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const res = await runClient(lab, { paths: ['/with-context'], headers: { traceparent: `00-${traceId}-${parent}-01` } });
    assert.equal(res[0]?.status, 200);
    const t = await treeOf('/with-context', traceId);
    assertTree(t, '/with-context', parent);
    assert.ok(t.every((r) => r.span.traceId === traceId));
  });

  test('a request without any header still becomes one trace', async () => {
    const res = await runClient(lab, { paths: ['/no-context'] });
    assert.equal(res[0]?.status, 200);
    const t = await treeOf('/no-context');
    assertTree(t, '/no-context');
    const roots = rows().filter((r) => r.span.attributes['url.path'] === '/no-context' && r.span.kind === KIND_SERVER && r.service === 'ingress-nginx');
    assert.equal(roots.length, 1, 'one root for the request');
  });

  test('50 concurrent keep-alive requests with distinct paths give 50 separate traces', async () => {
    const paths = Array.from({ length: 50 }, (_, i) => `/c/${i}`);
    const res = await runClient(lab, { paths, concurrency: 50, keepalive: true });
    assert.deepEqual(res.map((r) => r.status), paths.map(() => 200));
    const traces = new Set<string>();
    for (const p of paths) {
      const t = await treeOf(p);
      assertTree(t, p);
      traces.add(t[0]?.span.traceId ?? '');
    }
    assert.equal(traces.size, 50);
  });

  test('garbage and truncated requests are counted and do not crash the agent', async () => {
    const script = `
      const net = require('node:net');
      const send = (bytes) => new Promise((res) => { const s = net.connect(80, '${lab.pods.ingress.ip}', () => { s.end(bytes); });
        s.on('data', () => {}); s.on('close', res); s.on('error', res); });
      (async () => {
        await send(Buffer.from([0, 1, 2, 255, 254, 13, 10, 13, 10, 7, 8]));
        await send('GET /truncated HTTP/1.1\\r\\nHost: x\\r\\nX-Half: ');
        await send(Buffer.alloc(4096, 0x41));
        await send(Buffer.concat([Buffer.from('GET '), Buffer.from([0, 1, 255, 27, 91, 50, 74]), Buffer.from(' HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')]));
      })();`;
    await inNetns(lab.clientNetns, process.execPath, ['-e', script]);
    const seen: Record<string, number> = { nonHttp: 0, incomplete: 0, headIncomplete: 0, badRequestLine: 0 };
    await waitFor(async () => {
      const m = await metrics();
      seen.nonHttp = metricValue(m, 'strata_correlator_non_http_total');
      seen.incomplete = metricValue(m, 'strata_correlator_incomplete_total');
      seen.headIncomplete = metricValue(m, 'strata_correlator_invalid_requests_total', 'reason="head_incomplete"');
      seen.badRequestLine = metricValue(m, 'strata_correlator_invalid_requests_total', 'reason="bad_request_line"');
      Object.assign(seen, { keep: metricValue(m, 'strata_sampling_keep_ratio'), shed: metricValue(m, 'strata_kernel_shed_requests_total') });
      return seen.nonHttp >= 2 && seen.incomplete >= 1 && seen.headIncomplete >= 1 && seen.badRequestLine >= 1;
    }, () => `non-HTTP, incomplete and invalid-request counters (last seen ${JSON.stringify(seen)})`, 15_000);
    assert.equal((await fetch(`http://127.0.0.1:${lt.agent?.metricsPort}/healthz`)).status, 200);
    // nesting held without the clamp that guards against clock-offset drift
    assert.equal(metricValue(await metrics(), 'strata_correlator_clock_clamps_total'), 0);
    // and the agent still traces
    await runClient(lab, { paths: ['/after-garbage'] });
    assertTree(await treeOf('/after-garbage'), '/after-garbage');
    // nothing raw reached the backend: no control characters in any name or string attribute
    for (const r of rows()) {
      assert.ok(!/[\u0000-\u001f\u007f]/.test(r.span.name), JSON.stringify(r.span.name));
      for (const [k, v] of Object.entries(r.span.attributes)) assert.ok(typeof v !== 'string' || !/[\u0000-\u001f\u007f]/.test(v), `${k}: ${JSON.stringify(v)}`);
    }
  });

  test('Jaeger JSON holds the same spans as OTLP after a clean stop, and nothing stays attached', async () => {
    assert.ok(lt.agent);
    const veths = [lab.pods.app.hostVeth, lab.pods.ingress.hostVeth, lab.clientVeth];
    assert.ok(veths.every((v) => tcFilters(lab.nodeNetns, v).includes('tc_ingress')), 'filters attached while running');
    const progs = progIdsOf(lt.agent.child.pid as number);
    assert.ok(progs.length > 0, 'the agent holds its BPF programs');
    const { code } = await stopAgent(lt.agent, 'SIGTERM');
    lt.agent = undefined;
    assert.equal(code, 0);
    const jaeger = JSON.parse(readFileSync(join(lt.tracesDir, 'jaeger-traces.json'), 'utf8')) as { data: { spans: { spanID: string }[] }[] };
    const jaegerIds = new Set(jaeger.data.flatMap((t) => t.spans.map((s) => s.spanID)));
    const otlpIds = new Set(rows().map((r) => r.span.spanId));
    assert.ok(otlpIds.size > 300);
    assert.deepEqual([...otlpIds].filter((id) => !jaegerIds.has(id)), []);
    const otlpFile = JSON.parse(readFileSync(join(lt.tracesDir, 'otlp-traces.json'), 'utf8')) as { resourceSpans: unknown[] };
    assert.ok(otlpFile.resourceSpans.length > 0);
    for (const v of veths) assert.equal(tcFilters(lab.nodeNetns, v), '', `no filter left on ${v}`);
    // this agent's programs (other agents and tests on the machine may hold programs of the same names)
    await waitFor(() => stillLoaded(progs).length === 0, 'BPF programs released', 10_000);
  });

  test('after SIGKILL, a restart takes its leftovers over and a clean stop removes them', async () => {
    const killed = await startAgent(lt.agentArgs());
    const killedProgs = progIdsOf(killed.child.pid as number);
    assert.equal((await stopAgent(killed, 'SIGKILL')).signal, 'SIGKILL');
    // TC filters hold their programs after the process is gone: the next start replaces them
    assert.match(tcFilters(lab.nodeNetns, lab.pods.app.hostVeth), /tc_ingress/);
    lt.agent = await startAgent(lt.agentArgs());
    await runClient(lab, { paths: ['/after-restart'] });
    assertTree(await treeOf('/after-restart'), '/after-restart');
    const progs = [...killedProgs, ...progIdsOf(lt.agent.child.pid as number)];
    assert.equal((await stopAgent(lt.agent, 'SIGTERM')).code, 0);
    lt.agent = undefined;
    for (const v of [lab.pods.app.hostVeth, lab.pods.ingress.hostVeth, lab.clientVeth]) assert.equal(tcFilters(lab.nodeNetns, v), '');
    await waitFor(() => stillLoaded(progs).length === 0, 'BPF programs released: the killed agent\'s (held by its TC filters until replaced) and the restarted one\'s', 10_000);
    await labDown(lt.prefix);
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((l) => l.startsWith(`${lt.prefix}-`));
    assert.deepEqual(left, [], 'no namespace of the test remains');
  });
});
