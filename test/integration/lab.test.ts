// Integration test of the lab (real network namespaces, bridge, veths, Debian nginx, Node app).
// Needs root and nginx: under CI=true their absence fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hierarchies } from '../../lab/cgroups.ts';
import {
  curlFromClient,
  inNetns,
  type Lab,
  labDown,
  labUp,
  type PodRecord,
  pipelineFromClient,
  rawExchangeFromClient,
  rawFromClient,
  runClient,
} from '../../lab/lab.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces)';
  if (!existsSync('/usr/sbin/nginx')) return 'nginx is not installed (/usr/sbin/nginx)';
  if (!existsSync('/usr/sbin/nft')) return 'nftables is not installed (/usr/sbin/nft)';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'iproute2 (ip) is not installed';
  }
  return undefined;
}

const missing = missingPrerequisite();
const ci = process.env.CI === 'true';
const skip = missing && !ci ? `skipped: ${missing}` : false;

const newPrefix = () => `st${randomBytes(2).toString('hex')}`;
const labNetns = (prefix: string) =>
  execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
const netnsPids = (ns: string) =>
  execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
const statInode = (ns: string) =>
  Number(execFileSync('stat', ['-L', '-c', '%i', `/run/netns/${ns}`], { encoding: 'utf8' }));

/** Running = exists and is not a zombie (a reparented zombie waits for a reaper, it runs nothing). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

const until = (what: string, check: () => boolean, timeoutMs = 5000) => waitFor(check, what, timeoutMs);

function assertGone(prefix: string, stateDir: string, pids: number[]): void {
  assert.deepEqual(labNetns(prefix), [], 'no netns of the lab remains');
  assert.deepEqual(pids.filter(running), [], 'no lab process remains');
  assert.equal(existsSync(stateDir), false, 'state dir removed');
  for (const h of hierarchies().all) assert.equal(existsSync(join(h, `${prefix}.lab`)), false, `the lab's cgroups removed from ${h}`);
}

/** Every pid of the lab: the recorded ones and whatever runs in its namespaces (nginx worker). */
const allPids = (lab: Lab) => [
  ...lab.pods.ingress.pids,
  ...lab.pods.app.pids,
  ...labNetns(lab.prefix).flatMap(netnsPids),
];

