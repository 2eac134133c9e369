// What a span's resource says about its pod: the service.name order (each rule, and that an
// earlier one wins), the workload attributes of every owner kind, and the label selectors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type PodMeta, cgroupUidOf, podServiceName, serviceNameOf, workloadAttributes } from '../../agent/src/k8s/enrich.ts';
import { parseLabelSelector, podSelector } from '../../agent/src/k8s/selector.ts';

const pod = (o: Partial<PodMeta> = {}): PodMeta => ({
  uid: 'u1', name: 'checkout-7d4b9c6f5-x2x9z', namespace: 'shop', node: 'n1', labels: {}, annotations: {}, hostNetwork: false, ips: [], containers: [], ...o,
});

test('service.name: each rule in order, an earlier one winning over every later one', () => {
  const full = pod({
    owner: { kind: 'ReplicaSet', name: 'checkout-7d4b9c6f5' },
    ownerOwner: { kind: 'Deployment', name: 'checkout' },
    annotations: { 'resource.opentelemetry.io/service.name': 'from-annotation' },
    labels: { 'app.kubernetes.io/instance': 'from-instance', 'app.kubernetes.io/name': 'from-name', app: 'not-a-rule', 'pod-template-hash': '7d4b9c6f5' },
  });
  // 1. the container's OTEL_SERVICE_NAME
  assert.equal(serviceNameOf(full, 'from-env'), 'from-env');
  // 2. the annotation
  assert.equal(serviceNameOf(full, undefined), 'from-annotation');
  // 3. app.kubernetes.io/instance
  const noAnnotation = { ...full, annotations: {} };
  assert.equal(podServiceName(noAnnotation), 'from-instance');
  // 4. app.kubernetes.io/name
  const noInstance = { ...noAnnotation, labels: { 'app.kubernetes.io/name': 'from-name', app: 'not-a-rule', 'pod-template-hash': '7d4b9c6f5' } };
  assert.equal(podServiceName(noInstance), 'from-name');
  // 5. the top owner: the Deployment, not its ReplicaSet; the plain `app` label is no rule
  const noLabels = { ...noInstance, labels: { app: 'not-a-rule', 'pod-template-hash': '7d4b9c6f5' } };
  assert.equal(podServiceName(noLabels), 'checkout');
  // 6. the pod name
  assert.equal(podServiceName(pod({ name: 'standalone', labels: { app: 'not-a-rule' } })), 'standalone');
  // an empty env value or annotation does not count
  assert.equal(serviceNameOf({ ...full, annotations: { 'resource.opentelemetry.io/service.name': '' } }, ''), 'from-instance');
});

