// `strata demo --single-node`: the lab (one node: client, NGINX ingress pod, app pod, bridge), the agent on it,
// a handful of requests, traces written to ./traces (OTLP JSON + Jaeger JSON for Jaeger UI's
// "Upload JSON"), a summary of each trace printed, and the lab torn down.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { curlFromClient, labDown, labUp } from '../../../lab/lab.ts';
import { Agent, monoNow } from '../agent.ts';
import { defaultConfig, loadConfig, toAgentOptions } from '../config/index.ts';
import { JAEGER_FILE, OTLP_FILE } from '../export/file-exporter.ts';
import type { JaegerSpan, JaegerTraces } from '../export/jaeger-json.ts';
import { readPodsFile } from '../k8s/pods-file.ts';

export async function runSingleNodeDemo({ dir, prefix: PREFIX }: { dir: string; prefix: string }): Promise<number> {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out('strata demo: bringing up the lab (node netns + bridge, client, ingress-nginx pod, frontend pod)');
  const lab = await labUp({ prefix: PREFIX });
  try {
    const pods = readPodsFile(lab.podsFile);
    // the agent's own configuration (defaults, STRATA_*/OTEL_* variables) for this lab; OTLP only
    // when the environment names an endpoint: the demo's output is the files
    const settings = (kv: Record<string, string>) => Object.entries(kv).map(([key, value]) => ({ key, value, source: 'demo' }));
    const lab1 = { 'node.name': lab.nodeName, 'node.netns': `/run/netns/${lab.nodeNetns}`, 'node.interfaces': lab.clientVeth, 'export.files.dir': dir };
    let config = loadConfig({ flags: settings(lab1) });
    if (config.export.otlp.endpoint === defaultConfig().export.otlp.endpoint) config = loadConfig({ flags: settings({ ...lab1, 'export.otlp.endpoint': 'none' }) });
    const agent = new Agent(toAgentOptions(config, pods));
    await agent.start();
    out(`agent: probes attached (syscalls in 2 pod netns, TC on ${lab.pods.ingress.hostVeth}, ${lab.pods.app.hostVeth}, ${lab.clientVeth})`);
    const requests: [string, string[]][] = [
      ['/dispatch', ['-H', 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']],
      ['/catalog', []],
      ['/orders', ['-X', 'POST', '--data-binary', 'item=42&qty=1']],
      ['/status/503', []],
      ['/slow/40', []],
    ];
    for (const [path, args] of requests) {
      const r = await curlFromClient(lab, `${lab.nginxUrl}${path}`, args);
      out(`client: ${args.includes('POST') ? 'POST' : 'GET'} ${path} -> ${r.status}`);
    }
    const want = requests.length * 3; // nginx SERVER + nginx CLIENT + app SERVER per request
    const deadline = Date.now() + 10_000;
    while (agent.correlator.stats.spansEmitted < want && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      agent.correlator.tick(monoNow());
    }
    await agent.stop();
    const traces = JSON.parse(readFileSync(resolve(dir, JAEGER_FILE), 'utf8')) as JaegerTraces;
    out(`\n${traces.data.length} traces written to ${dir}/${JAEGER_FILE} (open in Jaeger UI: Search > Upload JSON) and ${OTLP_FILE}\n`);
    for (const t of traces.data) printTrace(t, out);
    const k = agent.kernelStats();
    out(`agent: ${agent.decoder.stats.records} events decoded, ${agent.correlator.stats.spansEmitted + agent.correlator.stats.hopSpansEmitted} spans, kernel drops ${k?.rbDrops ?? 0}`);
  } finally {
    await labDown(PREFIX);
    out('lab torn down');
  }
  return 0;
}

function printTrace(t: JaegerTraces['data'][number], out: (s: string) => void): void {
  const spans = t.spans;
  const byParent = new Map<string, JaegerSpan[]>();
  const ids = new Set(spans.map((s) => s.spanID));
  for (const s of spans) {
    const p = s.references.find((r) => r.refType === 'CHILD_OF' && ids.has(r.spanID))?.spanID ?? '';
    byParent.set(p, [...(byParent.get(p) ?? []), s]);
  }
  const t0 = Math.min(...spans.map((s) => s.startTime));
  const tag = (s: JaegerSpan, k: string) => s.tags.find((x) => x.key === k)?.value;
  out(`trace ${t.traceID}`);
  const walk = (parent: string, depth: number) => {
    for (const s of (byParent.get(parent) ?? []).sort((a, b) => a.startTime - b.startTime)) {
      const svc = t.processes[s.processID]?.serviceName ?? '?';
      const layer = String(tag(s, 'strata.layer') ?? '');
      const at = `+${(s.startTime - t0).toFixed(0)}µs`.padStart(9);
      const status = tag(s, 'http.response.status_code');
      out(`  ${at} ${String(s.duration).padStart(6)}µs  ${'  '.repeat(depth)}${svc}: ${s.operationName} [${layer}]${status ? ` ${status}` : ''}`);
      walk(s.spanID, depth + 1);
    }
  };
  walk('', 0);
  out('');
}
