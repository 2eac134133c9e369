// The Kubernetes API server as a discovery source: an informer (k8s/informer.ts) on the
// pods of this node (fieldSelector spec.nodeName), their ReplicaSets looked up on demand (owner ->
// Deployment, cached and bounded) and this Node once (that it exists). What strata's ClusterRole
// allows and no more: get/list/watch on pods, replicasets, nodes.
//
// Failures never stop tracing: the last pods listed stay, stale() says so (strata_discovery_
// metadata_stale), and the informer restarts with exponential backoff (client-go's reflector
// policy: 800 ms doubling to 30 s, with jitter). A watch that resumes from an expired
// resourceVersion gets 410 Gone and the informer lists again; so does every resyncS.
import { LRUCache } from 'lru-cache';
import { KubeApiError, KubeClient, type KubeList, type KubePod, type KubeReplicaSet } from './api-client.ts';
import { loadConnection } from './api-config.ts';
import { Informer } from './informer.ts';
import { containerIdFromStatus } from './cgroup.ts';
import type { PodMeta } from './enrich.ts';
import type { PodSource, SourceStats } from './source.ts';

export interface KubeSourceOptions {
  nodeName: string;
  /** a kubeconfig file; null = in-cluster (service account token, KUBERNETES_SERVICE_HOST) */
  kubeconfig: string | null;
  resyncS: number;
  startTimeoutMs: number;
  backoff: { initialMs: number; maxMs: number };
  maxOwners: number;
  log: (msg: string) => void;
}

export interface KubeSourceStats extends SourceStats {
  /** ReplicaSet lookups: done, failed */
  ownerLookups: number;
  ownerLookupErrors: number;
  /** informer restarts after an error */
  restarts: number;
  /** watch lines over the bound or not an event (each also a watch error) */
  watchBadLines: number;
}

/** a watch ends at the server before the client's 30 s inactivity timeout would cut it */
const WATCH_TIMEOUT_S = 25;
const OWNER_TTL_MS = 10 * 60_000;
const OWNER_RETRY_MS = 30_000;

interface PodInformer {
  lw: Informer<KubePod>;
  listed: boolean;
  stopped: boolean;
}

export class KubePodSource implements PodSource {
  readonly kind = 'kubernetes';
  readonly authoritative = false;
  private readonly o: KubeSourceOptions;
  private client?: KubeClient;
  private current?: PodInformer;
  private next?: PodInformer;
  private metas: PodMeta[] = [];
  private dirty = true;
  private staleFlag = true;
  private failures = 0;
  private retryTimer?: NodeJS.Timeout;
  private resyncTimer?: NodeJS.Timeout;
  private onChange: () => void = () => {};
  private stopped = false;
  private lastError = '';
  private readonly owners: LRUCache<string, { kind: string; name: string } | 'none' | 'failed'>;
  private readonly lookups = new Set<string>();
  readonly st: KubeSourceStats = { lists: 0, listErrors: 0, watchErrors: 0, relists: 0, ownerLookups: 0, ownerLookupErrors: 0, restarts: 0, watchBadLines: 0 };

  constructor(o: KubeSourceOptions) {
    this.o = o;
    this.owners = new LRUCache({ max: o.maxOwners, ttl: OWNER_TTL_MS });
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    // a kubeconfig strata cannot use stops the agent here (STRATA_ERR_KUBECONFIG, exit 3)
    this.client = new KubeClient(loadConnection(this.o.kubeconfig));
    this.current = this.open();
    void this.checkNode();
    if (this.o.resyncS > 0) {
      this.resyncTimer = setInterval(() => this.resync(), this.o.resyncS * 1000);
      this.resyncTimer.unref();
    }
    // tracing starts either way; with the pods listed first, the first spans have their names
    const first = this.run(this.current);
    const timeout = new Promise<void>((r) => setTimeout(r, this.o.startTimeoutMs).unref());
    await Promise.race([first, timeout]);
    if (this.staleFlag) this.o.log(`strata: warning: the API server has not listed this node's pods yet${this.lastError ? ` (${this.lastError})` : ''}: tracing what /proc shows, metadata marked stale, retrying`);
  }

