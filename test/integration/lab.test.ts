// Integration test of the lab (real network namespaces, bridge, veths, Debian nginx, Node app).
// Needs root and nginx: under CI=true their absence fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { curlFromClient, type Lab, labDown, labUp, type PodRecord, runClient } from '../../lab/lab.ts';

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces)';
  if (!existsSync('/usr/sbin/nginx')) return 'nginx is not installed (/usr/sbin/nginx)';
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

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function assertGone(prefix: string, stateDir: string, pids: number[]): void {
  assert.deepEqual(labNetns(prefix), [], 'no netns of the lab remains');
  assert.deepEqual(pids.filter(running), [], 'no lab process remains');
  assert.equal(existsSync(stateDir), false, 'state dir removed');
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

  it('writes pods.json with both pods and their netns inodes', () => {
    const pods = JSON.parse(readFileSync(lab.podsFile, 'utf8')) as PodRecord[];
    assert.deepEqual(pods.map((p) => `${p.namespace}/${p.name}`).sort(), [
      'default/frontend',
      'ingress-nginx/ingress-nginx',
    ]);
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
      for (const c of pod.containers) {
        assert.ok(running(c.pid), `${c.name} pid ${c.pid} runs`);
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
    assert.ok(pids.length >= 3, 'nginx master, worker and the app');
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
