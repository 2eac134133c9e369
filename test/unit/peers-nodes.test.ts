// The peers of cross-node stitching from Kubernetes Node objects (stitch.peersFrom=kubernetes):
// which Node is a peer, and how the peer channel takes a new node list while mappings wait.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeNode } from '../../agent/src/k8s/api-client.ts';
import { parseAgentArgs } from '../../agent/src/config/flags.ts';
import { loadConfig, toAgentOptions } from '../../agent/src/config/index.ts';
import { peerOfNode } from '../../agent/src/k8s/node-peers.ts';
import { type PeerOptions, Peers } from '../../agent/src/peers/peers.ts';
import type { PeerMapping } from '../../agent/src/peers/protocol.ts';

const n = (name: string, spec: KubeNode['spec'], addresses: { type: string; address: string }[]): KubeNode => ({ metadata: { name }, spec, status: { addresses } });
const mapping = (i: number): PeerMapping => ({ key: `10.244.1.5:${40000 + i}/${1000 + i}/q`, traceId: i.toString(16).padStart(32, '0'), parentSpanId: (i + 1).toString(16).padStart(16, '0'), flags: 1 });
const options = (over: Partial<PeerOptions>): PeerOptions => ({
  nodeName: 'node-1', peers: [], secret: Buffer.from('0123456789abcdef-shared'), flushMs: 60_000, batchMax: 1000, maxBatchBytes: 64 * 1024, maxPending: 1000, timeoutMs: 2000, ...over,
});

describe('stitch peers from Nodes', () => {
  test('a Node is a peer with its first IPv4 pod CIDR and its IPv4 InternalIP at stitch.port', () => {
    const ip = [{ type: 'Hostname', address: 'a' }, { type: 'InternalIP', address: 'fd00::1' }, { type: 'InternalIP', address: '172.18.0.3' }];
    assert.deepEqual(peerOfNode(n('a', { podCIDRs: ['fd10::/64', '10.244.3.0/24'], podCIDR: 'fd10::/64' }, ip), 9465),
      { name: 'a', podCidr: '10.244.3.0/24', address: 'http://172.18.0.3:9465' });
    // only podCIDR (older clusters)
    assert.equal(peerOfNode(n('b', { podCIDR: '10.244.4.0/24' }, ip), 1)?.podCidr, '10.244.4.0/24');
    // no pod CIDR yet, an IPv6-only node, no InternalIP (ExternalIP only): not peers
    assert.equal(peerOfNode(n('c', {}, ip), 9465), undefined);
    assert.equal(peerOfNode(n('d', { podCIDRs: ['fd10::/64'] }, ip), 9465), undefined);
    assert.equal(peerOfNode(n('e', { podCIDR: '10.244.5.0/24' }, [{ type: 'ExternalIP', address: '1.2.3.4' }]), 9465), undefined);
  });

  test('a new node list keeps the outbox of a peer that stays; the mappings of one that left are dropped and counted', () => {
    const p = new Peers(options({ peers: [
      { name: 'node-1', podCidr: '10.244.1.0/24', address: 'http://127.0.0.1:1' },
      { name: 'node-2', podCidr: '10.244.2.0/24', address: 'http://127.0.0.2:1' },
      { name: 'node-3', podCidr: '10.244.3.0/24', address: 'http://127.0.0.3:1' },
    ] }));
    assert.equal(p.peerCount, 2);
    p.publish('10.244.2.7', mapping(1));
    p.publish('10.244.3.7', mapping(2));
    p.publish('10.244.3.8', mapping(3));
    assert.equal(p.pending, 3);
    // node-3 leaves, node-4 joins; node-2 stays: its waiting mapping too
    p.setPeers([
      { name: 'node-1', podCidr: '10.244.1.0/24', address: 'http://127.0.0.1:1' },
      { name: 'node-2', podCidr: '10.244.2.0/24', address: 'http://127.0.0.2:1' },
      { name: 'node-4', podCidr: '10.244.4.0/24', address: 'http://127.0.0.4:1' },
    ]);
    assert.equal(p.peerCount, 2);
    assert.equal(p.pending, 1);
    assert.equal(p.stats.droppedNoPeer, 2);
    assert.equal(p.isPeerAddress('10.244.4.9'), true);
    assert.equal(p.isPeerAddress('10.244.3.9'), false);
    // this node's own CIDR still goes nowhere
    p.publish('10.244.1.9', mapping(4));
    assert.equal(p.pending, 1);
    // a node list with a bad CIDR is refused whole
    assert.throws(() => p.setPeers([{ name: 'node-5', podCidr: 'fd00::/64', address: 'http://x:1' }]), /STRATA_ERR_CONFIG|not an IPv4 CIDR/);
    assert.equal(p.peerCount, 2);
  });

  test('config: stitch.peersFrom=kubernetes turns stitching on with no peers yet and the API server settings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skp-unit-'));
    try {
      writeFileSync(join(dir, 'secret'), 'correct-horse-battery-staple-0123\n');
      const load = (sets: string[]) => toAgentOptions(loadConfig({ env: {}, hostname: 'node-1', flags: parseAgentArgs(sets.flatMap((x) => ['--set', x])).settings }), []);
      const on = load(['stitch.peersFrom=kubernetes', `stitch.secretFile=${join(dir, 'secret')}`, 'discovery.kubeconfig=/k', 'discovery.backoff.initialMs=300', 'export.files.dir=/tmp/x']);
      assert.deepEqual(on.stitch?.peers.peers, []);
      assert.deepEqual(on.stitch?.fromKubernetes, { kubeconfig: '/k', backoff: { initialMs: 300, maxMs: 30_000 } });
      assert.equal(load(['export.files.dir=/tmp/x']).stitch, undefined, 'off by default');
      assert.throws(() => load(['stitch.peersFrom=kubernetes', 'export.files.dir=/tmp/x']), /stitch.secretFile is not set/);
      assert.throws(() => load(['stitch.peersFrom=kubernetes', `stitch.secretFile=${join(dir, 'secret')}`, 'stitch.peersFile=/p.json', 'export.files.dir=/tmp/x']), /stitch.peersFile is set and stitch.peersFrom is kubernetes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