  /** A new informer on this node's pods. */
  private open(): PodInformer {
    const client = this.client as KubeClient;
    const fieldSelector = `spec.nodeName=${this.o.nodeName}`;
    const changed = () => {
      if (inf === this.current) this.changed();
    };
    const inf: PodInformer = {
      listed: false,
      stopped: false,
      lw: new Informer<KubePod>({
        client, path: '/api/v1/pods', fieldSelector, watchTimeoutS: WATCH_TIMEOUT_S,
        list: async (signal): Promise<KubeList<KubePod>> => {
          try {
            const l = await client.get<KubeList<KubePod>>('/api/v1/pods', { fieldSelector }, signal);
            if (this.st.lists > 0) this.st.relists++;
            this.st.lists++;
            inf.listed = true;
            return l;
          } catch (e) {
            this.st.listErrors++;
            throw e;
          }
        },
        onChange: changed,
        onWatching: () => {
          if (!inf.stopped) this.fresh(inf);
        },
        onError: (err) => this.failed(inf, err),
      }),
    };
    return inf;
  }

  private async run(inf: PodInformer): Promise<void> {
    await inf.lw.start();
  }

  /** The watch is up (after a list, or resumed from the last resourceVersion). */
  private fresh(inf: PodInformer): void {
    if (inf === this.next) {
      // a resync's list is complete: it replaces the running informer
      const old = this.current;
      this.current = inf;
      this.next = undefined;
      if (old) this.close(old);
      this.changed();
    }
    if (inf !== this.current) return;
    if (this.staleFlag && this.st.lists > 0) this.o.log(`strata: API server reachable: ${this.current.lw.list().length} pods on ${this.o.nodeName}`);
    this.staleFlag = false;
    this.failures = 0;
    this.lastError = '';
    this.changed();
  }

