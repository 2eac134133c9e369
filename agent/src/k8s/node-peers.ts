// The peers of cross-node stitching from the API server (stitch.peersFrom=kubernetes): an
// informer on the Node objects; each Node with an IPv4 pod CIDR (spec.podCIDRs, else
// spec.podCIDR) and an IPv4 InternalIP becomes a peer whose agent listens on that address at
// stitch.port (the DaemonSet runs on the host network). Nodes joining, leaving or changing
// address reach the peer channel as they happen. The ClusterRole already allows list/watch on
// nodes. An API server that fails keeps the last list and retries with backoff.
import { KubeClient, type KubeList, type KubeNode } from './api-client.ts';
import { loadConnection } from './api-config.ts';
import { Informer } from './informer.ts';
import type { PeerNode } from '../peers/peers.ts';

export interface NodePeersOptions {
  /** a kubeconfig file; null = in-cluster */
  kubeconfig: string | null;
  /** every agent's stitch.port */
  port: number;
  backoff: { initialMs: number; maxMs: number };
  log: (msg: string) => void;
}

export interface NodePeersStats {
  /** Nodes listed, and of those without an IPv4 pod CIDR or InternalIP (not peers) */
  nodes: number;
  unusable: number;
  /** list/watch failures (a watch line over the bound or not an event too), each followed by a retry */
  errors: number;
}

/** the server ends each watch after this, before the client's 30 s inactivity timeout */
const WATCH_TIMEOUT_S = 25;

const isIpv4 = (s: string | undefined): s is string => !!s && /^\d{1,3}(\.\d{1,3}){3}$/.test(s);
const isIpv4Cidr = (s: string | undefined): s is string => !!s && /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(s);

/** The peer a Node describes; undefined when it has no IPv4 pod CIDR or no IPv4 InternalIP. */
export function peerOfNode(n: KubeNode, port: number): PeerNode | undefined {
  const name = n.metadata?.name;
  const podCidr = (n.spec?.podCIDRs ?? []).find(isIpv4Cidr) ?? (isIpv4Cidr(n.spec?.podCIDR) ? n.spec?.podCIDR : undefined);
  const ip = (n.status?.addresses ?? []).find((a) => a.type === 'InternalIP' && isIpv4(a.address))?.address;
  if (!name || !podCidr || !ip) return undefined;
  return { name, podCidr, address: `http://${ip}:${port}` };
}

export class KubeNodePeers {
  readonly stats: NodePeersStats = { nodes: 0, unusable: 0, errors: 0 };
  private readonly o: NodePeersOptions;
  private lw?: Informer<KubeNode>;
  private client?: KubeClient;
  private stopped = false;
  private failures = 0;
  private retry?: NodeJS.Timeout;
  private last = '';
  private pending = false;
  private onPeers: (peers: PeerNode[]) => void = () => {};

  constructor(o: NodePeersOptions) {
    this.o = o;
  }

  /** Starts the informer; `onPeers` gets the whole list after every change. Does not wait for the API server. */
  start(onPeers: (peers: PeerNode[]) => void): void {
    this.onPeers = onPeers;
    // a kubeconfig strata cannot use stops the agent here (STRATA_ERR_KUBECONFIG, exit 3)
    const client = new KubeClient(loadConnection(this.o.kubeconfig));
    this.client = client;
    // a list adds its Nodes one by one in one turn: publish once, after it
    const changed = () => {
      if (this.pending) return;
      this.pending = true;
      setImmediate(() => {
        this.pending = false;
        if (!this.stopped) this.publish();
      });
    };
    const lw = new Informer<KubeNode>({
      client, path: '/api/v1/nodes', watchTimeoutS: WATCH_TIMEOUT_S,
      list: (signal) => client.get<KubeList<KubeNode>>('/api/v1/nodes', {}, signal),
      onChange: changed,
      // the list is done and the watch up: the backoff starts again from its first step
      onWatching: () => {
        this.failures = 0;
        changed();
      },
      onError: (e) => this.failed(e),
    });
    this.lw = lw;
    void this.run();
  }

  private async run(): Promise<void> {
    await this.lw?.start();
  }

  private publish(): void {
    const nodes = this.lw?.list() ?? [];
    const peers = nodes.map((n) => peerOfNode(n, this.o.port)).filter((p): p is PeerNode => p !== undefined);
    peers.sort((a, b) => a.name.localeCompare(b.name));
    this.stats.nodes = nodes.length;
    this.stats.unusable = nodes.length - peers.length;
    const key = JSON.stringify(peers);
    if (key === this.last) return;
    this.last = key;
    this.o.log(`strata: stitch: ${peers.length} nodes from the API server${this.stats.unusable ? ` (${this.stats.unusable} without an IPv4 pod CIDR or InternalIP left out)` : ''}`);
    this.onPeers(peers);
  }

  private failed(e: unknown): void {
    if (this.stopped || this.retry) return;
    this.stats.errors++;
    const delay = Math.min(this.o.backoff.initialMs * 2 ** this.failures, this.o.backoff.maxMs) * (0.8 + 0.4 * Math.random());
    if (this.failures === 0) this.o.log(`strata: warning: stitch: listing the Nodes failed (${(e as Error)?.message?.split('\n')[0] ?? String(e)}): keeping the last peers, retrying`);
    this.failures++;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (!this.stopped) void this.run();
    }, delay);
    this.retry.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.lw?.stop();
    this.client?.close();
  }
}
