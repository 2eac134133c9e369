// The cluster lab's network, as Flannel's vxlan backend and kube-proxy build it on real nodes:
//   fabric    a netns with one Linux bridge (fabric0, 172.18.0.1/24): the network the nodes, the
//             client outside the cluster and the collector are plugged into, as kind's docker network
//   node n    a netns; eth0 172.18.0.(10+n) on the fabric; bridge cni0 10.244.n.1/24 for its pods;
//             flannel.1 (VXLAN, VNI 1, UDP 8472, no learning) with 10.244.n.0/32 and, for every
//             other node m: a route 10.244.m.0/24 via 10.244.m.0 onlink, a permanent neighbour entry
//             for 10.244.m.0 with node m's flannel.1 MAC, and an FDB entry sending that MAC to node
//             m's eth0; pod traffic leaving the cluster CIDR is masqueraded (flannel's ipMasq)
//   pods      a netns each; eth0 (MTU 1450: the VXLAN header takes 50 bytes) veth-paired with a
//             CNI-style host veth on the node's bridge; each pod's Service VIPs DNATed in its own
//             netns (nat output, as the one-node lab does: the source is untouched, the rewrite
//             happens before the veth, and no br_netfilter is needed for same-node endpoints,
//             which an OVS userspace datapath would bypass anyway)
//   ingress   the ingress node DNATs its eth0 port (hostPort) to the NGINX pod
// Every name lives inside the lab's own namespaces; nothing is created in the root netns.
import { createHash } from 'node:crypto';
import { run } from '../exec.ts';
import { addBridge, ipBatch } from '../netns.ts';
import { CLUSTER_CIDR, FABRIC, type NodePlan, type ServicePlan } from './topology.ts';

export const FABRIC_BRIDGE = 'fabric0';
export const CNI_BRIDGE = 'cni0';
export const UPLINK = 'eth0';
export const VXLAN = { name: 'flannel.1', vni: 1, port: 8472 } as const;
export const POD_MTU = 1450;
export const NFT_BIN = '/usr/sbin/nft';
const FABRIC_PREFIX_LEN = 24;

/** A node's flannel.1 MAC, fixed by its index so every node can program the others' before they exist. */
export function vxlanMac(index: number): string {
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  return `0e:5c:00:00:${hex(index >> 8)}:${hex(index & 0xff)}`;
}

/** A CNI-style host veth name: veth + 8 hex of the pod's UID. */
export const hostVethName = (podUid: string): string => `veth${createHash('sha256').update(podUid).digest('hex').slice(0, 8)}`;

const nft = (ns: string, rules: string, what: string) =>
  run('ip', ['netns', 'exec', ns, NFT_BIN, '-f', '-'], { input: rules }).catch((e: Error) => {
    throw new Error(`installing ${what} in ${ns} (nftables): ${e.message}`);
  });

export async function addFabric(netns: string): Promise<void> {
  await addBridge(netns, `${FABRIC.gateway}/${FABRIC_PREFIX_LEN}`, FABRIC_BRIDGE);
}

/** Plugs a netns into the fabric: its eth0 with `addr`, the fabric end `port` on fabric0. */
export async function plugIntoFabric(fabricNs: string, netns: string, port: string, addr: string): Promise<void> {
  await ipBatch(fabricNs, [
    `link add ${port} type veth peer name ${UPLINK} netns ${netns}`,
    `link set ${port} master ${FABRIC_BRIDGE} up`,
  ]);
  await ipBatch(netns, [
    `addr add ${addr}/${FABRIC_PREFIX_LEN} dev ${UPLINK}`,
    `link set ${UPLINK} up`,
    `route add default via ${FABRIC.gateway}`,
  ]);
}

/** Routing, VXLAN overlay and node NAT of one node (its bridge is made by the caller: Linux or OVS). */
export async function setupNodeOverlay(netns: string, node: NodePlan, all: readonly NodePlan[], prefix: string, hostPort?: { port: number; target: string }): Promise<void> {
  await run('ip', ['netns', 'exec', netns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  const lines = [
    `link add ${VXLAN.name} address ${vxlanMac(node.index)} mtu ${POD_MTU} type vxlan id ${VXLAN.vni} local ${node.ip} dev ${UPLINK} dstport ${VXLAN.port} nolearning`,
    `addr add 10.244.${node.index}.0/32 dev ${VXLAN.name}`,
    `link set ${VXLAN.name} up`,
  ];
  for (const m of all) {
    if (m.index === node.index) continue;
    lines.push(
      `neigh replace 10.244.${m.index}.0 lladdr ${vxlanMac(m.index)} dev ${VXLAN.name} nud permanent`,
      `route add ${m.podCidr} via 10.244.${m.index}.0 dev ${VXLAN.name} onlink`,
    );
  }
  await ipBatch(netns, lines);
  const fdb = all.filter((m) => m.index !== node.index).map((m) => `fdb append ${vxlanMac(m.index)} dev ${VXLAN.name} dst ${m.ip}`);
  if (fdb.length) await run('bridge', ['-n', netns, '-batch', '-'], { input: `${fdb.join('\n')}\n` });
  await nft(netns, nodeNftRules(prefix, hostPort), 'the node NAT');
}

/** Masquerade for pod traffic leaving the cluster CIDR; on the ingress node, the hostPort DNAT. */
export function nodeNftRules(prefix: string, hostPort?: { port: number; target: string }): string {
  const dnat = hostPort
    ? `  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    iifname "${UPLINK}" tcp dport ${hostPort.port} dnat to ${hostPort.target}
  }
`
    : '';
  return `table ip ${prefix}_node {
${dnat}  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    ip saddr ${CLUSTER_CIDR} ip daddr != ${CLUSTER_CIDR} oifname "${UPLINK}" masquerade
  }
}
`;
}

/** kube-proxy's Service DNAT for one pod netns: every VIP:port to its endpoints, at random when several. */
export function serviceNftRules(prefix: string, services: readonly ServicePlan[]): string {
  const rule = (s: ServicePlan) => {
    const match = `ip daddr ${s.ip} tcp dport ${s.port}`;
    if (s.endpoints.length === 1) return `    ${match} dnat to ${s.endpoints[0]}:${s.targetPort}`;
    const map = s.endpoints.map((e, i) => `${i} : ${e} . ${s.targetPort}`).join(', ');
    return `    ${match} dnat ip to numgen random mod ${s.endpoints.length} map { ${map} }`;
  };
  return `table ip ${prefix}_svc {
  chain output {
    type nat hook output priority -100; policy accept;
${services.map(rule).join('\n')}
  }
}
`;
}

export async function installServices(netns: string, prefix: string, services: readonly ServicePlan[]): Promise<void> {
  if (services.length) await nft(netns, serviceNftRules(prefix, services), 'the Service DNAT');
}

/** Replaces the root qdisc of a device with a tbf rate limit. */
export async function setRateLimit(netns: string, dev: string, rate: string, burst: string): Promise<void> {
  // limit: enough queue for a burst of answers (bytes beyond it would be dropped, then retransmitted)
  await run('tc', ['-n', netns, 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', burst, 'limit', '1mb']);
}

/** Back to the device's default qdisc; none set is fine. */
export async function clearRateLimit(netns: string, dev: string): Promise<void> {
  try {
    await run('tc', ['-n', netns, 'qdisc', 'del', 'dev', dev, 'root']);
  } catch (e) {
    if (!/No such file|Cannot delete qdisc with handle of zero|Invalid handle/i.test((e as Error).message)) throw e;
  }
}
