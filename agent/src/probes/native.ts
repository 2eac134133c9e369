// Loads the native addon (built by node-gyp into build/Release).
import { createRequire } from 'node:module';
import type * as Native from '../../../native/index.d.ts';

const require = createRequire(import.meta.url);

export type { NativeError, ProbeOptions, ProgStat, PumpOptions, PumpStats } from '../../../native/index.d.ts';
export type { KernelStats } from './probe-set.ts';
export type Probes = Native.Probes;

let cached: typeof Native | undefined;

export function loadNative(): typeof Native {
  if (!cached) cached = require('../../../build/Release/strata_native.node') as typeof Native;
  return cached;
}

export function isNativeError(e: unknown): e is Native.NativeError {
  return e instanceof Error && typeof (e as { stage?: unknown }).stage === 'string';
}
