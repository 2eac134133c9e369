// The cluster lab's topology file: the default file's plan, the address plan, and that every
// invalid input fails with STRATA_ERR_TOPOLOGY naming the field.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { serviceNftRules, vxlanMac } from '../../lab/cluster/network.ts';
import { DEFAULT_TOPOLOGY } from '../../lab/cluster/cluster.ts';
import { checkFault, loadTopology, parseTopology, planTopology } from '../../lab/cluster/topology.ts';
import { LabError, STRATA_ERR_TOPOLOGY } from '../../lab/errors.ts';

const apps = (ns: string, node = 'node-1') => ['frontend', 'customer', 'driver', 'route'].map((app) => ({ namespace: ns, app, node }));

function rejects(raw: unknown, path: string, message: RegExp): void {
  assert.throws(() => planTopology(raw, 't.yaml'), (e: unknown) => {
    assert.ok(e instanceof LabError, String(e));
    assert.equal(e.code, STRATA_ERR_TOPOLOGY);
    assert.equal(e.path, path);
    assert.match(e.message, /^topology t\.yaml: /);
    assert.match(e.message, message);
    return true;
  });
}

describe('cluster topology', () => {
  it('plans the default file: 4 nodes (node-3 OVS), the ingress, three HotROD namespaces spread over nodes', () => {
    const t = loadTopology(DEFAULT_TOPOLOGY);
    assert.deepEqual(t.nodes.map((n) => [n.name, n.bridge, n.ip, n.podCidr, n.gateway]), [
      ['node-1', 'linux', '172.18.0.11', '10.244.1.0/24', '10.244.1.1'],
      ['node-2', 'linux', '172.18.0.12', '10.244.2.0/24', '10.244.2.1'],
      ['node-3', 'ovs', '172.18.0.13', '10.244.3.0/24', '10.244.3.1'],
      ['node-4', 'linux', '172.18.0.14', '10.244.4.0/24', '10.244.4.1'],
    ]);
    assert.equal(t.pods.length, 13);
    const ingress = t.pods[0];
    assert.deepEqual([ingress?.namespace, ingress?.name, ingress?.node, ingress?.app, ingress?.ip], ['ingress-nginx', 'ingress-nginx-controller', 'node-1', 'ingress', '10.244.1.10']);
    for (const p of t.pods) {
      const node = t.nodes.find((n) => n.name === p.node);
      assert.ok(node && p.ip.startsWith(`10.244.${node.index}.`), `${p.namespace}/${p.name} ${p.ip} in its node's CIDR`);
    }
    assert.equal(new Set(t.pods.map((p) => p.ip)).size, t.pods.length, 'pod IPs unique');
    for (const ns of ['hotrod', 'hotrod-py', 'hotrod-otel']) {
      const pods = t.pods.filter((p) => p.namespace === ns);
      assert.deepEqual(pods.map((p) => p.app), ['frontend', 'customer', 'driver', 'route']);
      assert.ok(new Set(pods.map((p) => p.node)).size >= 3, `${ns} spread over at least 3 nodes`);
    }
    assert.deepEqual(new Set(t.pods.filter((p) => p.namespace === 'hotrod-py').map((p) => p.runtime)), new Set(['python']));
    assert.deepEqual(new Set(t.pods.filter((p) => p.namespace === 'hotrod-otel').map((p) => p.mode)), new Set(['instrumented']));
    assert.deepEqual(new Set(t.pods.filter((p) => p.namespace === 'hotrod').map((p) => `${p.runtime} ${p.mode}`)), new Set(['node plain']));
    assert.equal(t.services.length, 12);
    assert.equal(new Set(t.services.map((s) => s.ip)).size, 12);
    assert.ok(t.services.every((s) => s.ip.startsWith('10.96.0.') && s.port === 80 && s.targetPort === 8080 && s.endpoints.length === 1));
    assert.deepEqual(t.ingress.rules.map((r) => [r.host ?? '(default)', r.service]), [
      ['(default)', 'hotrod/frontend'],
      ['hotrod.lab', 'hotrod/frontend'],
      ['py.hotrod.lab', 'hotrod-py/frontend'],
      ['otel.hotrod.lab', 'hotrod-otel/frontend'],
    ]);
    assert.equal(t.ingress.hostPort, 80);
    assert.deepEqual(t.faults, []);
    assert.ok(Object.isFrozen(t) && Object.isFrozen(t.pods[1]), 'the plan is frozen');
  });

  it('accepts a node count, defaults and several pods of one app (one Service, every endpoint)', () => {
    const t = parseTopology(`
nodes: 2
pods:
  - { namespace: a, app: frontend, node: node-1 }
  - { namespace: a, app: customer, node: node-2, delayMs: 20 }
  - { namespace: a, app: driver, node: node-2, fanout: 3, runtime: python }
  - { namespace: a, app: route, name: route-1, node: node-1, routeBytes: 100 }
  - { namespace: a, app: route, name: route-2, node: node-2 }
faults:
  - { pod: a/route-1, rate: 512kbit }
  - { node: node-2, rate: 10mbit, burst: 16kb }
  - { pod: a/customer, delayMs: 150 }
`);
    assert.deepEqual(t.nodes.map((n) => `${n.name}:${n.bridge}`), ['node-1:linux', 'node-2:linux']);
    const route = t.services.find((s) => s.name === 'route');
    assert.deepEqual(route?.endpoints, ['10.244.1.12', '10.244.2.12']);
    assert.deepEqual(t.ingress.rules, [{ service: 'a/frontend' }], 'no rules: the first frontend is the default server');
    assert.deepEqual(t.faults, [
      { kind: 'rate', pod: 'a/route-1', where: 'eth0', rate: '512kbit', burst: '4kb' },
      { kind: 'rate', node: 'node-2', where: 'eth0', rate: '10mbit', burst: '16kb' },
      { kind: 'delay', pod: 'a/customer', delayMs: 150 },
    ]);
    const p = t.pods.find((x) => x.name === 'driver');
    assert.deepEqual([p?.runtime, p?.mode, p?.fanout], ['python', 'plain', 3]);
  });

  it('fails with STRATA_ERR_TOPOLOGY and the field for every invalid input', () => {
    const ok = { nodes: 2, pods: apps('a') };
    rejects({ ...ok, colour: 'blue' }, 'colour', /unknown field/);
    rejects({ ...ok, pods: [{ ...apps('a')[0], colour: 'x' }] }, 'pods[0].colour', /unknown field \(known: name, namespace/);
    rejects({ ...ok, pods: [{ namespace: 'a', app: 'frontend', node: 'node-9' }] }, 'pods[0].node', /no node "node-9" \(nodes: node-1, node-2\)/);
    rejects({ ...ok, pods: [{ namespace: 'a', app: 'billing', node: 'node-1' }] }, 'pods[0].app', /expected one of frontend, customer, driver, route/);
    rejects({ ...ok, pods: [...apps('a'), apps('a')[1]] }, 'pods[4].name', /a\/customer is defined twice/);
    rejects({ ...ok, pods: apps('a').slice(0, 3) }, 'pods', /namespace a has a driver but no route/);
    rejects({ ...ok, pods: [{ ...apps('a')[0], runtime: 'python', mode: 'instrumented' }, ...apps('a').slice(1)] }, 'pods[0].mode', /instrumented needs runtime node/);
    rejects({ ...ok, pods: [{ ...apps('a')[1], fanout: 3 }] }, 'pods[0].fanout', /only a driver fans out/);
    rejects({ ...ok, pods: [{ ...apps('a')[0], delayMs: -1 }] }, 'pods[0].delayMs', /integer in \[0, 60000\]/);
    rejects({ nodes: 0 }, 'nodes', /integer in \[1, 64\]/);
    rejects({ nodes: [{ name: 'a-very-long-node-name' }] }, 'nodes[0].name', /at most 15 characters/);
    rejects({ nodes: [{ name: 'client' }] }, 'nodes[0].name', /reserved/);
    rejects({ nodes: [{ name: 'n' }, { name: 'n' }] }, 'nodes[1].name', /defined twice/);
    rejects({ nodes: [{ bridge: 'vpp' }] }, 'nodes[0].bridge', /one of linux, ovs/);
    rejects({ ...ok, ingress: { node: 'node-7' } }, 'ingress.node', /no node/);
    rejects({ ...ok, ingress: { rules: [{ service: 'b/frontend' }] } }, 'ingress.rules[0].service', /no service b\/frontend \(services: a\/frontend/);
    rejects({ ...ok, ingress: { rules: [{ service: 'a/frontend' }, { service: 'a/frontend' }] } }, 'ingress.rules[1].host', /only one default/);
    rejects({ ...ok, telemetry: { otlpEndpoint: 'http://10.0.0.5:4318' } }, 'telemetry.otlpEndpoint', /not a loopback address/);
    rejects({ ...ok, telemetry: { otlpEndpoint: 'http://127.0.0.1:4318/v1/traces' } }, 'telemetry.otlpEndpoint', /base URL/);
    rejects({ ...ok, faults: [{ pod: 'a/route', node: 'node-1', rate: '1mbit' }] }, 'faults[0]', /exactly one of pod/);
    rejects({ ...ok, faults: [{ pod: 'a/nope', rate: '1mbit' }] }, 'faults[0].pod', /no pod a\/nope/);
    rejects({ ...ok, faults: [{ pod: 'a/route', rate: 'fast' }] }, 'faults[0].rate', /tc rate/);
    rejects({ ...ok, faults: [{ pod: 'a/route', rate: '1mbit', delayMs: 5 }] }, 'faults[0]', /not both/);
    rejects({ ...ok, faults: [{ node: 'node-1', delayMs: 5 }] }, 'faults[0].delayMs', /needs a pod/);
    rejects({ ...ok, apiVersion: 'v2' }, 'apiVersion', /strata\.lab\/v1alpha1/);
    assert.throws(() => parseTopology('nodes: [', 'bad.yaml'), { code: STRATA_ERR_TOPOLOGY, message: /topology bad\.yaml: not valid YAML/ });
    assert.throws(() => loadTopology('/nonexistent/t.yaml'), { code: STRATA_ERR_TOPOLOGY, message: /ENOENT/ });
  });

  it('validates a CLI fault against the running pods and nodes', () => {
    assert.deepEqual(checkFault({ pod: 'a/route', rate: '2mbit', where: 'veth' }, 'fault', new Set(['a/route']), new Set(['node-1'])), {
      kind: 'rate', pod: 'a/route', where: 'veth', rate: '2mbit', burst: '4kb',
    });
    assert.throws(() => checkFault({ node: 'node-1', where: 'veth', rate: '2mbit' }, 'fault', new Set(), new Set(['node-1'])), { path: 'fault.where' });
  });

  it("writes kube-proxy's DNAT as nft rules: one endpoint, several at random; VXLAN MACs fixed by node index", () => {
    const rules = serviceNftRules('scl', [
      { name: 'customer', namespace: 'a', ip: '10.96.0.10', port: 80, targetPort: 8080, endpoints: ['10.244.2.10'] },
      { name: 'route', namespace: 'a', ip: '10.96.0.11', port: 80, targetPort: 8080, endpoints: ['10.244.1.12', '10.244.2.12'] },
    ]);
    assert.match(rules, /^table ip scl_svc \{/);
    assert.match(rules, /type nat hook output priority -100;/);
    assert.match(rules, /ip daddr 10\.96\.0\.10 tcp dport 80 dnat to 10\.244\.2\.10:8080\n/);
    assert.match(rules, /ip daddr 10\.96\.0\.11 tcp dport 80 dnat ip to numgen random mod 2 map \{ 0 : 10\.244\.1\.12 \. 8080, 1 : 10\.244\.2\.12 \. 8080 \}/);
    assert.equal(vxlanMac(3), '0e:5c:00:00:00:03');
    assert.equal(vxlanMac(300), '0e:5c:00:00:01:2c');
  });
});
