// The agent's /metrics as a real Prometheus server sees it: the lab and the agent (real BPF) run,
// a Prometheus started by this test scrapes the agent every second, traffic goes through the lab,
// and the answers come from Prometheus' HTTP query API. promtool checks the exposition format.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runClient } from '../../lab/lab.ts';
import { DROP_STAGES } from '../../agent/src/metrics/metrics.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { holdsBpfStatsFd } from '../helpers/agent-proc.ts';
import { LabTracing } from '../helpers/lab-tracing.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { PrometheusServer, missingPrometheus, promtoolCheck } from '../helpers/prometheus.ts';

const why = missingPrerequisites({ nginx: true }) ?? missingPrometheus();
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);

describe('Prometheus scrapes the agent', { skip: why }, () => {
  // metrics.bpfRunStats: the per-program run counts and run time below (off by default)
  const lt = new LabTracing('pm', ['--set', 'metrics.bpfRunStats=true']);
  const prom = new PrometheusServer();
  let burst = 0;

  /** distinct paths per call, so each request is its own trace */
  const traffic = async (n: number) => {
    const b = ++burst;
    const res = await runClient(lt.lab, { paths: Array.from({ length: n }, (_, i) => `/prom/${b}/${i}`), concurrency: 5, keepalive: true });
    assert.ok(res.every((r) => r.status === 200), `traffic: ${JSON.stringify(res.filter((r) => r.status !== 200).slice(0, 3))}`);
  };

  /** one value per series of an instant query, keyed by the label `by` */
  const values = async (expr: string, by: string) =>
    new Map((await prom.query(expr)).map((r) => [r.metric[by] ?? '', Number(r.value[1])]));

  before(async () => {
    await lt.up();
    await prom.start([`127.0.0.1:${lt.agent?.metricsPort}`], 1);
  });

  after(async () => {
    try {
      await prom.stop();
    } finally {
      await lt.down();
    }
  });

  test('Prometheus finds probes attached, events growing, every drop stage, BPF run costs', async (t) => {
    await waitFor(async () => (await prom.targets()).some((t) => t.health === 'up'), `the agent target up (${JSON.stringify(await prom.targets())})`, 20_000, 200);
    await traffic(20);

    const attached = await waitFor(async () => {
      const v = await values('strata_probe_attached', 'probe');
      return v.get('sock_syscalls') === 1 ? v : undefined;
    }, 'strata_probe_attached{probe="sock_syscalls"} == 1', 20_000, 250);
    for (const veth of [lt.lab.pods.app.hostVeth, lt.lab.pods.ingress.hostVeth, lt.lab.clientVeth]) {
      assert.equal(attached.get(`tc:${veth}`), 1, `tc:${veth} attached`);
    }

    // kernel events: a scrape after more traffic holds more than an earlier one
    const first = await waitFor(async () => Number((await prom.query('strata_kernel_events_total'))[0]?.value[1] ?? 0), 'strata_kernel_events_total > 0', 20_000, 250);
    await traffic(20);
    await waitFor(async () => Number((await prom.query('strata_kernel_events_total'))[0]?.value[1] ?? 0) > first, `strata_kernel_events_total above ${first}`, 20_000, 250);
    // and Prometheus itself saw it rise between two of its scrapes, without a reset
    const series = await prom.samples('strata_kernel_events_total[5m]');
    const samples = (series[0]?.values ?? []).map((v) => Number(v[1]));
    assert.ok(samples.length >= 2, `several scrapes: ${samples.join(',')}`);
    assert.ok(samples.every((v, i) => i === 0 || v >= (samples[i - 1] as number)), `monotonic: ${samples.join(',')}`);
    assert.ok((samples.at(-1) as number) > (samples[0] as number), `increased: ${samples.join(',')}`);
    assert.equal(Number((await prom.query('resets(strata_kernel_events_total[5m])'))[0]?.value[1]), 0);

    const stages = await values('strata_drops_total', 'stage');
    assert.deepEqual([...stages.keys()].sort(), [...DROP_STAGES].sort(), 'one strata_drops_total series per stage');

    // kernel cost per BPF program (metrics.bpfRunStats: the agent holds the kernel's stats on):
    // run time and runs > 0 for the syscall and TC programs
    assert.equal(holdsBpfStatsFd(lt.agent?.child.pid as number), true, 'a BPF_ENABLE_STATS fd');
    const runs = await values('strata_bpf_runs_total > 0', 'program');
    const runTime = await values('strata_bpf_run_time_seconds_total > 0', 'program');
    for (const m of [runs, runTime]) {
      assert.ok([...m.keys()].some((p) => p.startsWith('enter_')), `syscall entry programs ran: ${[...m.keys()]}`);
      assert.ok([...m.keys()].some((p) => p.startsWith('exit_')), `syscall exit programs ran: ${[...m.keys()]}`);
      assert.ok(m.has('tc_ingress') && m.has('tc_egress'), `TC programs ran: ${[...m.keys()]}`);
    }
    // the HELP's recipe for ns per run gives a plausible number (a BPF program runs in ns to µs)
    await traffic(10);
    const nsPerRun = await waitFor(async () => {
      const v = await values('rate(strata_bpf_run_time_seconds_total[30s]) / rate(strata_bpf_runs_total[30s]) * 1e9 > 0', 'program');
      return v.has('tc_ingress') ? v : undefined;
    }, 'ns per run of tc_ingress', 20_000, 500);
    for (const [p, ns] of nsPerRun) assert.ok(Number.isFinite(ns) && ns < 1e6, `${p}: ${ns} ns per run`);
    t.diagnostic(`ns per run: ${[...nsPerRun].sort().map(([p, ns]) => `${p}=${Math.round(ns)}`).join(' ')}`);

    // spans left through the OTLP exporter, and the process metrics are there
    await waitFor(async () => ((await values('strata_export_spans_total{result="exported"}', 'exporter')).get('OTLPTraceExporter') ?? 0) > 0,
      'spans exported through OTLP', 20_000, 250);
    assert.ok((await values('strata_export_requests_total{result="success"} > 0', 'exporter')).has('OTLPTraceExporter'), 'OTLP exports succeeded');
    assert.ok(((await values('strata_export_duration_seconds_count', 'exporter')).get('OTLPTraceExporter') ?? 0) > 0, 'OTLP export durations recorded');
    const p90 = await values('histogram_quantile(0.9, sum by (exporter, le) (strata_export_duration_seconds_bucket))', 'exporter');
    assert.ok((p90.get('OTLPTraceExporter') ?? NaN) > 0, `p90 export duration from the histogram: ${[...p90]}`);
    for (const n of ['strata_process_cpu_seconds_total', 'strata_process_resident_memory_bytes', 'strata_process_nodejs_eventloop_lag_seconds']) {
      assert.equal((await prom.query(n)).length, 1, `${n} scraped`);
    }
    assert.equal((await prom.query('up{job="strata"}'))[0]?.value[1], '1');
  });

  test('promtool check metrics passes on the agent output', async () => {
    const text = await lt.metrics();
    assert.match(text, /^strata_bpf_runs_total\{program="tc_ingress"\} [1-9]/m);
    const r = promtoolCheck(text);
    assert.equal(r.code, 0, `promtool check metrics: ${r.output}`);
  });
});
