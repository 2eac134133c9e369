// The lab, the agent on it (a child process, real BPF) and an OTLP receiver: what the end-to-end
// tests share. Spans are read back decoded with the OTLP protobuf schema.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Lab, labDown, labUp } from '../../lab/lab.ts';
import { type AgentProc, startAgent, stopAgent } from './agent-proc.ts';
import { type DecodedSpan, flattenSpans } from './otlp-decode.ts';
import { waitFor } from './otlp-fixture.ts';
import { OtlpReceiver } from './otlp-receiver.ts';

export const KIND_INTERNAL = 1;
export const KIND_SERVER = 2;
export const KIND_CLIENT = 3;

export interface Row {
  span: DecodedSpan;
  service: string;
}

export class LabTracing {
  readonly prefix: string;
  readonly receiver = new OtlpReceiver();
  lab!: Lab;
  agent?: AgentProc;
  tracesDir = '';

  /** extraArgs: appended to every agent this lab starts (e.g. --set key=value) */
  private readonly extraArgs: string[];

  constructor(prefixBase: string, extraArgs: string[] = []) {
    this.extraArgs = extraArgs;
    this.prefix = `${prefixBase}${Math.random().toString(36).slice(2, 6)}`;
  }

  agentArgs(): string[] {
    const lab = this.lab;
    return ['--pods-file', lab.podsFile, '--node-name', lab.nodeName, '--node-netns', `/run/netns/${lab.nodeNetns}`,
      '--iface', lab.clientVeth, '--otlp-endpoint', this.receiver.url, '--traces-dir', this.tracesDir,
      '--metrics-port', '0', '--metrics-host', '127.0.0.1', ...this.extraArgs];
  }

  async up(): Promise<void> {
    this.tracesDir = mkdtempSync(join(tmpdir(), 'strata-traces-'));
    await this.receiver.start();
    this.lab = await labUp({ prefix: this.prefix });
    this.agent = await startAgent(this.agentArgs());
  }

  async down(): Promise<void> {
    if (this.agent) await stopAgent(this.agent, 'SIGKILL');
    this.agent = undefined;
    await labDown(this.prefix);
    await this.receiver.stop();
    if (this.tracesDir) rmSync(this.tracesDir, { recursive: true, force: true });
  }

  rows(): Row[] {
    return this.receiver.requests.flatMap((r) => flattenSpans(r.decoded)).map((x) => ({ span: x.span, service: String(x.resource['service.name']) }));
  }

  traceRows(traceId: string): Row[] {
    return this.rows().filter((r) => r.span.traceId === traceId);
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.agent?.metricsPort}/metrics`)).text();
  }

  /**
   * Waits for the trace whose root is the ingress SERVER span for `path` (and `traceId` if
   * given) to hold the proxy's upstream CLIENT span, the app SERVER span (of `appService`) and at
   * least `hops` hop spans (one trace's spans may reach the receiver in more than one export).
   */
  async tree(path: string, o: { traceId?: string; hops?: number; appService?: string } = {}): Promise<Row[]> {
    return waitFor(() => {
      const root = this.rows().find((r) => r.span.kind === KIND_SERVER && r.service === 'ingress-nginx' &&
        r.span.attributes['url.path'] === path && (!o.traceId || r.span.traceId === o.traceId));
      if (!root) return undefined;
      const t = this.traceRows(root.span.traceId);
      const app = t.some((r) => r.service === (o.appService ?? 'frontend') && r.span.kind === KIND_SERVER);
      const upstream = t.some((r) => r.service === 'ingress-nginx' && r.span.kind === KIND_CLIENT);
      const hops = t.filter((r) => r.span.kind === KIND_INTERNAL).length;
      return app && upstream && hops >= (o.hops ?? 6) ? t : undefined;
    }, `trace of ${path}`, 20_000);
  }
}

/** nginx SERVER -> nginx CLIENT -> app SERVER, with the parent links checked */
export function chain(t: Row[], appService = 'frontend'): { nginx: Row; upstream: Row; app: Row } {
  const nginx = t.find((r) => r.span.kind === KIND_SERVER && r.service === 'ingress-nginx');
  const upstream = t.find((r) => r.span.kind === KIND_CLIENT && r.service === 'ingress-nginx');
  const app = t.find((r) => r.span.kind === KIND_SERVER && r.service === appService);
  if (!nginx || !upstream || !app) throw new Error(`incomplete chain: ${t.map((r) => `${r.service}:${r.span.name}`).join(', ')}`);
  if (upstream.span.parentSpanId !== nginx.span.spanId) throw new Error('upstream CLIENT is not under nginx SERVER');
  if (app.span.parentSpanId !== upstream.span.spanId) throw new Error('app SERVER is not under the upstream CLIENT');
  return { nginx, upstream, app };
}

/** every child inside its parent in time */
export function assertNested(t: Row[], remoteParent?: string): void {
  const byId = new Map(t.map((r) => [r.span.spanId, r]));
  for (const r of t) {
    if (!r.span.parentSpanId || r.span.parentSpanId === remoteParent) continue;
    const p = byId.get(r.span.parentSpanId);
    if (!p) throw new Error(`parent of ${r.span.name} missing from the trace`);
    if (r.span.startTimeUnixNano < p.span.startTimeUnixNano || r.span.endTimeUnixNano > p.span.endTimeUnixNano) {
      throw new Error(`${r.span.name} is not inside ${p.span.name}`);
    }
  }
}
