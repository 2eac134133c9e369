// The one interface behind which pods are discovered: the pods file (pods-file.ts) or the
// Kubernetes API server (kube.ts). Sources are level-triggered: they say "something changed" and
// hand out the whole current set; k8s/discovery.ts diffs it against what is applied.
import type { PodMeta } from './enrich.ts';

export interface SourceStats {
  /** successful lists (file reads) */
  lists: number;
  /** lists that failed (API unreachable, file unreadable) */
  listErrors: number;
  /** watches that ended with an error (not the server's normal close) */
  watchErrors: number;
  /** lists after the first: resync, 410 Gone, reconnect without a resumable resourceVersion */
  relists: number;
}

export interface PodSource {
  readonly kind: 'file' | 'static' | 'kubernetes';
  /**
   * true: the source knows every pod of this node (a pods file); pods found in /proc that it does
   * not name are someone else's. false (the API server): they may be newer than the last event.
   */
  readonly authoritative: boolean;
  /** Begins watching; onChange is called (synchronously or later) whenever pods() may differ. */
  start(onChange: () => void): Promise<void>;
  /** A cheap check for changes the source cannot be told about (a file's mtime); true if it changed. */
  poll(): boolean;
  pods(): readonly PodMeta[];
  /** true while what pods() says may be out of date (the API server unreachable, never listed) */
  stale(): boolean;
  stats(): SourceStats;
  stop(): Promise<void>;
}
