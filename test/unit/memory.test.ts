// What the agent's resident memory is made of, checked where it is decided (issue 8, measure 6):
// the Kubernetes client is loaded only when the configuration asks for it, and the native
// mallocTrim() gives freed malloc memory back to the kernel.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Imports `module` (a path under the repository) in a fresh node and returns every module URL the
 * import loaded (module.registerHooks sees each load, static and dynamic imports alike).
 */
function modulesLoadedBy(module: string): string[] {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });
    await import(${JSON.stringify(new URL(module, `file://${ROOT}/`).href)});
    process.stdout.write(JSON.stringify(seen));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as string[];
}

const isKubeClient = (url: string) => url.includes('/node_modules/@kubernetes/client-node/');

describe('the Kubernetes client is loaded only when used', () => {
  it('importing the agent module loads no module of @kubernetes/client-node', () => {
    // ~57 MiB of RSS (its generated API sources stay in the heap): discovery.source=kubernetes and
    // stitch.peersFrom=kubernetes import it when the agent starts, nothing else may
    const loaded = modulesLoadedBy('agent/src/agent.ts');
    assert.ok(loaded.some((u) => u.endsWith('/agent/src/agent.ts')), 'the hook saw the agent module');
    assert.ok(loaded.length > 20, `the hook saw the agent's imports (${loaded.length} modules)`);
    assert.deepEqual(loaded.filter(isKubeClient), []);
  });

  it('the node-peers module does load it (the check above can see it)', () => {
    assert.ok(modulesLoadedBy('agent/src/k8s/node-peers.ts').some(isKubeClient));
  });
});

describe('mallocTrim', () => {
  it('gives the free memory in the middle of the malloc heap back to the kernel', () => {
    // a child with --expose-gc: 1600 Buffers of 64 KiB (malloc'd by node's allocator, below the
    // mmap threshold: from the arena), every 8th kept, the others freed by a GC; free() alone
    // leaves the freed chunks between the kept ones resident, mallocTrim() must not
    const script = `
      import { readFileSync } from 'node:fs';
      import { loadNative } from ${JSON.stringify(new URL('agent/src/probes/native.ts', `file://${ROOT}/`).href)};
      const native = loadNative();
      const rss = () => Number(readFileSync('/proc/self/statm', 'utf8').split(' ')[1]) * 4096;
      let bufs = [];
      for (let i = 0; i < 1600; i++) bufs.push(Buffer.allocUnsafeSlow(65536).fill(i & 0xff));
      const kept = bufs.filter((_, i) => i % 8 === 7);
      const freedBytes = (bufs.length - kept.length) * 65536;
      bufs = undefined;
      const held = process.memoryUsage().arrayBuffers;
      const deadline = Date.now() + 20000;
      // the backing stores are freed when the GC sweeps their ArrayBuffers (maybe on a helper thread)
      while (process.memoryUsage().arrayBuffers > held - freedBytes * 0.95 && Date.now() < deadline) {
        globalThis.gc();
        await new Promise((r) => setTimeout(r, 50));
      }
      const before = rss();
      const us = await native.mallocTrim();
      const after = rss();
      process.stdout.write(JSON.stringify({ freedBytes, arrayBuffers: process.memoryUsage().arrayBuffers, kept: kept.length, before, after, us }));
    `;
    const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
    const r = JSON.parse(out) as { freedBytes: number; arrayBuffers: number; kept: number; before: number; after: number; us: number | false };
    if (r.us === false) {
      if (process.env.CI === 'true') assert.fail('mallocTrim unavailable (not glibc)');
      return;
    }
    assert.equal(typeof r.us, 'number');
    assert.ok(r.us >= 0);
    assert.ok(r.arrayBuffers >= r.kept * 65536, 'the kept Buffers are still held');
    // at least half of what was freed leaves RSS (pages partly used by other allocations stay)
    assert.ok(r.before - r.after >= r.freedBytes / 2,
      `RSS ${(r.before / 1048576).toFixed(1)} -> ${(r.after / 1048576).toFixed(1)} MiB after freeing ${(r.freedBytes / 1048576).toFixed(1)} MiB`);
  });
});
