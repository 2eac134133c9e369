// Agent lifecycle on the real kernel: an optional probe that cannot attach is a warning and a
// metric at 0, a required one that cannot load is a clear error and exit code 4; SIGTERM exits
// 0 in bounded time with nothing left attached.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { type AddressInfo, type Socket, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { runClient } from '../../lab/lab.ts';
import { metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites, progIdsOf, stillLoaded, tcFilters } from '../helpers/kernel.ts';
import { LabTracing, chain } from '../helpers/lab-tracing.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const CLI = fileURLToPath(new URL('../../agent/src/cli.ts', import.meta.url));

describe('agent lifecycle', { skip: why }, () => {
  const lt = new LabTracing('lc');

  before(async () => {
    await lt.up();
    // the shared harness started an agent; these tests start their own
    if (lt.agent) await stopAgent(lt.agent, 'SIGTERM');
    lt.agent = undefined;
  });
  after(() => lt.down());

  test('an optional probe that cannot attach: one warning, metric 0, the agent keeps tracing', async () => {
    const agent = await startAgent([...lt.agentArgs(), '--iface', 'nosuchif0']);
    lt.agent = agent;
    const warnings = agent.stderr().split('\n').filter((l) => l.includes('nosuchif0'));
    assert.equal(warnings.length, 1, agent.stderr());
    assert.match(warnings[0] as string, /warning/i);
    const m = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    assert.equal(metricValue(m, 'strata_probe_attached', 'probe="tc:nosuchif0"'), 0);
    assert.equal(metricValue(m, 'strata_probe_attached', `probe="tc:${lt.lab.pods.app.hostVeth}"`), 1);
    assert.equal(metricValue(m, 'strata_probe_attached', 'probe="sock_syscalls"'), 1);
    await runClient(lt.lab, { paths: ['/optional-missing'] });
    chain(await lt.tree('/optional-missing'));
  });

  test('after SIGKILL, the next start removes filters strata left on interfaces it no longer watches', async () => {
    // the running agent (from the previous test) watches the client veth too: kill it hard
    assert.ok(lt.agent);
    await stopAgent(lt.agent, 'SIGKILL');
    lt.agent = undefined;
    assert.match(tcFilters(lt.lab.nodeNetns, lt.lab.clientVeth), /tc_ingress/, 'left behind by SIGKILL');
    const args = lt.agentArgs();
    const i = args.indexOf('--iface');
    args.splice(i, 2); // this time without the client veth
    lt.agent = await startAgent(args);
    assert.equal(tcFilters(lt.lab.nodeNetns, lt.lab.clientVeth), '', 'stale filter removed');
    assert.match(lt.agent.stderr(), new RegExp(`removed a stale strata TC filter from ${lt.lab.clientVeth}`));
    assert.match(tcFilters(lt.lab.nodeNetns, lt.lab.pods.app.hostVeth), /tc_ingress/, 'its own filters attached');
  });

  test('losses are counted by stage and reported in one aggregated warning, not a line per event', async () => {
    assert.ok(lt.agent);
    await stopAgent(lt.agent, 'SIGTERM');
    // a one-page ring buffer: a burst overflows it between two polls
    lt.agent = await startAgent([...lt.agentArgs(), '--set', 'probes.ringBufferBytes=4096', '--set', 'probes.wakeupBytes=4096']);
    const agent = lt.agent;
    await runClient(lt.lab, { paths: Array.from({ length: 300 }, (_, i) => `/burst/${i}`), concurrency: 20, keepalive: true });
    await waitFor(async () => {
      const m = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
      return metricValue(m, 'strata_drops_total', 'stage="kernel_ringbuf"') > 0;
    }, 'ring buffer drops counted');
    await waitFor(() => /lost since the last report/.test(agent.stderr()), 'the drop warning');
    const lines = agent.stderr().split('\n').filter((l) => l.includes('lost since the last report'));
    assert.equal(lines.length, 1, 'one line for the whole burst');
    assert.match(lines[0] as string, /kernel ring buffer full: \d+/);
  });

  test('SIGTERM: exit 0 within the shutdown bound, nothing left attached', async () => {
    assert.ok(lt.agent);
    const progs = progIdsOf(lt.agent.child.pid as number);
    assert.ok(progs.length > 0, 'the agent holds its BPF programs');
    const t0 = Date.now();
    const { code } = await stopAgent(lt.agent, 'SIGTERM');
    lt.agent = undefined;
    const ms = Date.now() - t0;
    assert.equal(code, 0);
    assert.ok(ms < 10_000, `stopped in ${ms} ms`);
    for (const v of [lt.lab.pods.app.hostVeth, lt.lab.pods.ingress.hostVeth, lt.lab.clientVeth]) assert.equal(tcFilters(lt.lab.nodeNetns, v), '');
    // this agent's programs (other agents and tests on the machine may hold programs of the same names)
    await waitFor(() => stillLoaded(progs).length === 0, 'BPF programs released', 10_000);
  });

  test('a backend that never answers past shutdown.timeoutS: exit 1 with the code, and the probes detached all the same', async () => {
    // accepts, reads, never answers: the export's flush waits out its own timeout (10 s), past the 2 s deadline
    const sockets = new Set<Socket>();
    const hole = createServer((sock) => {
      sockets.add(sock);
      sock.on('data', () => {});
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', () => r()));
    try {
      const args = lt.agentArgs();
      args[args.indexOf('--otlp-endpoint') + 1] = `http://127.0.0.1:${(hole.address() as AddressInfo).port}/v1/traces`;
      const agent = await startAgent([...args, '--set', 'shutdown.timeoutS=2', '--set', 'export.queue.delayMs=50']);
      const progs = progIdsOf(agent.child.pid as number);
      await runClient(lt.lab, { paths: ['/to-nowhere'] });
      // spans reached the exporter: an export is in flight to the hole
      await waitFor(() => sockets.size > 0, 'an export to the backend that never answers', 30_000);
      const { code } = await stopAgent(agent, 'SIGTERM');
      assert.equal(code, 1, agent.stderr());
      assert.match(agent.stderr(), /STRATA_ERR_SHUTDOWN_TIMEOUT/);
      for (const v of [lt.lab.pods.app.hostVeth, lt.lab.pods.ingress.hostVeth, lt.lab.clientVeth]) assert.equal(tcFilters(lt.lab.nodeNetns, v), '', `no filter left on ${v}`);
      await waitFor(() => stillLoaded(progs).length === 0, 'BPF programs released', 30_000);
    } finally {
      for (const x of sockets) x.destroy();
      await new Promise<void>((r) => hole.close(() => r()));
    }
  });

  test('a required probe that cannot load: exit 4 with code, errno, stage and a hint', async () => {
    // an unprivileged user cannot load BPF programs: the socket probes are required
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, CLI, 'agent',
      '--otlp-endpoint', 'none', '--traces-dir', '/tmp', '--metrics-port', '0', '--metrics-host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(code, 4, err);
    assert.match(err, /STRATA_ERR_PROBE_LOAD/);
    assert.match(err, /EPERM/);
    assert.match(err, /CAP_BPF/);
  });
});
