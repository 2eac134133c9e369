// A cgroup of a test's own under the cgroup2 mount, for processes the socket probes' cgroup filter
// should (or should not) see; removed once its processes are gone.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { requireKernel } from './kernel.ts';
import { waitFor } from './otlp-fixture.ts';

function cgroup2Mount(): string | undefined {
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[2] === 'cgroup2');
  return line?.split(' ')[1];
}

/** a fresh cgroup under the cgroup2 mount, or undefined after skipping (failing under CI) */
export function makeCgroup(t: TestContext, name: string): string | undefined {
  if (!requireKernel(t)) return undefined;
  const root = cgroup2Mount();
  if (!root) {
    if (process.env.CI === 'true') assert.fail('no cgroup2 mount');
    t.skip('no cgroup2 mount');
    return undefined;
  }
  const dir = join(root, `${name}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** a cgroup can be removed once its processes are gone: poll until it is */
export function removeCgroup(dir: string): Promise<unknown> {
  return waitFor(() => {
    try {
      rmdirSync(dir);
      return true;
    } catch {
      return false;
    }
  }, 'cgroup removed', 10_000);
}
