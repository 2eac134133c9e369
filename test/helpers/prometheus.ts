// Prometheus for tests: the exposition-format parser, `promtool check metrics`, and a real
// Prometheus server (Debian's `prometheus` package, installed by scripts/setup.sh) scraping
// targets on 127.0.0.1 with its own temporary data directory.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './otlp-fixture.ts';
import { freePort } from './ports.ts';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';
export const PROMTOOL_BIN = '/usr/bin/promtool';

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help?: string;
  type?: string;
  samples: Sample[];
}

/** The Prometheus text format, by family (histogram _bucket/_sum/_count samples go to their family). */
export function parseExposition(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const family = (name: string) => {
    let f = out.get(name);
    if (!f) {
      f = { name, samples: [] };
      out.set(name, f);
    }
    return f;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2] as string);
      if (meta[1] === 'HELP') f.help = meta[3];
      else f.type = meta[3];
      continue;
    }
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, '$1');
    const name = m[1] as string;
    const base = out.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    family(out.has(base) ? base : name).samples.push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** `promtool check metrics` over an exposition text: exit code and what it said */
export function promtoolCheck(text: string): { code: number | null; output: string } {
  const r = spawnSync(PROMTOOL_BIN, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

export function missingPrometheus(): string | undefined {
  for (const bin of [PROMETHEUS_BIN, PROMTOOL_BIN]) {
    if (!existsSync(bin)) return `needs ${bin} (apt prometheus; scripts/setup.sh installs it)`;
  }
  return undefined;
}


export interface QueryResult {
  metric: Record<string, string>;
  value: [number, string];
}

/** A real Prometheus server on 127.0.0.1 scraping `targets` (host:port) every `scrapeIntervalS`. */
export class PrometheusServer {
  port = 0;
  dir = '';
  private child?: ChildProcess;
  private exited?: Promise<void>;
  private log = '';

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  logs(): string {
    return this.log;
  }

  /**
   * `metricsPath`: the targets' path (default /metrics); `features`: --enable-feature values, e.g.
   * exemplar-storage (Prometheus keeps exemplars of OpenMetrics scrapes only with it).
   */
  async start(targets: string[], scrapeIntervalS = 1, o: { metricsPath?: string; features?: string[] } = {}): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), 'strata-prom-'));
    const config = join(this.dir, 'prometheus.yml');
    // one job; YAML written as JSON (a subset of YAML)
    writeFileSync(config, JSON.stringify({
      global: { scrape_interval: `${scrapeIntervalS}s`, scrape_timeout: `${scrapeIntervalS}s`, evaluation_interval: `${scrapeIntervalS}s` },
      scrape_configs: [{ job_name: 'strata', metrics_path: o.metricsPath ?? '/metrics', static_configs: [{ targets }] }],
    }));
    // the port is chosen then bound by Prometheus: another process may take it in between, so retry
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      this.log = '';
      const child = spawn(PROMETHEUS_BIN, [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
        ...(o.features ?? []).map((f) => `--enable-feature=${f}`),
      ], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.child = child;
      child.stderr?.on('data', (d: Buffer) => {
        if (this.log.length < 1 << 20) this.log += d.toString();
      });
      this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
      let state: 'ready' | 'exited' | undefined;
      try {
        state = await waitFor(async () => {
          if (child.exitCode !== null || child.signalCode !== null) return 'exited';
          return (await fetch(`${this.url}/-/ready`)).status === 200 ? 'ready' : undefined;
        }, 'prometheus ready', 30_000, 100);
      } catch (err) {
        await this.kill();
        throw new Error(`${(err as Error).message}\n${this.log}`, { cause: err });
      }
      if (state === 'ready') return;
      await this.kill();
      if (attempt >= 3 || !/address already in use/.test(this.log)) throw new Error(`prometheus exited before ready: ${this.log}`);
    }
  }

  private async instant<T>(expr: string, type: string): Promise<T[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: T[] } };
    if (body.status !== 'success' || !body.data) throw new Error(`query ${expr}: ${body.error ?? res.status}`);
    if (body.data.resultType !== type) throw new Error(`query ${expr}: a ${body.data.resultType}, not a ${type}`);
    return body.data.result;
  }

  /** an instant query giving an instant vector; throws on an API error */
  query(expr: string): Promise<QueryResult[]> {
    return this.instant<QueryResult>(expr, 'vector');
  }

  /** the scraped samples of a range vector selector, e.g. `metric[5m]` */
  samples(expr: string): Promise<{ metric: Record<string, string>; values: [number, string][] }[]> {
    return this.instant(expr, 'matrix');
  }

  /** exemplars of the series `expr` selects between two unix times (s): /api/v1/query_exemplars */
  async exemplars(expr: string, startS: number, endS: number): Promise<{ seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string>; value: string; timestamp: number }[] }[]> {
    const res = await fetch(`${this.url}/api/v1/query_exemplars?query=${encodeURIComponent(expr)}&start=${startS}&end=${endS}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string>; value: string; timestamp: number }[] }[] };
    if (body.status !== 'success' || !body.data) throw new Error(`exemplars ${expr}: ${body.error ?? res.status}`);
    return body.data;
  }

  /** the scrape targets' health as Prometheus sees it */
  async targets(): Promise<{ health: string; lastError: string; scrapeUrl: string }[]> {
    const body = (await (await fetch(`${this.url}/api/v1/targets`)).json()) as { data: { activeTargets: { health: string; lastError: string; scrapeUrl: string }[] } };
    return body.data.activeTargets;
  }

  private async kill(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (!c) return;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
  }

  /** kills the server and removes its directory; safe to call more than once */
  async stop(): Promise<void> {
    await this.kill();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = '';
  }
}
