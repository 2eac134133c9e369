// What the agent wires for net_dev (registry NET_DEV.wire), without a kernel: the node's uplinks
// are watched in the node netns, each pod's own interface (its host veth's IFLA_LINK) in the
// pod's netns, and the topology names them with their side; a missing uplink is left to the TC
// probe's one warning.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type PodEntry, StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { PREFILTER_SLOTS, prefilterSlot } from '../../agent/src/probes/prefilter.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { NET_DEV, type WireContext } from '../../agent/src/probes/registry.ts';

const NODE_NS = 4026531840;
const pods: PodEntry[] = [
  { name: 'frontend-7c9d8-abcde', namespace: 'shop', uid: 'u1', node: 'n1', ip: '10.244.1.20', netnsInode: 4026532300, hostVeth: 'va-lab', labels: { 'app.kubernetes.io/name': 'frontend' } },
  { name: 'node-exporter', namespace: 'mon', uid: 'u2', node: 'n1', ip: '', netnsInode: 0, hostVeth: '', hostNetwork: true, cgroupIds: [77] },
];

test('net_dev wiring: uplinks in the node netns, pod interfaces in their own, named in the topology', () => {
  const updates: { map: string; netns: number; ifindex: number; object?: string }[] = [];
  const slots: { map: string; slot: number; count: number; object?: string }[] = [];
  const links: Record<string, { ifindex: number; iflink: number }> = { eth9: { ifindex: 20, iflink: 20 }, 'va-lab': { ifindex: 31, iflink: 2 } };
  // the real ProbeSet methods (its prefilter upkeep) over a fake native transport
  const fake = Object.assign(Object.create(ProbeSet.prototype) as ProbeSet, {
    settings: {},
    native: {
      mapUpdate: (map: string, key: Buffer, v: Buffer, object?: string) => {
        if (map.endsWith('_slots')) slots.push({ map, slot: key.readUInt32LE(0), count: v.readUInt32LE(0), object });
        else updates.push({ map, netns: key.readUInt32LE(0), ifindex: key.readUInt32LE(4), object });
      },
    },
    linkInfo: (ifname: string, netns: string) => {
      assert.equal(netns, '/run/netns/node1', 'interfaces are looked up in the node netns');
      const l = links[ifname];
      if (!l) throw Object.assign(new Error(`attach ${ifname}: interface: No such device`), { code: 'ENODEV' });
      return l;
    },
  });
  const topology = new StaticTopology('n1', pods, NODE_NS);
  const logs: string[] = [];
  const attached: [string, boolean][] = [];
  const ctx: WireContext = {
    probes: fake, pods, nodeNetns: '/run/netns/node1', nodeNetnsInode: NODE_NS, interfaces: ['eth9', 'nosuch0'], topology,
    log: (m) => logs.push(m), attached: (n, ok) => attached.push([n, ok]),
  };
  NET_DEV.wire?.(ctx);

  assert.deepEqual(updates, [
    { map: 'netdev_watch', netns: NODE_NS, ifindex: 20, object: 'net_dev' },
    { map: 'netdev_watch', netns: 4026532300, ifindex: 2, object: 'net_dev' },
  ]);
  // each watched device's prefilter slot (by ifindex) is set in the same object, after its exact key
  assert.deepEqual(slots, [
    { map: 'netdev_watch_slots', slot: prefilterSlot(20, PREFILTER_SLOTS - 1), count: 1, object: 'net_dev' },
    { map: 'netdev_watch_slots', slot: prefilterSlot(2, PREFILTER_SLOTS - 1), count: 1, object: 'net_dev' },
  ]);
  assert.deepEqual(attached, [['net_dev:eth9', true], ['net_dev:nosuch0', false]]);
  assert.equal(logs.filter((l) => l.includes('nosuch0')).length, 0, 'the TC probe already warns about a missing uplink');
  assert.equal(logs.filter((l) => /warning/.test(l)).length, 0);

  // the topology: the pod's own interface is on the pod side, with its pod; the uplink on the node side
  const podIf = topology.iface(2, 4026532300);
  assert.deepEqual([podIf?.name, podIf?.side, podIf?.pod?.name, podIf?.pod?.workload], ['eth0', 'pod', 'frontend-7c9d8-abcde', 'frontend']);
  assert.deepEqual(topology.iface(20), { name: 'eth9', pod: undefined, side: 'node' });
  assert.deepEqual(topology.iface(20, NODE_NS), topology.iface(20), 'undefined netns = the node netns');
  assert.equal(topology.iface(2), undefined, 'ifindex 2 of the node netns is another device');
  // a host veth registered by TC (no netns) stays the node side of that pod
  topology.addInterface(31, 'va-lab');
  assert.deepEqual([topology.iface(31)?.side, topology.iface(31)?.pod?.name], ['node', 'frontend-7c9d8-abcde']);
});
