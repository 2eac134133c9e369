// An informer on one resource: list, then watch from the list's resourceVersion, the objects kept
// in a cache keyed by namespace/name. What client-node's ListWatch did for the agent, and its
// contract with the callers (k8s/kube.ts, k8s/node-peers.ts), which own retry and backoff:
//   - ADDED/MODIFIED/DELETED update the cache (a MODIFIED of the same resourceVersion is no
//     change); BOOKMARK only moves the resourceVersion;
//   - the server closing the watch (its timeoutSeconds) or no byte for the client's timeout:
//     watch again from the resourceVersion held;
//   - 410 Gone (an HTTP answer, or an ERROR event with code 410): list again;
//   - any other failure (list, watch request, a bad line, an ERROR event) stops the informer and
//     reaches onError; the caller calls start() again later, which resumes the watch from the
//     resourceVersion held (or lists when there is none).
import { isGone, type KubeClient, KubeApiError, type KubeList, type KubeObject, type WatchRequest } from './api-client.ts';
import { STRATA_ERR_KUBE_WATCH } from '../errors.ts';

export type ChangeType = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends KubeObject> {
  client: KubeClient;
  /** the collection, e.g. /api/v1/pods */
  path: string;
  fieldSelector?: string;
  /** the list (the caller's, so that it counts its lists); signal: stop() */
  list: (signal: AbortSignal) => Promise<KubeList<T>>;
  /** the server ends each watch after this (the client's timeout must be longer) */
  watchTimeoutS: number;
  onChange?: (type: ChangeType, obj: T) => void;
  /** a watch request got its 200: the cache is complete and followed */
  onWatching?: () => void;
  onError?: (err: unknown) => void;
  /** a watch that ends at once, eventless, is retried after this, doubling (a server closing every watch must not make a busy loop) */
  quickCloseDelayMs?: { initialMs: number; maxMs: number };
}

const keyOf = (o: KubeObject): string => `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
/** a watch shorter than this, without any event, is a quick close */
const QUICK_CLOSE_MS = 1000;

export class Informer<T extends KubeObject> {
  private readonly o: InformerOptions<T>;
  private readonly objects = new Map<string, T>();
  private rv = '';
  private running = false;
  private stopped = false;
  private abort?: AbortController;
  private watchReq?: WatchRequest;
  private wake?: () => void;
  private quickCloses = 0;
  /** resolves start()'s promise: the first watch is up, or the informer failed or was stopped */
  private started?: () => void;

  constructor(o: InformerOptions<T>) {
    this.o = o;
  }

  /** Lists (when no resourceVersion is held) and watches; resolves once watching, or when that failed (onError). */
  start(): Promise<void> {
    this.stopped = false;
    const p = new Promise<void>((resolve) => {
      const prev = this.started;
      this.started = () => {
        prev?.();
        resolve();
      };
    });
    if (!this.running) {
      this.running = true;
      void this.loop().then((err) => {
        this.running = false;
        // before start() resolves, as client-node's ListWatch did: the caller has seen the failure
        if (err !== undefined && !this.stopped) this.o.onError?.(err);
        this.release();
      });
    }
    return p;
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.watchReq?.stop();
    this.wake?.();
    this.release();
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  resourceVersion(): string {
    return this.rv;
  }

  private release(): void {
    const s = this.started;
    this.started = undefined;
    s?.();
  }

  /** runs until stopped (undefined) or a failure other than 410 Gone (returned) */
  private async loop(): Promise<unknown> {
    while (!this.stopped) {
      if (!this.rv) {
        const abort = new AbortController();
        this.abort = abort;
        let l: KubeList<T>;
        try {
          l = await this.o.list(abort.signal);
        } catch (e) {
          return e ?? new Error('the list failed');
        }
        if (this.stopped) return undefined;
        this.replace(l.items ?? []);
        this.rv = l.metadata?.resourceVersion ?? '';
      }
      const t0 = performance.now();
      let events = 0;
      const w = this.o.client.watch(this.o.path, {
        fieldSelector: this.o.fieldSelector, resourceVersion: this.rv || undefined,
        allowWatchBookmarks: 'true', timeoutSeconds: String(this.o.watchTimeoutS),
      }, {
        onOpen: () => {
          this.o.onWatching?.();
          this.release();
        },
        onEvent: (type, obj) => {
          events++;
          if (type === 'ERROR') {
            if (obj.code === 410) {
              this.rv = '';
              w.stop();
            } else {
              w.stop(new KubeApiError(STRATA_ERR_KUBE_WATCH, `watch ${this.o.path}: ERROR event${obj.code ? ` ${obj.code}` : ''}${obj.reason ? ` ${obj.reason}` : ''}: ${obj.message ?? 'no message'}`, { statusCode: obj.code, reason: obj.reason }));
            }
            return;
          }
          if (type === 'ADDED' || type === 'MODIFIED') this.put(obj as T);
          else if (type === 'DELETED') this.remove(obj as T);
          const rv = obj.metadata?.resourceVersion;
          if (rv) this.rv = rv;
        },
      });
      this.watchReq = w;
      let end: string;
      try {
        end = await w.done;
      } catch (e) {
        this.watchReq = undefined;
        if (this.stopped) return undefined;
        if (isGone(e)) {
          this.rv = '';
          continue;
        }
        return e ?? new Error('the watch failed');
      }
      this.watchReq = undefined;
      if (this.stopped) return undefined;
      if (end === 'closed' && events === 0 && performance.now() - t0 < QUICK_CLOSE_MS) {
        const d = this.o.quickCloseDelayMs ?? { initialMs: 1000, maxMs: 30_000 };
        await this.sleep(Math.min(d.initialMs * 2 ** this.quickCloses, d.maxMs));
        this.quickCloses++;
      } else {
        this.quickCloses = 0;
      }
    }
    return undefined;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      t.unref();
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
  }

  /** a (re)list: objects it no longer has are deleted, the others added or updated */
  private replace(items: T[]): void {
    const keep = new Set(items.map(keyOf));
    for (const [k, old] of this.objects) {
      if (keep.has(k)) continue;
      this.objects.delete(k);
      this.o.onChange?.('delete', old);
    }
    for (const o of items) this.put(o);
  }

  private put(obj: T): void {
    const k = keyOf(obj);
    const old = this.objects.get(k);
    if (!old) {
      this.objects.set(k, obj);
      this.o.onChange?.('add', obj);
      return;
    }
    const rv = old.metadata?.resourceVersion;
    if (rv !== undefined && rv === obj.metadata?.resourceVersion) return;
    this.objects.set(k, obj);
    this.o.onChange?.('update', obj);
  }

  private remove(obj: T): void {
    const k = keyOf(obj);
    const old = this.objects.get(k);
    if (!old) return;
    this.objects.delete(k);
    this.o.onChange?.('delete', old);
  }
}
