// Load client for the lab, run inside the client netns:
//   node lab/client.ts --url http://10.244.1.10 --paths /a,/b --concurrency 50 [--keepalive]
//     [--header 'traceparent: 00-...'] [--per-path-header-file f.json]
// Sends one GET per path over at most `concurrency` connections and prints one JSON line:
// [{path, status, ms, error?}] in the order of --paths. status is 0 when the request failed.
// --per-path-header-file: either an array of header objects aligned with --paths, or an
// object mapping a path to its headers.
import { Agent, request } from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface ClientResult {
  path: string;
  status: number;
  ms: number;
  error?: string;
}

type Headers = Record<string, string>;

function parseHeader(h: string): [string, string] {
  const i = h.indexOf(':');
  if (i <= 0) throw new Error(`bad --header ${JSON.stringify(h)}: expected 'name: value'`);
  return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
}

function perPathHeaders(file: string | undefined, paths: string[]): (i: number) => Headers {
  if (!file) return () => ({});
  const spec = JSON.parse(readFileSync(file, 'utf8')) as Headers[] | Record<string, Headers>;
  if (Array.isArray(spec)) return (i) => spec[i] ?? {};
  return (i) => spec[paths[i] ?? ''] ?? {};
}

function get(agent: Agent, url: URL, path: string, headers: Headers): Promise<ClientResult> {
  const start = performance.now();
  const ms = () => Math.round((performance.now() - start) * 1000) / 1000;
  return new Promise((resolve) => {
    const req = request(url.origin + path, { agent, headers, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ path, status: res.statusCode ?? 0, ms: ms() }));
      res.on('error', (e) => resolve({ path, status: 0, ms: ms(), error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ path, status: 0, ms: ms(), error: e.message }));
    req.end();
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      paths: { type: 'string', default: '/' },
      concurrency: { type: 'string', default: '1' },
      keepalive: { type: 'boolean', default: false },
      header: { type: 'string', multiple: true, default: [] },
      'per-path-header-file': { type: 'string' },
    },
  });
  if (!values.url) throw new Error('--url is required');
  const url = new URL(values.url);
  const paths = values.paths.split(',').filter(Boolean);
  const concurrency = Math.max(1, Number(values.concurrency));
  const common: Headers = Object.fromEntries(values.header.map(parseHeader));
  const extra = perPathHeaders(values['per-path-header-file'], paths);
  const agent = new Agent({ keepAlive: values.keepalive, maxSockets: concurrency });

  const results: ClientResult[] = new Array(paths.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < paths.length; i = next++) {
      results[i] = await get(agent, url, paths[i] ?? '/', { ...common, ...extra(i) });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, paths.length) }, worker));
  agent.destroy();
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

if (import.meta.main) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  });
}
