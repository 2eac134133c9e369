// Load shedding in the kernel (issue 8): with a keep ratio below 1 the kernel reports only a share
// of the requests, and every reported one whole: NGINX's server and upstream spans, the app's
// server span and the hops between them are all there, and nothing of a shed request is. The
// count is exact: requests exported + requests shed (strata_kernel_shed_requests_total) = sent.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runClient } from '../../lab/lab.ts';
import { metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, LabTracing, type Row, assertNested, chain } from '../helpers/lab-tracing.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);

const N = 80;

class ShedLab extends LabTracing {
  override agentArgs(): string[] {
    return [...super.agentArgs(), '--set', 'shedding.keepRatio=0.5', '--set', 'shedding.cpuBudget=0'];
  }
}

describe('load shedding in the kernel keeps whole requests and counts the rest', { skip: why }, () => {
  const lt = new ShedLab('sh');

  before(() => lt.up());
  after(() => lt.down());

  test(`${N} requests at keep ratio 0.5: exported + shed = ${N}, every exported trace whole`, async () => {
    const paths = Array.from({ length: N }, (_, i) => `/shed/${i}`);
    // keep-alive: shed and kept requests alternate on the same client and upstream connections
    const res = await runClient(lt.lab, { paths, concurrency: 4, keepalive: true });
    assert.deepEqual(res.filter((r) => r.status !== 200), []);

    const isShedPath = (r: Row) => String(r.span.attributes['url.path'] ?? '').startsWith('/shed/');
    const roots = () => lt.rows().filter((r) => r.span.kind === KIND_SERVER && r.service === 'ingress-nginx' && isShedPath(r));
    const settled = await waitFor(async () => {
      const shed = metricValue(await lt.metrics(), 'strata_kernel_shed_requests_total');
      const kept = new Set(roots().map((r) => r.span.attributes['url.path'])).size;
      return kept + shed === N ? { kept, shed } : undefined;
    }, `exported + shed requests = ${N}`, 60_000);
    // 80 fair coin flips: all heads or all tails has probability 2^-79
    assert.ok(settled.kept > 0 && settled.shed > 0, `kept ${settled.kept}, shed ${settled.shed}`);

    // every kept request: one trace, whole (proxy server -> proxy client -> hops -> app server)
    const keptPaths = new Set(roots().map((r) => String(r.span.attributes['url.path'])));
    for (const path of keptPaths) {
      const t = await lt.tree(path);
      const { app } = chain(t);
      assert.equal(app.span.attributes['url.path'], path);
      assert.ok(t.filter((r) => r.span.kind === KIND_INTERNAL).length >= 6, `${path}: hop spans missing`);
      assertNested(t);
    }
    // nothing of a shed request: no app span or upstream span without its kept root
    const rows = lt.rows();
    const appPaths = rows.filter((r) => r.span.kind === KIND_SERVER && r.service === 'frontend' && isShedPath(r)).map((r) => String(r.span.attributes['url.path']));
    assert.deepEqual([...new Set(appPaths)].sort(), [...keptPaths].sort());
    const upstreamPaths = rows.filter((r) => r.span.kind === KIND_CLIENT && r.service === 'ingress-nginx' && isShedPath(r)).map((r) => String(r.span.attributes['url.path']));
    assert.deepEqual([...new Set(upstreamPaths)].sort(), [...keptPaths].sort());

    const m = await lt.metrics();
    assert.ok(metricValue(m, 'strata_kernel_shed_events_total') > 0);
    assert.equal(metricValue(m, 'strata_sampling_keep_ratio'), 0.5);
    // shed requests between kept ones on a keep-alive connection are not losses
    assert.equal(metricValue(m, 'strata_correlator_seq_gaps_total'), 0);
    assert.ok(metricValue(m, 'strata_correlator_shed_gaps_total') > 0);
    assert.equal(metricValue(m, 'strata_drops_total', 'stage="js_queue"'), 0);
    assert.equal(metricValue(m, 'strata_drops_total', 'stage="kernel_ringbuf"'), 0);
  });

  test("a budget below the agent's own floor still traces a quiet node: the floor is learned, and a request above it is kept whole", async () => {
    if (lt.agent) await stopAgent(lt.agent);
    const budget = 0.002;
    lt.agent = await startAgent([...lt.agentArgs(), '--set', 'shedding.keepRatio=1', '--set', `shedding.cpuBudget=${budget}`, '--set', 'shedding.minKeepRatio=0.001']);
    // ring polling, timers and metrics alone cost the agent more than the budget
    const floor = await waitFor(async () => {
      const f = metricValue(await lt.metrics(), 'strata_agent_cpu_floor_cores');
      return f > budget ? f : undefined;
    }, 'the floor learned from request-free intervals', 30_000);
    // the controller works to the usage above it: idle, nothing was ever shed
    const m = await lt.metrics();
    assert.equal(metricValue(m, 'strata_sampling_adjustments_total'), 0, `idle at a floor of ${floor} cores against a budget of ${budget}: never shed`);
    assert.equal(metricValue(m, 'strata_sampling_keep_ratio'), 1);
    assert.equal((await runClient(lt.lab, { paths: ['/quiet'] }))[0]?.status, 200);
    assert.equal(chain(await lt.tree('/quiet')).app.span.attributes['url.path'], '/quiet');
  });

  test('probes.disable leaves an optional family unloaded, and says so', async () => {
    if (lt.agent) await stopAgent(lt.agent);
    lt.agent = await startAgent([...lt.agentArgs(), '--set', 'probes.disable=net_dev']);
    const m = await lt.metrics();
    assert.equal(metricValue(m, 'strata_probe_attached', 'probe="net_dev"'), 0);
    assert.equal(metricValue(m, 'strata_probe_attached', 'probe="sock_syscalls"'), 1);
    assert.equal(metricValue(m, 'strata_probe_attached', 'probe="veth_tc"'), 1);
    assert.match(lt.agent.stderr(), /net_dev not loaded: probes\.disable/);
    assert.equal(Object.hasOwn(lt.agent.ready().probes as object, 'net_dev'), false);
  });
});
