// The correlator's slice of the configuration, in the units it works in (ns). Built from the
// validated config by config/agent-options.ts; the schema holds every default.

export interface SamplingOptions {
  ratio: number;
  slowThresholdMs: number;
  keepErrors: boolean;
  respectParentSampled: boolean;
}

export type { StitchOptions } from './stitch.ts';
import type { StitchOptions } from './stitch.ts';

export interface CorrelatorOptions {
  /** wait this long after an exchange ends before emitting (late events from other CPUs) */
  graceNs: number;
  /** an exchange with no activity for this long is closed as incomplete */
  idleNs: number;
  maxConns: number;
  maxMessages: number;
  /** finished exchanges waiting for their grace period, at most */
  maxReady: number;
  /** a response whose framing was lost ends after this long without bytes */
  lostQuietNs: number;
  /** emitted exchanges stay findable (for late children) this long */
  retainNs: number;
  /** processes whose server spans are labelled layer=proxy */
  proxyComms: readonly string[];
  /** request headers copied to span attributes (lowercase); bodies are never exported */
  headerAllowList: readonly string[];
  /** headers whose value is replaced by "[REDACTED]" even when allow-listed */
  redactHeaders: readonly string[];
  sampling: SamplingOptions;
  /** local traces whose root has not finished yet, held for the sampling decision, at most */
  maxHeldTraces: number;
  /** junk requests / heads that never completed are exported (as error spans) rather than only counted */
  exportInvalid: boolean;
  /** cross-node stitching (hold and release); used only when the correlator is given a peer link */
  stitch?: StitchOptions;
}
