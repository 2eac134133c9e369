// The raw tracepoint variant of the socket probes (raw_tp/sys_enter + sys_exit +
// inet_sock_set_state): forced by configuration, and chosen by the agent itself when tracefs is
// absent (a private mount namespace with tracefs and debugfs unmounted). Either way a request
// through the lab gives the same span tree as with tracepoints: same names, kinds and parents.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { readOvsUserspace } from '../../agent/src/probes/ovs.ts';
import type { CheckReport } from '../../agent/src/check.ts';
import { runClient } from '../../lab/lab.ts';
import { type AgentProc, testAgentCommand, metricValue, spawnAgent, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { LabTracing, type Row, assertNested, chain } from '../helpers/lab-tracing.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const CLI = fileURLToPath(new URL('../../agent/src/cli.ts', import.meta.url));

/** the tree's shape: per span its service, kind and name, and its parent's; the path made generic */
function shape(t: Row[], path: string): string[] {
  const byId = new Map(t.map((r) => [r.span.spanId, r]));
  const label = (r: Row) => `${r.service}|${r.span.kind}|${r.span.name.split(path).join('<path>')}`;
  return t.map((r) => {
    const parent = r.span.parentSpanId ? byId.get(r.span.parentSpanId) : undefined;
    return `${label(r)} <- ${parent ? label(parent) : r.span.parentSpanId ? 'remote' : 'root'}`;
  }).sort();
}

/**
 * Starts the agent the way startAgent does, but inside `unshare -m` with tracefs and debugfs
 * unmounted in that mount namespace only; the shell refuses to start the agent (exit 97) if
 * /sys/kernel/tracing/events is still there.
 */
function startWithoutTracefs(args: string[], timeoutMs = 20_000): Promise<AgentProc> {
  const script = 'umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; ' +
    'if [ -e /sys/kernel/tracing/events ] || [ -e /sys/kernel/debug/tracing/events ]; then echo "tracefs still visible" >&2; exit 97; fi; exec "$0" "$@"';
  return spawnAgent(['unshare', '-m', '--propagation', 'private', 'sh', '-c', script, ...testAgentCommand(args)], timeoutMs);
}

describe('socket probes through raw tracepoints', { skip: why }, () => {
  // metrics.bpfRunStats: the tests read which programs ran from strata_bpf_runs_total
  const lt = new LabTracing('rt', ['--set', 'metrics.bpfRunStats=true']);
  let reference: string[] = [];

  before(async () => {
    await lt.up();
    // the reference: tracepoints (tracefs is there); stopped with SIGTERM so every span is exported
    await runClient(lt.lab, { paths: ['/rt-tp'] });
    const tree = await lt.tree('/rt-tp');
    chain(tree);
    assert.match(lt.agent?.stderr() ?? '', /sock_syscalls attached via tracepoint/);
    if (lt.agent) await stopAgent(lt.agent, 'SIGTERM');
    lt.agent = undefined;
    reference = shape(lt.traceRows(tree[0]?.span.traceId ?? ''), '/rt-tp');
    assert.ok(reference.length >= 9, `a full tree: ${reference.join('\n')}`);
  });
  after(() => lt.down());

  async function traceThrough(agent: AgentProc, path: string): Promise<string[]> {
    lt.agent = agent;
    await runClient(lt.lab, { paths: [path] });
    const tree = await lt.tree(path);
    chain(tree);
    assertNested(tree);
    const m = await lt.metrics();
    assert.ok(metricValue(m, 'strata_bpf_runs_total', 'program="raw_sys_enter"') > 0, 'raw_sys_enter ran');
    assert.ok(metricValue(m, 'strata_bpf_runs_total', 'program="raw_sys_exit"') > 0, 'raw_sys_exit ran');
    assert.equal(metricValue(m, 'strata_bpf_runs_total', 'program="enter_read"'), 0, 'no syscall tracepoint program loaded');
    assert.equal(metricValue(m, 'strata_probe_attached', 'probe="sock_syscalls"'), 1);
    assert.equal((await stopAgent(agent, 'SIGTERM')).code, 0);
    lt.agent = undefined;
    return shape(lt.traceRows(tree[0]?.span.traceId ?? ''), path);
  }

  test('probes.syscallAttach=raw_tp: the same span tree as with tracepoints', async () => {
    const agent = await startAgent([...lt.agentArgs(), '--set', 'probes.syscallAttach=raw_tp']);
    lt.agent = agent; // stopped by after() if an assertion below fails
    assert.match(agent.stderr(), /sock_syscalls attached via raw_tp: raw tracepoints sys_enter\/sys_exit, as probes.syscallAttach says/);
    assert.deepEqual(await traceThrough(agent, '/rt-forced'), reference);
  });

  test('no tracefs (private mount namespace): the agent picks raw_tp itself and traces the same tree', async () => {
    const agent = await startWithoutTracefs(lt.agentArgs());
    lt.agent = agent; // stopped by after() if an assertion below fails
    // ovs loads where Open vSwitch is installed or running: without tracefs, its uprobe variant
    const ovs = readOvsUserspace();
    const ovsVariant = ovs.binary || ovs.pids.length ? { ovs: 'uprobe' } : {};
    assert.deepEqual(agent.ready().probes, { sock_syscalls: 'raw_tp', veth_tc: 'default', net_dev: 'default', ...ovsVariant }, 'the ready line names the variant');
    assert.match(agent.stderr(), /sock_syscalls attached via raw_tp: tracefs is not mounted/);
    assert.deepEqual(await traceThrough(agent, '/rt-auto'), reference);
  });
});

describe('strata check without tracefs', { skip: why }, () => {
  test('the socket probes are reported runnable through raw tracepoints, and raw_tp becomes the required feature', () => {
    const script = 'umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; ' +
      'if [ -e /sys/kernel/tracing/events ]; then exit 97; fi; exec "$0" "$@"';
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, CLI, 'check', '--json'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const rep = JSON.parse(r.stdout) as CheckReport;
    assert.equal(rep.ok, true);
    assert.deepEqual(rep.missing, []);
    assert.equal(rep.tracefs.rawTracepointFallbackNeeded, true);
    const probe = (name: string) => {
      const p = rep.probes.find((x) => x.name === name);
      assert.ok(p, name);
      return p;
    };
    const sock = probe('sock_syscalls');
    assert.deepEqual([sock.kind, sock.required, sock.ok, sock.attached, sock.variant], ['family', true, true, true, 'raw_tp']);
    assert.match(sock.note ?? '', /tracefs is not mounted/);
    assert.deepEqual([probe('raw_tp').required, probe('raw_tp').ok], [true, true]);
    for (const name of ['tracepoint', 'tracepoint_sock']) {
      const p = probe(name);
      assert.deepEqual([p.required, p.ok], [false, false], name);
      assert.match(p.reason, /tracefs is not mounted/);
    }
    for (const f of ['veth_tc', 'net_dev']) assert.deepEqual([probe(f).kind, probe(f).required, probe(f).ok], ['family', false, true], f);
  });
});