describe('lab: one-node data plane (netns, bridge, veth, nginx ingress, node app)', { skip }, () => {
  const prefix = newPrefix();
  let lab: Lab;

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    const t0 = performance.now();
    lab = await labUp({ prefix });
    console.log(`# labUp ${prefix}: ${Math.round(performance.now() - t0)} ms`);
  });
  after(() => labDown(prefix));

  it('routes a client request through nginx to the app, adding X-Request-ID', async () => {
    const r = await curlFromClient(lab, `${lab.nginxUrl}/hello/world?q=1`);
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body);
    assert.equal(body.service, 'frontend');
    assert.equal(body.path, '/hello/world');
    assert.equal(body.method, 'GET');
    assert.match(body.requestId, /^[0-9a-f]{32}$/);
  });

  it('keeps the client X-Request-ID and traceparent through nginx', async () => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await curlFromClient(lab, `${lab.nginxUrl}/kept`, [
      '-H',
      'X-Request-ID: req-1',
      '-H',
      `traceparent: ${tp}`,
    ]);
    const body = JSON.parse(r.body);
    assert.equal(body.requestId, 'req-1');
    assert.equal(body.traceparent, tp);
  });

  it('reaches the app directly, and its /status and POST handling', async () => {
    const direct = await curlFromClient(lab, `${lab.appUrl}/direct`, ['-d', 'hello']);
    assert.equal(direct.status, 200);
    assert.deepEqual(JSON.parse(direct.body), {
      service: 'frontend',
      path: '/direct',
      method: 'POST',
      bytes: 5,
      requestId: null,
      traceparent: null,
    });
    assert.equal((await curlFromClient(lab, `${lab.nginxUrl}/status/503`)).status, 503);
  });

  it('reaches the app through the Service IP: DNAT in the ingress netns, nginx keeps the Service IP as peer', async () => {
    assert.equal(lab.serviceIp, '10.96.0.10');
    const r = await curlFromClient(lab, `${lab.nginxUrl}/svc/a`);
    assert.equal(r.status, 200);
    const body = JSON.parse(r.body);
    assert.equal(body.service, 'frontend');
    assert.equal(body.path, '/svc/a');
    assert.match(body.requestId, /^[0-9a-f]{32}$/);

    const ruleset = await inNetns(lab.pods.ingress.netns, '/usr/sbin/nft', ['list', 'ruleset']);
    assert.match(ruleset, /table ip strata_svc/);
    assert.match(ruleset, /type nat hook output priority (-100|dstnat)/);
    assert.match(ruleset, /ip daddr 10\.96\.0\.10 tcp dport 80 dnat to 10\.244\.1\.20:8080/);
    // The rule is in the ingress pod only.
    assert.doesNotMatch(await inNetns(lab.pods.app.netns, '/usr/sbin/nft', ['list', 'ruleset']), /strata_svc/);

    // The kept-alive upstream connection: nginx's socket has the Service IP as its peer, the
    // app's socket sees the ingress pod (the DNAT rewrote the packets, not the socket).
    const nginxPeers = await inNetns(lab.pods.ingress.netns, 'ss', ['-Htn', 'state', 'established']);
    assert.match(nginxPeers, /10\.96\.0\.10:80\b/);
    const appPeers = await inNetns(lab.pods.app.netns, 'ss', ['-Htn', 'state', 'established']);
    assert.doesNotMatch(appPeers, /10\.96\.0\.10/);
    assert.match(appPeers, /10\.244\.1\.20:8080\s+10\.244\.1\.10:\d+/);
  });

  it('proxies /h10/ to an HTTP/1.0 close-delimited server', async () => {
    const r = await curlFromClient(lab, `${lab.nginxUrl}/h10/x`);
    assert.equal(r.status, 200);
    assert.match(r.body, /^path=\/h10\/x\n/);
    assert.ok(r.body.length >= 2000, `~2 KB body, got ${r.body.length}`);
    assert.equal(r.body, 'path=/h10/x\n'.repeat(r.body.length / 'path=/h10/x\n'.length));
    // Directly: HTTP/1.0, no Content-Length, the server closes after the body.
    const direct = await rawExchangeFromClient(lab, lab.pods.app.ip, 8081, ['GET /direct10 HTTP/1.0\r\n\r\n']);
    const text = direct.data.toString();
    assert.ok(direct.closed && !direct.timedOut, 'the server closed the connection');
    assert.match(text, /^HTTP\/1\.0 200 OK\r\nContent-Type: text\/plain\r\n\r\npath=\/direct10\n/);
    assert.doesNotMatch(text, /content-length/i);
  });

  it('passes a chunked response through nginx, and big bodies', async () => {
    const r = await curlFromClient(lab, `${lab.nginxUrl}/chunked/5`, ['-i']);
    assert.equal(r.status, 200);
    const [head = '', body = ''] = r.body.split('\r\n\r\n');
    assert.match(head, /^transfer-encoding: chunked$/im);
    const lines = body.split('\n').filter(Boolean);
    assert.equal(lines.length, 5);
    lines.forEach((l, i) => assert.match(l, new RegExp(`^chunk ${i + 1}/5 /chunked/5 `)));
    assert.equal(body.length, 500);

    const big = await curlFromClient(lab, `${lab.nginxUrl}/big/300000`, ['-i']);
    assert.equal(big.status, 200);
    const [bigHead = '', bigBody = ''] = big.body.split('\r\n\r\n');
    assert.match(bigHead, /^content-length: 300000$/im);
    assert.equal(bigBody.length, 300000);
  });

  it('accepts a 1 MiB POST through nginx (client_max_body_size 8m)', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'strata-lab-')), 'body');
    writeFileSync(file, randomBytes(1024 * 1024));
    try {
      const r = await curlFromClient(lab, `${lab.nginxUrl}/upload`, [
        '--data-binary',
        `@${file}`,
        '-H',
        'Content-Type: application/octet-stream',
      ]);
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.body).bytes, 1048576);
    } finally {
      rmSync(dirname(file), { recursive: true, force: true });
    }
  });

  it('answers pipelined requests on one connection in order', async () => {
    const paths = ['/pipe/1', '/svc/pipe/2', '/pipe/3'];
    const responses = await pipelineFromClient(lab, lab.nginxUrl, paths);
    assert.deepEqual(
      responses.map((r) => [r.status, r.path]),
      paths.map((p) => [200, p]),
    );
    // Mixed framings on one connection: JSON with Content-Length, chunked, close-delimited upstream.
    const mixed = await pipelineFromClient(lab, lab.nginxUrl, ['/chunked/3', '/h10/m', '/big/10', '/status/404']);
    assert.deepEqual(
      mixed.map((r) => [r.status, r.path, r.bodyBytes]),
      [
        [200, '/chunked/3', 300],
        [200, '/h10/m', mixed[1]?.bodyBytes],
        [200, '', 10],
        [404, '/status/404', mixed[3]?.bodyBytes],
      ],
    );
  });

  it('sends raw bytes: a request split over many writes, and garbage', async () => {
    const req = 'GET /split/me HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n';
    const pieces = req.match(/.{1,7}/gs) ?? [];
    const split = (await rawFromClient(lab, lab.pods.ingress.ip, 80, pieces, { delayMs: 2 })).toString();
    assert.match(split, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(JSON.parse(split.slice(split.indexOf('\r\n\r\n') + 4)).path, '/split/me');

    const garbage = await rawExchangeFromClient(lab, lab.pods.ingress.ip, 80, [
      Buffer.from([0, 1, 2, 0xff]),
      '\r\n\r\n',
    ]);
    assert.match(garbage.data.toString(), /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.ok(garbage.closed || garbage.reset, 'nginx closes after a 400');
    assert.equal(garbage.timedOut, false);

    // Half-close: the HTTP/1.0 server still answers after our FIN.
    const half = await rawExchangeFromClient(lab, lab.pods.app.ip, 8081, ['GET /half HTTP/1.0\r\n\r\n'], {
      half: true,
    });
    assert.match(half.data.toString(), /^HTTP\/1\.0 200 OK\r\n[^]*path=\/half\n/);
  });

  it('writes pods.json with both pods and their netns inodes', () => {
    const pods = JSON.parse(readFileSync(lab.podsFile, 'utf8')) as PodRecord[];
    assert.deepEqual(pods.map((p) => `${p.namespace}/${p.name}`).sort(), [
      'default/frontend',
      'ingress-nginx/ingress-nginx',
    ]);
    assert.deepEqual(
      pods.find((p) => p.name === 'frontend')?.containers.map((c) => c.name),
      ['frontend', 'raw10'],
    );
    for (const [pod, labPod] of [
      [pods.find((p) => p.name === 'ingress-nginx'), lab.pods.ingress],
      [pods.find((p) => p.name === 'frontend'), lab.pods.app],
    ] as const) {
      assert.ok(pod);
      assert.equal(pod.netns, `/run/netns/${labPod.netns}`);
      assert.equal(pod.netnsInode, statInode(labPod.netns));
      assert.equal(pod.ip, labPod.ip);
      assert.equal(pod.node, lab.nodeName);
      assert.match(pod.uid, /^[0-9a-f-]{36}$/);
      assert.ok(pod.hostVeth.length <= 15);
      execFileSync('ip', ['-n', lab.nodeNetns, 'link', 'show', pod.hostVeth, 'master', 'br0'], { stdio: 'ignore' });
      assert.deepEqual(pod.containers, labPod.containers.map((c) => ({ name: c.name, pid: c.pid, id: c.id })));
      for (const c of pod.containers) {
        assert.ok(running(c.pid), `${c.name} pid ${c.pid} runs`);
        // born in its kubelet-style cgroup (v2 and the v1 hierarchies alike), children included
        assert.match(readFileSync(`/proc/${c.pid}/cgroup`, 'utf8'), new RegExp(`^0::/${lab.prefix}\\.lab/kubepods/besteffort/pod${pod.uid}/${c.id}$`, 'm'));
        assert.ok(netnsPids(labPod.netns).includes(c.pid), `${c.name} runs in ${labPod.netns}`);
      }
    }
  });

  it('serves 20 concurrent keep-alive requests through runClient', async () => {
    const paths = Array.from({ length: 20 }, (_, i) => `/c/${i}`);
    const results = await runClient(lab, { paths, concurrency: 20, keepalive: true });
    assert.deepEqual(
      results.map((r) => [r.path, r.status]),
      paths.map((p) => [p, 200]),
    );
  });

  it('labDown removes namespaces, processes and state; a second labDown is a no-op', async () => {
    const pids = allPids(lab);
    assert.ok(pids.length >= 4, 'nginx master, worker, the app and raw10');
    const t0 = performance.now();
    await labDown(prefix);
    console.log(`# labDown ${prefix}: ${Math.round(performance.now() - t0)} ms`);
    assertGone(prefix, lab.stateDir, pids);
    await labDown(prefix);
  });
});

describe('lab: teardown without the process that built it', { skip }, () => {
  const prefixes: string[] = [];
  after(async () => {
    for (const p of prefixes) await labDown(p);
  });

  it('cleans up after nginx was killed with SIGKILL', async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    const prefix = newPrefix();
    prefixes.push(prefix);
    const lab = await labUp({ prefix });
    const pids = allPids(lab);
    const master = lab.pods.ingress.pids[0] ?? 0;
    process.kill(master, 'SIGKILL');
    await until('nginx master to die', () => !running(master));
    await labDown(prefix);
    assertGone(prefix, lab.stateDir, pids);
  });

  it('cleans up a half-built lab: a stray netns with a process and no state', async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    const prefix = newPrefix();
    prefixes.push(prefix);
    const ns = `${prefix}-app`;
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['netns', 'add', `${prefix}-node1`]);
    const stray = spawn('ip', ['netns', 'exec', ns, 'sleep', '600'], { stdio: 'ignore' });
    const pid = stray.pid ?? 0;
    await until('stray process to enter the netns', () => netnsPids(ns).includes(pid));
    await labDown(prefix);
    assertGone(prefix, `/run/strata-lab/${prefix}`, [pid]);
  });
});
