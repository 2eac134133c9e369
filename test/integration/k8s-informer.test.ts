// The agent's Kubernetes discovery source (agent/src/k8s/kube.ts) against a real kube-apiserver
// (v1.20, built from Debian's source package by scripts/k8s-build.sh; lab/k8s/cluster.ts), with the
// agent's own credentials: a token of the strata ServiceAccount bound to the ClusterRole of
// manifests/base, applied with Debian's kubectl. No mocked API server.
//   - RBAC: what the agent needs works (list/watch pods, get replicasets and nodes), and no more
//     (listing secrets, patching or deleting pods, reading deployments: 403).
//   - The informer sees the pods of its node only (fieldSelector spec.nodeName), their updates
//     (labels, IPs v4 and v6, container IDs) and deletions, and names a ReplicaSet's Deployment by
//     looking the ReplicaSet up.
//   - The API server restarted (watch cache on, as in a cluster: the resourceVersion the informer
//     holds is gone from the new cache): stale while down, 410 Gone, a re-list, fresh again.
//   - Watch cache off: a restart resumes the watch (no re-list); after an etcd compaction the
//     resourceVersion has expired: 410 Gone and a re-list.
//   - Unreachable at start: start() returns after startTimeoutMs, stale; pods once it is up.
//   - resyncS: a fresh list beside the watch replaces it, the pods known throughout.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { type ApiCluster, missingForCluster, serviceAccountIdentity, startApiServer } from '../../lab/k8s/cluster.ts';
import { workloadAttributes } from '../../agent/src/k8s/enrich.ts';
import { KubePodSource } from '../../agent/src/k8s/kube.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const why = missingForCluster('apiserver');
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const skip = why ?? false;

const MANIFESTS = fileURLToPath(new URL('../../manifests/base/', import.meta.url));
const AGENT = 'strata-agent';
const NODE = 'sdi-node-a';
const OTHER = 'sdi-node-b';
const CID = 'a'.repeat(64);

/** the Namespace, ServiceAccount, ClusterRole and binding of manifests/base, as `kubectl apply` applies them */
async function applyRbac(c: ApiCluster): Promise<void> {
  for (const f of ['namespace.yaml', 'serviceaccount.yaml', 'clusterrole.yaml', 'clusterrolebinding.yaml']) {
    await c.kubectl(['apply', '-f', `${MANIFESTS}${f}`]);
  }
}

const podBody = (name: string, node: string, extra: { labels?: Record<string, string>; owner?: object } = {}) => ({
  apiVersion: 'v1', kind: 'Pod',
  metadata: { name, namespace: 'default', labels: extra.labels ?? {}, ...(extra.owner ? { ownerReferences: [extra.owner] } : {}) },
  spec: { nodeName: node, containers: [{ name: 'app', image: 'sdi.local/app:1', env: [{ name: 'OTEL_SERVICE_NAME', value: 'from-spec' }] }] },
});

async function create(c: ApiCluster, path: string, body: object): Promise<{ metadata: { uid: string; name: string; resourceVersion: string } }> {
  const r = await c.api('POST', path, body);
  assert.equal(r.status, 201, `POST ${path}: ${r.body}`);
  return JSON.parse(r.body) as { metadata: { uid: string; name: string; resourceVersion: string } };
}

const logs: string[] = [];
const source = (c: ApiCluster, node = NODE, over: Partial<ConstructorParameters<typeof KubePodSource>[0]> = {}) => new KubePodSource({
  nodeName: node, kubeconfig: c.kubeconfigs[AGENT] as string, resyncS: 0, startTimeoutMs: 15_000,
  backoff: { initialMs: 100, maxMs: 1000 }, maxOwners: 100, log: (m) => logs.push(m), ...over,
});