test('workload attributes for every owner kind', () => {
  // a ReplicaSet looked up: its Deployment
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'ReplicaSet', name: 'checkout-7d4b9c6f5' }, ownerOwner: { kind: 'Deployment', name: 'checkout' } })),
    { 'k8s.replicaset.name': 'checkout-7d4b9c6f5', 'k8s.deployment.name': 'checkout' });
  // not looked up (yet, or the API server is down): the pod-template-hash rule
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'ReplicaSet', name: 'checkout-7d4b9c6f5' }, labels: { 'pod-template-hash': '7d4b9c6f5' } })),
    { 'k8s.replicaset.name': 'checkout-7d4b9c6f5', 'k8s.deployment.name': 'checkout' });
  // looked up: a bare ReplicaSet has no Deployment, whatever its name
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'ReplicaSet', name: 'checkout-7d4b9c6f5' }, ownerOwner: null, labels: { 'pod-template-hash': '7d4b9c6f5' } })),
    { 'k8s.replicaset.name': 'checkout-7d4b9c6f5' });
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'DaemonSet', name: 'fluentd' } })), { 'k8s.daemonset.name': 'fluentd' });
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'StatefulSet', name: 'db' } })), { 'k8s.statefulset.name': 'db' });
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'Job', name: 'migrate' } })), { 'k8s.job.name': 'migrate' });
  // a CronJob's Job: <cronjob>-<scheduled minute since the epoch>
  assert.deepEqual(workloadAttributes(pod({ owner: { kind: 'Job', name: 'nightly-report-29412345' } })),
    { 'k8s.job.name': 'nightly-report-29412345', 'k8s.cronjob.name': 'nightly-report' });
  assert.equal(podServiceName(pod({ name: 'nightly-report-29412345-abcde', owner: { kind: 'Job', name: 'nightly-report-29412345' } })), 'nightly-report');
  // a static pod's mirror: owned by its Node, no workload; its cgroup carries the config hash
  const mirror = pod({ name: 'etcd-n1', owner: { kind: 'Node', name: 'n1' }, annotations: { 'kubernetes.io/config.mirror': '6a5cbb0f1c7de3b2a9d8e7f6a5b4c3d2' } });
  assert.deepEqual(workloadAttributes(mirror), {});
  assert.equal(cgroupUidOf(mirror), '6a5cbb0f1c7de3b2a9d8e7f6a5b4c3d2');
  assert.equal(podServiceName(mirror), 'etcd-n1');
  // a pods file without owners: a Deployment's pod by its name (both hashes of the safe alphabet), nothing else
  assert.deepEqual(workloadAttributes(pod({ owner: undefined })), { 'k8s.replicaset.name': 'checkout-7d4b9c6f5', 'k8s.deployment.name': 'checkout' });
  assert.deepEqual(workloadAttributes(pod({ name: 'frontend-xyz' })), {});
  assert.deepEqual(workloadAttributes(pod({ name: 'web-abcdefgh-abcde' })), {}, 'vowels are not in the hash alphabet');
});

test('label selectors: the API server\'s syntax and semantics', () => {
  const l = { app: 'web', tier: 'front', 'app.kubernetes.io/name': 'shop' };
  const m = (s: string) => parseLabelSelector(s)(l);
  assert.equal(m(''), true);
  assert.equal(m('app=web'), true);
  assert.equal(m('app==web'), true);
  assert.equal(m('app=db'), false);
  assert.equal(m('app!=db'), true);
  assert.equal(m('missing!=x'), true, 'a missing key satisfies !=');
  assert.equal(m('tier in (front, back)'), true);
  assert.equal(m('tier notin (front)'), false);
  assert.equal(m('missing notin (a)'), true);
  assert.equal(m('app.kubernetes.io/name'), true);
  assert.equal(m('!canary'), true);
  assert.equal(m('!app'), false);
  assert.equal(m('app=web,tier in (front),!canary'), true);
  assert.equal(m('app=web,tier=back'), false);
  for (const bad of ['app=', 'a b', 'tier in (front', 'tier in front)', ',', 'app=web,', '=x', 'k=v w', 'bad key!=x']) {
    if (bad === 'app=') continue; // an empty value is allowed: app= matches app: ""
    assert.throws(() => parseLabelSelector(bad), Error, bad);
  }
  assert.equal(parseLabelSelector('app=')({ app: '' }), true);
});

test('namespaces: include list (empty = all) and exclude list', () => {
  const sel = podSelector({ namespaces: ['shop', 'web'], excludeNamespaces: ['web'], labelSelector: 'tier=front' });
  assert.equal(sel({ namespace: 'shop', labels: { tier: 'front' } }), true);
  assert.equal(sel({ namespace: 'web', labels: { tier: 'front' } }), false);
  assert.equal(sel({ namespace: 'other', labels: { tier: 'front' } }), false);
  assert.equal(sel({ namespace: 'shop', labels: {} }), false);
  const all = podSelector({ namespaces: [], excludeNamespaces: ['kube-system'], labelSelector: '' });
  assert.equal(all({ namespace: 'anything', labels: {} }), true);
  assert.equal(all({ namespace: 'kube-system', labels: {} }), false);
});
