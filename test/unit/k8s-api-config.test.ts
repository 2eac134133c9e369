// How the agent finds and authenticates to the API server (agent/src/k8s/api-config.ts), checked
// against a local https server with a CA and certificates made by openssl (lab/k8s/pki.ts): a
// kubeconfig's CA as a file or inline, a token inline or in a file (re-read: projected tokens
// rotate), a client certificate as files or inline, insecure-skip-tls-verify; the in-cluster
// service account; and what strata refuses (exec, auth-provider, basic auth, ...) with
// STRATA_ERR_KUBECONFIG.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { type KubeApiError, KubeClient } from '../../agent/src/k8s/api-client.ts';
import { inClusterConnection, type KubeConnection, kubeconfigConnection } from '../../agent/src/k8s/api-config.ts';
import { KubeNodePeers } from '../../agent/src/k8s/node-peers.ts';
import { KubePodSource } from '../../agent/src/k8s/kube.ts';
import { type Pki, makePki } from '../../lab/k8s/pki.ts';
import type { StrataError } from '../../agent/src/errors.ts';

const b64 = (file: string) => readFileSync(file).toString('base64');

function kubeconfig(cluster: Record<string, unknown>, user: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return stringify({
    apiVersion: 'v1', kind: 'Config',
    clusters: [{ name: 'other', cluster: { server: 'https://192.0.2.1:1' } }, { name: 'k', cluster }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'wrong', context: { cluster: 'other', user: 'u' } }, { name: 'c', context: { cluster: 'k', user: 'u', namespace: 'ns1' } }],
    'current-context': 'c',
    ...extra,
  });
}

const isConfigError = (pattern: RegExp) => (e: StrataError) => {
  assert.equal(e.code, 'STRATA_ERR_KUBECONFIG');
  assert.equal(e.exitCode, 3);
  assert.match(e.message, pattern);
  return true;
};