describe('the informer against a real API server (watch cache on)', { skip }, () => {
  let c: ApiCluster;
  let s: KubePodSource;
  let changes = 0;
  before(async () => {
    c = await startApiServer({ identities: [serviceAccountIdentity('strata', 'strata', AGENT)] });
    await applyRbac(c);
  });
  after(async () => {
    await s?.stop();
    const problems = c ? await c.stop() : [];
    assert.deepEqual(problems, [], 'the API server cleaned up');
  });

  test('the ClusterRole of manifests/base: enough for the agent and no more', async () => {
    const as = (method: string, path: string, body?: unknown) => c.api(method, path, body, AGENT).then((r) => r.status);
    // what the agent does
    assert.equal(await as('GET', `/api/v1/pods?fieldSelector=spec.nodeName%3D${NODE}`), 200);
    assert.equal(await as('GET', `/api/v1/pods?watch=1&timeoutSeconds=1&fieldSelector=spec.nodeName%3D${NODE}`), 200);
    assert.equal(await as('GET', '/apis/apps/v1/replicasets'), 200);
    assert.equal(await as('GET', `/api/v1/nodes/${NODE}`), 404, 'allowed: a node that does not exist is not found, not forbidden');
    // what it must not
    for (const [m, p, b] of [
      ['GET', '/api/v1/secrets'],
      ['GET', '/api/v1/namespaces/default/secrets'],
      ['GET', '/api/v1/configmaps'],
      ['GET', '/apis/apps/v1/deployments'],
      ['POST', '/api/v1/namespaces/default/pods', podBody('forbidden', NODE)],
      ['PATCH', '/api/v1/namespaces/default/pods/any', { metadata: { labels: { x: 'y' } } }],
      ['DELETE', '/api/v1/namespaces/default/pods/any'],
      ['PATCH', `/api/v1/nodes/${NODE}`, { metadata: { labels: { x: 'y' } } }],
    ] as [string, string, unknown?][]) {
      assert.equal(await as(m, p, b), 403, `${m} ${p} is refused`);
    }
    // kubectl's own view of the same rules (exit 1: "no")
    await assert.rejects(c.kubectl(['auth', 'can-i', 'list', 'secrets', '--as', 'system:serviceaccount:strata:strata']), /exited with code 1/);
    assert.equal((await c.kubectl(['auth', 'can-i', 'watch', 'pods', '--as', 'system:serviceaccount:strata:strata'])).trim(), 'yes');
  });

  test('this node\'s pods only; labels, IPs, container IDs and deletions followed; a ReplicaSet\'s Deployment looked up', async () => {
    s = source(c);
    await s.start(() => changes++);
    assert.equal(s.stale(), false);
    const dep = await create(c, '/apis/apps/v1/namespaces/default/deployments', {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'shop' },
      spec: { selector: { matchLabels: { app: 'shop' } }, template: { metadata: { labels: { app: 'shop' } }, spec: { containers: [{ name: 'app', image: 'sdi.local/app:1' }] } } },
    });
    // no controller-manager here: the ReplicaSet is made by hand, owned by the Deployment; its name
    // does not follow <deployment>-<hash>, so only a lookup can name the Deployment
    const rs = await create(c, '/apis/apps/v1/namespaces/default/replicasets', {
      apiVersion: 'apps/v1', kind: 'ReplicaSet',
      metadata: { name: 'shop-by-hand', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'shop', uid: dep.metadata.uid, controller: true }] },
      spec: { selector: { matchLabels: { app: 'shop' } }, template: { metadata: { labels: { app: 'shop' } }, spec: { containers: [{ name: 'app', image: 'sdi.local/app:1' }] } } },
    });
    const mine = await create(c, '/api/v1/namespaces/default/pods', podBody('shop-1', NODE, {
      labels: { app: 'shop' }, owner: { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'shop-by-hand', uid: rs.metadata.uid, controller: true },
    }));
    await create(c, '/api/v1/namespaces/default/pods', podBody('elsewhere-1', OTHER));
    const got = await waitFor(() => {
      const p = s.pods().find((x) => x.name === 'shop-1');
      return p && workloadAttributes(p)['k8s.deployment.name'] ? p : undefined;
    }, 'shop-1 with its Deployment', 10_000);
    assert.equal(got.uid, mine.metadata.uid);
    assert.deepEqual(workloadAttributes(got), { 'k8s.replicaset.name': 'shop-by-hand', 'k8s.deployment.name': 'shop' });
    assert.deepEqual(got.containers, [{ name: 'app', id: undefined, serviceName: 'from-spec' }]);
    assert.deepEqual(s.pods().map((p) => p.name), ['shop-1'], 'the pod on the other node is not watched');
    assert.ok(s.stats().ownerLookups >= 1);

    // status as the kubelet would write it: IPs (v4 and v6) and the container's ID
    const st = await c.api('PATCH', '/api/v1/namespaces/default/pods/shop-1/status', {
      status: { podIP: '10.244.1.7', podIPs: [{ ip: '10.244.1.7' }, { ip: 'fd00:10:244:1::7' }],
        containerStatuses: [{ name: 'app', containerID: `containerd://${CID}`, image: 'sdi.local/app:1', imageID: '', ready: true, restartCount: 0, state: { running: {} } }] },
    });
    assert.equal(st.status, 200, st.body);
    await waitFor(() => s.pods()[0]?.ips.length === 2, 'IPs', 10_000);
    assert.deepEqual(s.pods()[0]?.ips, ['10.244.1.7', 'fd00:10:244:1::7']);
    assert.equal(s.pods()[0]?.containers[0]?.id, CID);
    assert.equal((await c.api('PATCH', '/api/v1/namespaces/default/pods/shop-1', { metadata: { labels: { app: 'shop', tier: 'front' } } })).status, 200);
    await waitFor(() => s.pods()[0]?.labels.tier === 'front', 'label change', 10_000);
    assert.equal((await c.api('DELETE', '/api/v1/namespaces/default/pods/shop-1?gracePeriodSeconds=0')).status, 200);
    await waitFor(() => s.pods().length === 0, 'deletion', 10_000);
    assert.ok(changes > 0);
  });

  test('the API server restarted: stale while down, the expired resourceVersion (410 Gone) re-listed, fresh again', async () => {
    await create(c, '/api/v1/namespaces/default/pods', podBody('before-restart', NODE));
    await waitFor(() => s.pods().some((p) => p.name === 'before-restart'), 'the pod before the restart', 10_000);
    // revisions the informer does not see (another node's pod): its resourceVersion falls behind
    // etcd's, where the restarted API server's watch cache will begin
    await create(c, '/api/v1/namespaces/default/pods', podBody('elsewhere-2', OTHER));
    const relists = s.stats().relists;
    const rv = s.resourceVersion();
    await c.stopApiServer();
    await waitFor(() => s.stale(), 'stale once the API server is gone', 10_000);
    assert.deepEqual(s.pods().map((p) => p.name), ['before-restart'], 'the last pods known are kept');
    await c.startApiServer();
    await waitFor(() => !s.stale(), 'fresh again', 30_000);
    // the new API server's watch cache starts at etcd's current revision: the informer's is too old
    await waitFor(() => s.stats().relists > relists, 'a re-list', 10_000);
    await create(c, '/api/v1/namespaces/default/pods', podBody('after-restart', NODE));
    await waitFor(() => s.pods().some((p) => p.name === 'after-restart'), 'watching again after the restart', 10_000);
    assert.notEqual(s.resourceVersion(), rv);
    assert.ok(s.stats().watchErrors + s.stats().listErrors > 0, 'the outage was counted');
    assert.ok(logs.some((l) => /lost the API server/.test(l)) && logs.some((l) => /API server reachable/.test(l)), logs.join('\n'));
  });
});

