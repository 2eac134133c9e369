// The kernel-side filter by cgroup: processes of a traced cgroup are traced whatever their netns
// (hostNetwork pods share the node's), others in the same netns are not.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent } from '../../agent/src/agent.ts';
import { defaultConfig, toAgentOptions } from '../../agent/src/config/index.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { makeCgroup, removeCgroup } from '../helpers/cgroup.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

// a process that talks HTTP to itself over loopback, forever (until killed)
const CHATTER = `
  const net = require('node:net');
  const srv = net.createServer((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n'))).listen(0, '127.0.0.1', () => {
    const c = net.connect(srv.address().port, '127.0.0.1', () => setInterval(() => c.write('GET /cg HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'), 5));
    c.on('data', () => {});
  });`;

test('processes of a traced cgroup are traced, their netns neighbours are not', async (t) => {
  const dir = makeCgroup(t, 'strata-test');
  if (!dir) return;
  const children: ChildProcess[] = [];
  const probes = new ProbeSet({ filterCgroups: true });
  try {
    probes.open('sock_syscalls');
    probes.cgroupAdd(statSync(dir).ino);
    const byPid = new Map<number, number>();
    const decoder = new Decoder({ onSock: (e) => byPid.set(e.pid, (byPid.get(e.pid) ?? 0) + 1), onPkt() {}, onState() {}, onNetDev() {} });
    probes.start((b) => decoder.decode(b), { pollMs: 10 });
    // one chatter moved into the cgroup before it starts talking, one left where it is
    const inside = spawn('sh', ['-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "${process.execPath}" -e "$0"`, CHATTER], { stdio: 'ignore' });
    const outside = spawn(process.execPath, ['-e', CHATTER], { stdio: 'ignore' });
    children.push(inside, outside);
    await waitFor(() => (byPid.get(inside.pid ?? -1) ?? 0) >= 20, 'events from the process in the traced cgroup', 15_000);
    // the outsider made as many syscalls meanwhile, in the same netns: none got through
    assert.equal(byPid.get(outside.pid ?? -1) ?? 0, 0);
    assert.ok(probes.stats().filtered > 0);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    probes.close();
    await removeCgroup(dir);
  }
});

test('the agent traces a hostNetwork pod by the cgroups the pods file names, and names its spans after it', async (t) => {
  const dir = makeCgroup(t, 'strata-test-agent');
  if (!dir) return;
  const traces = mkdtempSync(join(tmpdir(), 'strata-cg-'));
  const children: ChildProcess[] = [];
  const agent = new Agent({
    ...toAgentOptions(defaultConfig({}, 'node-1'), []),
    export: { files: { dir: traces } },
    nodeName: 'node-1',
    pods: [{ name: 'chatter-7d4b9c6f5-x2x9z', namespace: 'default', uid: 'u-1', node: 'node-1', ip: '', netnsInode: 0, hostVeth: '', hostNetwork: true, cgroupIds: [statSync(dir).ino], labels: { app: 'chatter' } }],
    nodeNetns: '',
    interfaces: [],
    log: () => {},
  });
  const services = new Set<string>();
  const emit = agent.sink.emit.bind(agent.sink);
  agent.sink.emit = (r) => {
    services.add(`${r.resource.serviceName}/${r.resource.attributes['k8s.pod.name'] ?? ''}`);
    emit(r);
  };
  try {
    await agent.start();
    const inside = spawn('sh', ['-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "${process.execPath}" -e "$0"`, CHATTER], { stdio: 'ignore' });
    children.push(inside);
    await waitFor(() => agent.correlator.stats.spansEmitted >= 4, 'spans of the hostNetwork pod', 15_000);
    // exchange spans carry the pod; the socket-to-socket hops on loopback are under the node layer's service (net:node <node>)
    assert.deepEqual([...services].filter((x) => !x.startsWith('net:')), ['chatter/chatter-7d4b9c6f5-x2x9z']);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await agent.stop();
    rmSync(traces, { recursive: true, force: true });
    await removeCgroup(dir);
  }
});
