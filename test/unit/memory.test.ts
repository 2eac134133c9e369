// What the agent's resident memory is made of, checked where it is decided (issue 8, measure 6):
// no Kubernetes client library (the agent's own list/watch client, agent/src/k8s/api-client.ts,
// replaced @kubernetes/client-node, which cost ~57-77 MiB of RSS), and the native mallocTrim()
// gives freed malloc memory back to the kernel.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const url = (module: string) => new URL(module, `file://${ROOT}/`).href;

/**
 * Runs `body` (an async module body) in a fresh node with a load hook and returns every module URL
 * loaded (module.registerHooks sees each load, static and dynamic imports alike) and what body
 * returned.
 */
function modulesLoadedBy(body: string): { seen: string[]; result: unknown } {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });
    const result = await (async () => { ${body} })();
    process.stdout.write(JSON.stringify({ seen, result }));
    process.exit(0);
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as { seen: string[]; result: unknown };
}

/** the npm package a module URL belongs to, or undefined outside node_modules */
const packageOf = (u: string): string | undefined => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1];

describe('no Kubernetes client library', () => {
  it('@kubernetes/client-node is not a dependency of the agent', () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    assert.equal(pkg.dependencies['@kubernetes/client-node'], undefined);
    assert.equal(pkg.devDependencies['@kubernetes/client-node'], undefined);
  });

  it('discovery and the peers from the API server load no package but yaml and lru-cache; pods are listed and watched', () => {
    // a local API server in the child: a list of one pod, then a watch adding a second
    const { seen, result } = modulesLoadedBy(`
      const { createServer } = await import('node:http');
      const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
      const { KubePodSource } = await import(${JSON.stringify(url('agent/src/k8s/kube.ts'))});
      const { KubeNodePeers } = await import(${JSON.stringify(url('agent/src/k8s/node-peers.ts'))});
      const pod = (name, rv) => ({ metadata: { name, namespace: 'default', uid: name, resourceVersion: rv }, spec: { nodeName: 'n1', containers: [{ name: 'c' }] } });
      const server = createServer((req, res) => {
        const u = new URL(req.url, 'http://x');
        if (u.pathname === '/api/v1/pods' && u.searchParams.get('watch') === '1') {
          res.writeHead(200);
          res.write(JSON.stringify({ type: 'ADDED', object: pod('p2', '6') }) + '\\n');
        } else if (u.pathname === '/api/v1/pods') {
          res.writeHead(200).end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [pod('p1', '5')] }));
        } else if (u.pathname === '/api/v1/nodes' && u.searchParams.get('watch') === '1') {
          res.writeHead(200);
          res.flushHeaders();
        } else if (u.pathname === '/api/v1/nodes') {
          res.writeHead(200).end(JSON.stringify({ metadata: { resourceVersion: '5' }, items: [{ metadata: { name: 'n2' }, spec: { podCIDR: '10.9.2.0/24' }, status: { addresses: [{ type: 'InternalIP', address: '10.0.0.2' }] } }] }));
        } else res.writeHead(200).end('{}');
      });
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const dir = mkdtempSync('/tmp/strata-memory-');
      writeFileSync(dir + '/kc', JSON.stringify({ apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
        contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }], clusters: [{ name: 'k', cluster: { server: 'http://127.0.0.1:' + server.address().port } }], users: [{ name: 'u', user: { token: 't' } }] }));
      const s = new KubePodSource({ nodeName: 'n1', kubeconfig: dir + '/kc', resyncS: 0, startTimeoutMs: 10000, backoff: { initialMs: 100, maxMs: 1000 }, maxOwners: 10, log: () => {} });
      await s.start(() => {});
      const deadline = Date.now() + 10000;
      while (s.pods().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      const peers = await new Promise((resolve) => {
        const p = new KubeNodePeers({ kubeconfig: dir + '/kc', port: 9465, backoff: { initialMs: 100, maxMs: 1000 }, log: () => {} });
        p.start((list) => { resolve(list); void p.stop(); });
      });
      const names = s.pods().map((p) => p.name).sort();
      await s.stop();
      server.closeAllConnections();
      server.close();
      rmSync(dir, { recursive: true, force: true });
      return { names, stale: s.stale(), peers };
    `);
    assert.deepEqual(result, { names: ['p1', 'p2'], stale: false, peers: [{ name: 'n2', podCidr: '10.9.2.0/24', address: 'http://10.0.0.2:9465' }] });
    assert.ok(seen.some((u) => u.endsWith('/agent/src/k8s/api-client.ts')), 'the hook saw the client');
    const packages = [...new Set(seen.map(packageOf).filter((p) => p !== undefined))].sort();
    // the hook sees packages (kube.ts uses lru-cache), and no other than these two
    assert.deepEqual(packages, ['lru-cache', 'yaml']);
  });

  it('importing the agent module loads no Kubernetes client package', () => {
    const { seen } = modulesLoadedBy(`await import(${JSON.stringify(url('agent/src/agent.ts'))});`);
    assert.ok(seen.some((u) => u.endsWith('/agent/src/agent.ts')), 'the hook saw the agent module');
    assert.ok(seen.length > 20, `the hook saw the agent's imports (${seen.length} modules)`);
    assert.deepEqual(seen.filter((u) => /\/node_modules\/@kubernetes\//.test(u) || /\/k8s\/(kube|node-peers)\.ts$/.test(u)), [],
      'the API server modules are imported only when configured');
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
