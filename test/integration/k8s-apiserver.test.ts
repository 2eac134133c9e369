// The API-server half of lab/k8s/cluster.ts, which the discovery tests build on: etcd +
// kube-apiserver 1.20 (Debian's source package) on loopback with token identities and Node+RBAC
// authorization; a forbidden request is refused; an etcd compaction makes an older
// resourceVersion 410 Gone (watch cache off: at once; watch cache on: after a restart); the API
// server restarts; stop() leaves no process, port or state behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { test } from 'node:test';
import { isAlive, readProcRecords } from '../../lab/procs.ts';
import { type ApiCluster, missingForCluster, serviceAccountIdentity, startApiServer } from '../../lab/k8s/cluster.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';

function gate(t: { skip: (why: string) => void }): boolean {
  const why = missingPrerequisites() ?? missingForCluster('apiserver');
  if (!why) return true;
  if (process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
  t.skip(why);
  return false;
}

const listening = (port: number) => new Promise<boolean>((resolve) => {
  const s = createConnection({ host: '127.0.0.1', port }, () => {
    s.destroy();
    resolve(true);
  });
  s.on('error', () => resolve(false));
});

async function configMap(c: ApiCluster, name: string): Promise<string> {
  const r = await c.api('POST', '/api/v1/namespaces/default/configmaps', { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { k: name } });
  assert.equal(r.status, 201, r.body);
  return (JSON.parse(r.body) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
}

/** the first event of a watch from resourceVersion rv (the server closes it after 1 s; NONE: no event) */
async function watchFrom(c: ApiCluster, rv: string): Promise<{ type: string; code?: number; reason?: string }> {
  const r = await c.api('GET', `/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${rv}&timeoutSeconds=1`);
  assert.equal(r.status, 200, r.body);
  // no event within the second: the watch was accepted and had nothing to say
  const line = r.body.split('\n')[0] || '{"type":"NONE","object":{}}';
  const first = JSON.parse(line) as { type: string; object: { code?: number; reason?: string } };
  return { type: first.type, code: first.object.code, reason: first.object.reason };
}

test('the sk8 API server: identities and RBAC, 410 Gone after an etcd compaction, restart, clean stop', { timeout: 5 * 60_000 }, async (t) => {
  if (!gate(t)) return;
  for (const watchCache of [false, true]) {
    const c = await startApiServer({ identities: [serviceAccountIdentity('strata', 'strata', 'agent')], watchCache, log: (s) => t.diagnostic(s) });
    const procs = readProcRecords(c.stateDir);
    let stopped = false;
    try {
      assert.match(await c.kubectl(['get', 'namespaces']), /kube-system/);
      // authenticated as the agent's ServiceAccount, but no binding: Node+RBAC refuse it
      assert.equal((await c.api('GET', '/api/v1/pods', undefined, 'agent')).status, 403);
      assert.equal((await c.api('GET', '/api/v1/pods', undefined, 'nobody').catch(() => ({ status: -1 }))).status, -1, 'no such identity');

      // the watch from `old` starts at old+1 (b's revision): compacted once c exists too
      const old = await configMap(c, `a-${watchCache}`);
      await configMap(c, `b-${watchCache}`);
      await configMap(c, `c-${watchCache}`);
      const before = await watchFrom(c, old);
      assert.equal(before.type, 'ADDED', 'a watch from a live resourceVersion streams events');
      const rev = await c.compactEtcd();
      assert.ok(rev >= Number(old));
      if (watchCache) {
        // the watch cache still holds the window: the same watch works until the cache is rebuilt
        assert.equal((await watchFrom(c, old)).type, 'ADDED');
      } else {
        // every watch goes to etcd: Gone at once
        assert.equal((await watchFrom(c, old)).code, 410);
      }
      const r = await c.restartApiServer();
      t.diagnostic(`watchCache=${watchCache}: restart down ${r.downMs} ms, up ${r.upMs} ms; start ${JSON.stringify(c.timings)}`);
      const gone = await watchFrom(c, old);
      assert.deepEqual([gone.type, gone.code], ['ERROR', 410], `410 Gone: ${JSON.stringify(gone)}`);
      // a re-list gives a current resourceVersion, from which a watch works again
      const list = JSON.parse((await c.api('GET', '/api/v1/namespaces/default/configmaps')).body) as { metadata: { resourceVersion: string } };
      assert.notEqual((await watchFrom(c, list.metadata.resourceVersion)).type, 'ERROR');

      await c.stopApiServer();
      assert.equal(await listening(c.ports.apiserver), false, 'stopped: connection refused');
      await c.startApiServer();
      assert.equal((await c.api('GET', '/readyz')).status, 200);

      stopped = true;
      assert.deepEqual(await c.stop(), []);
      assert.equal(await listening(c.ports.apiserver), false);
      assert.equal(await listening(c.ports.etcdClient), false);
      assert.ok(!existsSync(c.stateDir), `${c.stateDir} removed`);
      assert.deepEqual(procs.filter((p) => isAlive(p.pid, p.starttime)).map((p) => p.name), [], 'no process left');
    } finally {
      if (!stopped) await c.stop();
    }
  }
});
