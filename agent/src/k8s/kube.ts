// The Kubernetes API server as a discovery source: an informer (client-node's ListWatch) on the
// pods of this node (fieldSelector spec.nodeName), their ReplicaSets looked up on demand (owner ->
// Deployment, cached and bounded) and this Node once (that it exists). What strata's ClusterRole
// allows and no more: get/list/watch on pods, replicasets, nodes.
//
// Failures never stop tracing: the last pods listed stay, stale() says so (strata_discovery_
// metadata_stale), and the informer restarts with exponential backoff (client-go's reflector
// policy: 800 ms doubling to 30 s, with jitter). A watch that resumes from an expired
// resourceVersion gets 410 Gone and the informer lists again; so does every resyncS.
import { AppsV1Api, CoreV1Api, KubeConfig, ListWatch, type V1Pod, type V1PodList, Watch } from '@kubernetes/client-node';
import { LRUCache } from 'lru-cache';
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
}

/** a watch ends at the server before the client's 30 s inactivity timeout would cut it */
const WATCH_TIMEOUT_S = 25;
const OWNER_TTL_MS = 10 * 60_000;
const OWNER_RETRY_MS = 30_000;

/** client-node's Watch, telling whether each watch request got through (200) or failed. */
class TrackingWatch extends Watch {
  private readonly onResult: (ok: boolean, err?: unknown) => void;

  constructor(kc: KubeConfig, onResult: (ok: boolean, err?: unknown) => void) {
    super(kc);
    this.onResult = onResult;
  }

  override async watch(
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    cb: (phase: string, obj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    let failed: unknown;
    const c = await super.watch(path, { ...params, allowWatchBookmarks: true, timeoutSeconds: WATCH_TIMEOUT_S }, cb, (err) => {
      if (err && failed === undefined) failed = err;
      done(err);
    });
    this.onResult(failed === undefined, failed);
    return c;
  }
}

interface Informer {
  lw: ListWatch<V1Pod>;
  listed: boolean;
  stopped: boolean;
}

export class KubePodSource implements PodSource {
  readonly kind = 'kubernetes';
  readonly authoritative = false;
  private readonly o: KubeSourceOptions;
  private kc?: KubeConfig;
  private core?: CoreV1Api;
  private apps?: AppsV1Api;
  private current?: Informer;
  private next?: Informer;
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
  readonly st: KubeSourceStats = { lists: 0, listErrors: 0, watchErrors: 0, relists: 0, ownerLookups: 0, ownerLookupErrors: 0, restarts: 0 };

  constructor(o: KubeSourceOptions) {
    this.o = o;
    this.owners = new LRUCache({ max: o.maxOwners, ttl: OWNER_TTL_MS });
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    const kc = new KubeConfig();
    if (this.o.kubeconfig) kc.loadFromFile(this.o.kubeconfig);
    else kc.loadFromCluster();
    this.kc = kc;
    this.core = kc.makeApiClient(CoreV1Api);
    this.apps = kc.makeApiClient(AppsV1Api);
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
  private open(): Informer {
    const kc = this.kc as KubeConfig;
    const core = this.core as CoreV1Api;
    const fieldSelector = `spec.nodeName=${this.o.nodeName}`;
    const inf: Informer = { lw: undefined as unknown as ListWatch<V1Pod>, listed: false, stopped: false };
    const list = async (): Promise<V1PodList> => {
      try {
        const l = await core.listPodForAllNamespaces({ fieldSelector });
        if (this.st.lists > 0) this.st.relists++;
        this.st.lists++;
        inf.listed = true;
        return l;
      } catch (e) {
        this.st.listErrors++;
        throw e;
      }
    };
    const watch = new TrackingWatch(kc, (ok, err) => {
      if (inf.stopped) return;
      if (ok) this.fresh(inf);
      else this.lastError = describeError(err);
    });
    inf.lw = new ListWatch<V1Pod>('/api/v1/pods', watch, list, false, undefined, fieldSelector);
    const changed = () => {
      if (inf === this.current) this.changed();
    };
    inf.lw.on('add', changed);
    inf.lw.on('update', changed);
    inf.lw.on('delete', changed);
    inf.lw.on('error', (err: unknown) => this.failed(inf, err));
    return inf;
  }

  private async run(inf: Informer): Promise<void> {
    try {
      await inf.lw.start();
    } catch (e) {
      this.failed(inf, e);
    }
  }

  /** The watch is up (after a list, or resumed from the last resourceVersion). */
  private fresh(inf: Informer): void {
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

  /** ListWatch stops at a list or watch error (other than 410 Gone, which it handles): retry later. */
  private failed(inf: Informer, err: unknown): void {
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
      // and ListWatch lists again
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

  private close(inf: Informer): void {
    inf.stopped = true;
    void inf.lw.stop();
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
    return this.st;
  }

  /** resourceVersion the informer holds (tests) */
  resourceVersion(): string {
    return this.current?.lw.latestResourceVersion() ?? '';
  }

  private meta(p: V1Pod): PodMeta {
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
    if (hit === undefined && !this.lookups.has(key) && this.apps) {
      this.lookups.add(key);
      this.apps.readNamespacedReplicaSet({ name, namespace }).then(
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
      await this.core?.readNode({ name: this.o.nodeName });
    } catch (e) {
      const code = (e as { code?: number }).code;
      if (code === 404) this.o.log(`strata: warning: the API server knows no node "${this.o.nodeName}" (node.name, NODE_NAME): no pods will be found for it`);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    for (const inf of [this.current, this.next]) if (inf) this.close(inf);
  }
}

function describeError(e: unknown): string {
  if (!e) return 'unknown error';
  const err = e as { code?: number | string; statusCode?: number; message?: string; cause?: { code?: string; message?: string } };
  const status = err.statusCode ?? (typeof err.code === 'number' ? err.code : undefined);
  const cause = err.cause?.code ?? err.cause?.message;
  const msg = (err.message ?? String(e)).split('\n')[0];
  return [status ? `HTTP ${status}` : '', msg, cause ? `(${cause})` : ''].filter(Boolean).join(' ');
}