describe('API server connection: kubeconfig and in-cluster', () => {
  let dir = '';
  let pki: Pki;
  let server: Server;
  let url = '';
  const seen: { auth?: string; cn?: string }[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'k8s-api-config-'));
    pki = await makePki(join(dir, 'pki'), { ips: ['127.0.0.1'], dns: ['kubernetes.default.svc'] });
    server = createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caCert), requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const s = req.socket as TLSSocket;
      const peer = s.getPeerCertificate();
      seen.push({ auth: req.headers.authorization, cn: s.authorized && peer?.subject ? String(peer.subject.CN) : undefined });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"kind":"NodeList","items":[]}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(conn: KubeConnection): Promise<{ auth?: string; cn?: string }> {
    const c = new KubeClient(conn);
    try {
      await c.get('/api/v1/nodes');
      return seen.at(-1) ?? {};
    } finally {
      c.close();
    }
  }

  test('certificate-authority as a path relative to the kubeconfig, an inline token; the current-context chosen', async () => {
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a', 'ca.crt'), readFileSync(pki.caCert));
    writeFileSync(join(dir, 'a', 'kc'), kubeconfig({ server: url, 'certificate-authority': 'ca.crt' }, { token: 'inline-token' }));
    const conn = kubeconfigConnection(join(dir, 'a', 'kc'));
    assert.equal(conn.namespace, 'ns1');
    assert.deepEqual(await call(conn), { auth: 'Bearer inline-token', cn: undefined });
  });

  test('inline CA and client certificate (-data), no token: the server sees the certificate', async () => {
    writeFileSync(join(dir, 'kc-data'), kubeconfig({ server: url, 'certificate-authority-data': b64(pki.caCert) },
      { 'client-certificate-data': b64(pki.kubeletClientCert), 'client-key-data': b64(pki.kubeletClientKey) }));
    assert.deepEqual(await call(kubeconfigConnection(join(dir, 'kc-data'))), { auth: undefined, cn: 'kube-apiserver-kubelet-client' });
  });

  test('client certificate files and a tokenFile, re-read at each request (a rotated token is used at once)', async () => {
    writeFileSync(join(dir, 'token'), 'first-token\n');
    writeFileSync(join(dir, 'kc-files'), kubeconfig({ server: url, 'certificate-authority': pki.caCert },
      { 'client-certificate': pki.kubeletClientCert, 'client-key': pki.kubeletClientKey, tokenFile: 'token' }));
    const conn = kubeconfigConnection(join(dir, 'kc-files'));
    const c = new KubeClient(conn);
    try {
      await c.get('/api/v1/nodes');
      assert.deepEqual(seen.at(-1), { auth: 'Bearer first-token', cn: 'kube-apiserver-kubelet-client' });
      writeFileSync(join(dir, 'token'), 'rotated-token\n');
      await c.get('/api/v1/nodes');
      assert.equal(seen.at(-1)?.auth, 'Bearer rotated-token');
      rmSync(join(dir, 'token'));
      await assert.rejects(c.get('/api/v1/nodes'), isConfigError(/cannot read the token file .*ENOENT/));
    } finally {
      c.close();
    }
  });

  test('without the CA the server is refused; insecure-skip-tls-verify accepts it', async () => {
    writeFileSync(join(dir, 'kc-noca'), kubeconfig({ server: url }, { token: 't' }));
    const c = new KubeClient(kubeconfigConnection(join(dir, 'kc-noca')));
    try {
      await assert.rejects(c.get('/api/v1/nodes'), (e: KubeApiError) => e.code === 'STRATA_ERR_KUBE_API' && /certificate/i.test(e.message));
    } finally {
      c.close();
    }
    writeFileSync(join(dir, 'kc-insecure'), kubeconfig({ server: url, 'insecure-skip-tls-verify': true }, { token: 't' }));
    assert.equal((await call(kubeconfigConnection(join(dir, 'kc-insecure')))).auth, 'Bearer t');
  });

  test('what strata does not support, and broken kubeconfigs: STRATA_ERR_KUBECONFIG (exit 3) saying what', async () => {
    const cases: [string, RegExp][] = [
      [kubeconfig({ server: url }, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'aws' } }), /uses exec \(exec credential plugins\), which strata does not support/],
      [kubeconfig({ server: url }, { 'auth-provider': { name: 'oidc' } }), /auth-provider/],
      [kubeconfig({ server: url }, { username: 'admin', password: 'x' }), /basic authentication/],
      [kubeconfig({ server: url }, { as: 'someone', token: 't' }), /impersonation/],
      [kubeconfig({ server: url, 'proxy-url': 'http://proxy:3128' }, { token: 't' }), /proxy-url is not supported/],
      [kubeconfig({ server: url }, { 'client-certificate-data': b64(pki.kubeletClientCert) }), /certificate without its key/],
      [kubeconfig({ server: url }, { token: 't' }, { 'current-context': '' }), /current-context is not set/],
      [kubeconfig({ server: url }, { token: 't' }, { 'current-context': 'nope' }), /no context named "nope"/],
      [kubeconfig({ server: 'ftp://x' }, { token: 't' }), /neither https nor http/],
      [kubeconfig({}, { token: 't' }), /has no server/],
      [kubeconfig({ server: url, 'certificate-authority': 'missing.crt' }, { token: 't' }), /cannot read certificate-authority .*missing\.crt \(ENOENT\)/],
      [kubeconfig({ server: url }, { tokenFile: 'missing-token' }), /cannot read the token file/],
      ['clusters: [unclosed', /not YAML/],
      ['- a list', /not a kubeconfig/],
    ];
    for (const [i, [text, want]] of cases.entries()) {
      const f = join(dir, `bad-${i}`);
      writeFileSync(f, text);
      assert.throws(() => kubeconfigConnection(f), isConfigError(want), `case ${i}: ${want}`);
    }
    assert.throws(() => kubeconfigConnection(join(dir, 'no-such-file')), isConfigError(/cannot read the kubeconfig .*ENOENT/));
    // the sources refuse it when they start: the agent exits with the configuration's exit code
    const exec = join(dir, 'bad-0');
    const pods = new KubePodSource({ nodeName: 'n', kubeconfig: exec, resyncS: 0, startTimeoutMs: 100, backoff: { initialMs: 10, maxMs: 10 }, maxOwners: 1, log: () => {} });
    await assert.rejects(pods.start(() => {}), isConfigError(/exec/));
    await pods.stop();
    assert.throws(() => new KubeNodePeers({ kubeconfig: exec, port: 1, backoff: { initialMs: 10, maxMs: 10 }, log: () => {} }).start(() => {}), isConfigError(/exec/));
  });

  test('in-cluster: KUBERNETES_SERVICE_HOST/PORT (IPv6 in brackets), the service account\'s CA and token (re-read), its namespace', async () => {
    const sa = join(dir, 'sa');
    mkdirSync(sa);
    writeFileSync(join(sa, 'ca.crt'), readFileSync(pki.caCert));
    writeFileSync(join(sa, 'token'), 'sa-token-1');
    writeFileSync(join(sa, 'namespace'), 'strata');
    const port = String((server.address() as AddressInfo).port);
    const conn = inClusterConnection({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port }, sa);
    assert.equal(conn.server.href, `https://127.0.0.1:${port}/`);
    assert.equal(conn.namespace, 'strata');
    assert.equal((await call(conn)).auth, 'Bearer sa-token-1');
    writeFileSync(join(sa, 'token'), 'sa-token-2');
    assert.equal((await call(conn)).auth, 'Bearer sa-token-2', 'a rotated projected token');
    assert.equal(inClusterConnection({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, sa).server.host, '[fd00::1]');
    assert.throws(() => inClusterConnection({}, sa), isConfigError(/not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT/));
    assert.throws(() => inClusterConnection({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: 'https' }, sa), isConfigError(/is not a port/));
    rmSync(join(sa, 'token'));
    assert.throws(() => inClusterConnection({ KUBERNETES_SERVICE_HOST: 'h', KUBERNETES_SERVICE_PORT: '443' }, sa), isConfigError(/cannot read the token file .*sa\/token/));
  });
});