describe('the informer and an expired resourceVersion (watch cache off, etcd compacted)', { skip }, () => {
  let c: ApiCluster;
  let s: KubePodSource | undefined;
  before(async () => {
    c = await startApiServer({ identities: [serviceAccountIdentity('strata', 'strata', AGENT)], watchCache: false });
    await applyRbac(c);
  });
  after(async () => {
    await s?.stop();
    const problems = c ? await c.stop() : [];
    assert.deepEqual(problems, [], 'the API server cleaned up');
  });

  test('unreachable at start: start() returns, stale, tracing goes on; the pods once it answers', async () => {
    await create(c, '/api/v1/namespaces/default/pods', podBody('early', NODE));
    await c.stopApiServer();
    s = source(c, NODE, { startTimeoutMs: 300 });
    const t0 = performance.now();
    await s.start(() => {});
    assert.ok(performance.now() - t0 < 5000, 'start() did not wait for the API server');
    assert.equal(s.stale(), true);
    assert.deepEqual(s.pods(), []);
    assert.ok(logs.some((l) => /has not listed this node's pods yet/.test(l)));
    await c.startApiServer();
    await waitFor(() => !s?.stale() && s?.pods().length === 1, 'the pods once it answers', 30_000);
  });

  test('a restart resumes the watch (no re-list); after a compaction, 410 Gone and a re-list', async () => {
    const src = s as KubePodSource;
    // revisions the informer does not see (another node's pods) move etcd past its resourceVersion
    const bump = async (n: string) => create(c, '/api/v1/namespaces/default/pods', podBody(n, OTHER));
    await bump('other-1');
    let relists = src.stats().relists;
    await c.restartApiServer();
    await waitFor(() => src.stats().restarts > 0 && !src.stale(), 'reconnected after the restart', 30_000);
    await create(c, '/api/v1/namespaces/default/pods', podBody('resumed', NODE));
    await waitFor(() => src.pods().some((p) => p.name === 'resumed'), 'watching again', 10_000);
    assert.equal(src.stats().relists, relists, 'resumed from its resourceVersion: etcd still had it');

    relists = src.stats().relists;
    const restarts = src.stats().restarts;
    // the API server resumes a watch at resourceVersion + 1: two revisions beyond it, compacted
    await bump('other-2');
    await bump('other-3');
    const rev = await c.compactEtcd();
    assert.ok(Number(src.resourceVersion()) + 1 < rev, `the informer's resourceVersion ${src.resourceVersion()} + 1 is behind the compaction at ${rev}`);
    await c.restartApiServer();
    await waitFor(() => src.stats().relists > relists && !src.stale(), '410 Gone, then a re-list', 30_000).catch((e: Error) => {
      throw new Error(`${e.message}; source ${JSON.stringify(src.stats())}, restarts before ${restarts}; ${logs.slice(-5).join(' | ')}`);
    });
    assert.deepEqual(src.pods().map((p) => p.name).sort(), ['early', 'resumed']);
    await create(c, '/api/v1/namespaces/default/pods', podBody('after-relist', NODE));
    await waitFor(() => src.pods().some((p) => p.name === 'after-relist'), 'watching after the re-list', 10_000);
  });

  test('resyncS: a fresh list beside the running watch takes over; the pods stay known throughout', async () => {
    const r = source(c, NODE, { resyncS: 1 });
    const seen: number[] = [];
    let started = false;
    // the first list adds its pods one by one: what counts is afterwards
    await r.start(() => started && seen.push(r.pods().length));
    started = true;
    try {
      const want = ['after-relist', 'early', 'resumed'];
      assert.deepEqual(r.pods().map((p) => p.name).sort(), want);
      await waitFor(() => r.stats().relists >= 2, 'two resyncs', 10_000);
      assert.deepEqual(r.pods().map((p) => p.name).sort(), want);
      assert.ok(seen.length > 0 && seen.every((n) => n === want.length), `never fewer pods while a resync lists: ${seen.join(' ')}`);
      await create(c, '/api/v1/namespaces/default/pods', podBody('after-resync', NODE));
      await waitFor(() => r.pods().some((p) => p.name === 'after-resync'), 'the watch of the informer that took over', 10_000);
    } finally {
      await r.stop();
    }
  });
});