  /** The informer stops at a list or watch error (other than 410 Gone, which it handles): retry later. */
  private failed(inf: PodInformer, err: unknown): void {
    if (this.stopped || inf.stopped) return;
    if (inf === this.next) {
      // the resync failed: the running informer carries on
      this.close(inf);
      this.next = undefined;
      return;
    }
    this.lastError = describeError(err);
    if (inf.listed) this.st.watchErrors++;
    if (!this.staleFlag) this.o.log(`strata: warning: lost the API server (${this.lastError}): keeping the last pods, metadata marked stale, retrying`);
    this.staleFlag = true;
    this.changed();
    if (this.retryTimer) return;
    const base = Math.min(this.o.backoff.initialMs * 2 ** this.failures, this.o.backoff.maxMs);
    const delay = base * (0.8 + 0.4 * Math.random());
    this.failures++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopped || inf !== this.current) return;
      this.st.restarts++;
      // resumes from the last resourceVersion; the API server answers 410 Gone if it has expired,
      // and the informer lists again
      void this.run(inf);
    }, delay);
    this.retryTimer.unref();
  }

  /** A fresh list beside the running watch; it takes over once complete (deletions missed are found). */
  resync(): void {
    if (this.stopped || this.next || this.staleFlag) return;
    this.next = this.open();
    void this.run(this.next);
  }

  private close(inf: PodInformer): void {
    inf.stopped = true;
    inf.lw.stop();
  }

  private changed(): void {
    this.dirty = true;
    this.onChange();
  }

  poll(): boolean {
    return false;
  }

  pods(): readonly PodMeta[] {
    if (!this.dirty) return this.metas;
    this.dirty = false;
    const items = this.current?.lw.list() ?? [];
    this.metas = items.map((p) => this.meta(p));
    return this.metas;
  }

  stale(): boolean {
    return this.staleFlag;
  }

  stats(): KubeSourceStats {
    this.st.watchBadLines = this.client?.stats.badLines ?? 0;
    return this.st;
  }

  /** resourceVersion the informer holds (tests) */
  resourceVersion(): string {
    return this.current?.lw.resourceVersion() ?? '';
  }

  private meta(p: KubePod): PodMeta {
    const md = p.metadata ?? {};
    const statuses = new Map((p.status?.containerStatuses ?? []).map((s) => [s.name, s]));
    const refs = md.ownerReferences ?? [];
    const ref = refs.find((r) => r.controller) ?? refs[0];
    const owner = ref ? { kind: ref.kind, name: ref.name } : undefined;
    let ownerOwner: PodMeta['ownerOwner'];
    if (owner?.kind === 'ReplicaSet' && md.namespace) ownerOwner = this.ownerOf(md.namespace, owner.name);
    const ips = (p.status?.podIPs ?? []).map((x) => x.ip).filter((x): x is string => !!x);
    if (ips.length === 0 && p.status?.podIP) ips.push(p.status.podIP);
    return {
      uid: md.uid ?? '',
      name: md.name ?? '',
      namespace: md.namespace ?? '',
      node: p.spec?.nodeName ?? this.o.nodeName,
      labels: md.labels ?? {},
      annotations: md.annotations ?? {},
      hostNetwork: p.spec?.hostNetwork === true,
      ips,
      owner,
      ownerOwner,
      containers: (p.spec?.containers ?? []).map((c) => ({
        name: c.name,
        id: containerIdFromStatus(statuses.get(c.name)?.containerID),
        // a literal value only: valueFrom (fieldRef, a ConfigMap) is read from the process instead
        serviceName: c.env?.find((e) => e.name === 'OTEL_SERVICE_NAME' && e.value)?.value,
      })),
    };
  }

  /** the ReplicaSet's controlling owner, from the cache; undefined while unknown (looked up in the background) */
  private ownerOf(namespace: string, name: string): PodMeta['ownerOwner'] {
    const key = `${namespace}/${name}`;
    const hit = this.owners.get(key);
    if (hit === 'none') return null;
    if (hit && hit !== 'failed') return hit;
    if (hit === undefined && !this.lookups.has(key) && this.client) {
      this.lookups.add(key);
      this.client.get<KubeReplicaSet>(`/apis/apps/v1/namespaces/${encodeURIComponent(namespace)}/replicasets/${encodeURIComponent(name)}`).then(
        (rs) => {
          this.st.ownerLookups++;
          const refs = rs.metadata?.ownerReferences ?? [];
          const r = refs.find((x) => x.controller) ?? refs[0];
          this.owners.set(key, r ? { kind: r.kind, name: r.name } : 'none');
          this.changed();
        },
        (e: unknown) => {
          // the pod-template-hash rule names the Deployment meanwhile (k8s/enrich.ts)
          this.st.ownerLookupErrors++;
          this.owners.set(key, 'failed', { ttl: OWNER_RETRY_MS });
          void e;
        },
      ).finally(() => this.lookups.delete(key));
    }
    return undefined;
  }

  /** A NODE_NAME the API server does not know finds no pods: say so once. */
  private async checkNode(): Promise<void> {
    try {
      await this.client?.get(`/api/v1/nodes/${encodeURIComponent(this.o.nodeName)}`);
    } catch (e) {
      if (e instanceof KubeApiError && e.statusCode === 404) this.o.log(`strata: warning: the API server knows no node "${this.o.nodeName}" (node.name, NODE_NAME): no pods will be found for it`);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const inf of [this.current, this.next]) if (inf) this.close(inf);
    this.client?.close();
  }
}

function describeError(e: unknown): string {
  if (!e) return 'unknown error';
  const err = e as { message?: string; cause?: { code?: string } };
  const msg = (err.message ?? String(e)).split('\n')[0];
  const cause = err.cause?.code;
  return cause && !msg.includes(cause) ? `${msg} (${cause})` : msg;
}
