// A HotROD-style ride-dispatch service for the cluster lab, one role per pod (HOTROD_ROLE), on an
// event loop (Node's http). lab/apps/hotrod.py is the same service, thread per connection.
//   frontend  GET /dispatch?customer=<id> -> customer, then driver; answers the chosen driver
//   customer  GET /customer?id=<id>       -> the customer's name and location (a "database" lookup)
//   driver    GET /drivers?location=<x,y> -> route for each of `fanout` candidates, in parallel
//   route     GET /route?from=<x,y>&to=<x,y> -> an ETA and a polyline of `routeBytes` bytes
//   any role  GET /healthz; every answer echoes the traceparent its request carried (null: none)
// Upstreams are found as Kubernetes injects Services: <APP>_SERVICE_HOST and <APP>_SERVICE_PORT.
// Every outbound call is made from the I/O callback of the request (or response) that causes it;
// the role's handler delay (`delayMs`, plus the lab's `extraDelayMs` fault) comes after its calls,
// before it answers. Tunables come from hotrod-data.json's defaults, overridden by the JSON file
// HOTROD_CONFIG, re-read whenever it changes (the lab's handler-delay fault).
// HOTROD_MODE=instrumented loads the OpenTelemetry SDK (hotrod-otel.ts) before serving: it traces
// and propagates traceparent; plain sends no trace header at all.
import http from 'node:http';
import { readFileSync, statSync } from 'node:fs';

type Json = Record<string, unknown>;
interface Tunables {
  delayMs: number;
  /** the lab's handler-delay fault, on top of delayMs */
  extraDelayMs: number;
  fanout: number;
  routeBytes: number;
}

const DATA = JSON.parse(readFileSync(new URL('./hotrod-data.json', import.meta.url), 'utf8')) as {
  customers: Record<string, { name: string; location: string }>;
  defaults: Record<string, Partial<Tunables>>;
};
const ROLE = process.env.HOTROD_ROLE ?? '';
const PORT = Number(process.env.HOTROD_PORT ?? 8080);
/** namespace/name of this pod, in every answer */
const POD = process.env.HOTROD_POD ?? ROLE;
const CONFIG = process.env.HOTROD_CONFIG;
const UPSTREAM_TIMEOUT_MS = 10_000;
const SHUTDOWN_FLUSH_MS = 1000;

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

let tunables: Tunables = { delayMs: 0, extraDelayMs: 0, fanout: 5, routeBytes: 2048, ...DATA.defaults[ROLE] };
let configStamp = -1;
/** the defaults, then HOTROD_CONFIG when it changed since the last request (one stat per request) */
function currentTunables(): Tunables {
  if (!CONFIG) return tunables;
  try {
    const st = statSync(CONFIG);
    if (st.mtimeMs !== configStamp) {
      tunables = { ...tunables, ...DATA.defaults[ROLE], ...(JSON.parse(readFileSync(CONFIG, 'utf8')) as Partial<Tunables>) };
      configStamp = st.mtimeMs;
    }
  } catch {
    // no file (yet) or half-written: keep what we have
  }
  return tunables;
}

/** FNV-1a, 32 bits: the same candidates in both runtimes */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

const parsePoint = (s: string | null): [number, number] => {
  const m = /^(-?\d+),(-?\d+)$/.exec(s ?? '');
  if (!m) throw new HttpError(400, `bad location ${JSON.stringify(s)}: want x,y`);
  return [Number(m[1]), Number(m[2])];
};

/** candidate i near a location: an id and a location within 100 of it */
export function candidate(location: string, i: number): { id: string; location: string } {
  const [x, y] = parsePoint(location);
  const h = fnv1a(`${location}#${i}`);
  const dx = ((h >>> 8) % 201) - 100;
  const dy = ((h >>> 16) % 201) - 100;
  return { id: `T7${String(h % 100_000).padStart(5, '0')}C`, location: `${x + dx},${y + dy}` };
}

/** the polyline from -> to as `x,y;` points, cut or padded to exactly `bytes` */
export function polyline(from: [number, number], to: [number, number], bytes: number): string {
  let s = '';
  for (let k = 0; s.length < bytes; k = (k + 1) % 33) {
    const t = k / 32;
    s += `${Math.round(from[0] + (to[0] - from[0]) * t)},${Math.round(from[1] + (to[1] - from[1]) * t)};`;
  }
  return s.slice(0, bytes);
}

function upstream(app: string): { host: string; port: number } {
  const host = process.env[`${app.toUpperCase()}_SERVICE_HOST`];
  const port = Number(process.env[`${app.toUpperCase()}_SERVICE_PORT`] ?? 80);
  if (!host) throw new HttpError(500, `no ${app} Service (${app.toUpperCase()}_SERVICE_HOST is not set)`);
  return { host, port };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** GET from a Service; resolves with its JSON answer, rejects on anything but 200 */
function get(app: string, path: string): Promise<Json> {
  const { host, port } = upstream(app);
  return new Promise((resolve, reject) => {
    // http.request through the module object: the SDK's instrumentation patches it there
    const req = http.request({ host, port, path, agent, timeout: UPSTREAM_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) return reject(new HttpError(res.statusCode === 404 ? 404 : 502, `${app} ${path}: ${res.statusCode} ${body}`));
        try {
          resolve(JSON.parse(body) as Json);
        } catch (e) {
          reject(new HttpError(502, `${app} ${path}: bad JSON: ${(e as Error).message}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new HttpError(504, `${app} ${path}: no answer in ${UPSTREAM_TIMEOUT_MS} ms`)));
    req.on('error', (e) => reject(e instanceof HttpError ? e : new HttpError(502, `${app} ${path}: ${e.message}`)));
    req.end();
  });
}

/** `traceparent` is the one this request carried (null: none), echoed in the answer so tests can see propagation */
async function handle(url: URL, t: Tunables, traceparent: string | null): Promise<Json> {
  const q = url.searchParams;
  switch (`${ROLE} ${url.pathname}`) {
    case 'frontend /dispatch': {
      const id = q.get('customer') ?? '';
      const customer = await get('customer', `/customer?id=${encodeURIComponent(id)}`);
      const found = await get('driver', `/drivers?location=${encodeURIComponent(String(customer.location))}`);
      const drivers = found.drivers as Json[];
      const best = drivers[0] as Json;
      return {
        customer: { id, name: customer.name, location: customer.location },
        driver: { id: best.id, location: best.location, etaS: best.etaS },
        routes: drivers.length,
        served: { frontend: POD, customer: customer.pod, driver: found.pod, route: drivers.map((d) => d.routePod) },
        traceparents: { frontend: traceparent, customer: customer.traceparent, driver: found.traceparent, route: drivers.map((d) => d.routeTraceparent) },
      };
    }
    case 'customer /customer': {
      const id = q.get('id') ?? '';
      const c = DATA.customers[id];
      if (!c) throw new HttpError(404, `no customer ${JSON.stringify(id)}`);
      return { id, name: c.name, location: c.location, pod: POD, traceparent };
    }
    case 'driver /drivers': {
      const location = q.get('location') ?? '';
      parsePoint(location);
      const candidates = Array.from({ length: t.fanout }, (_, i) => candidate(location, i));
      const routes = await Promise.all(
        candidates.map((c) => get('route', `/route?from=${encodeURIComponent(c.location)}&to=${encodeURIComponent(location)}`)),
      );
      const drivers = candidates
        .map((c, i) => ({ ...c, etaS: (routes[i] as Json).etaS as number, routePod: (routes[i] as Json).pod, routeTraceparent: (routes[i] as Json).traceparent }))
        .sort((a, b) => a.etaS - b.etaS || a.id.localeCompare(b.id));
      return { location, drivers, pod: POD, traceparent };
    }
    case 'route /route': {
      const from = parsePoint(q.get('from'));
      const to = parsePoint(q.get('to'));
      const etaS = (Math.abs(from[0] - to[0]) + Math.abs(from[1] - to[1])) * 3;
      return { from: q.get('from'), to: q.get('to'), etaS, polyline: polyline(from, to, t.routeBytes), pod: POD, traceparent };
    }
    default:
      throw new HttpError(404, `${ROLE} has no ${url.pathname}`);
  }
}

function serve(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://pod');
  const send = (status: number, body: Json | string) => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  if (url.pathname === '/healthz') return send(200, 'ok');
  const t = currentTunables();
  const delayMs = t.delayMs + t.extraDelayMs;
  const tp = req.headers.traceparent;
  handle(url, t, typeof tp === 'string' ? tp : null).then(
    (body) => (delayMs > 0 ? setTimeout(() => send(200, body), delayMs) : send(200, body)),
    (e: unknown) => send(e instanceof HttpError ? e.status : 500, { error: (e as Error).message, pod: POD }),
  );
}

async function main(): Promise<void> {
  if (!['frontend', 'customer', 'driver', 'route'].includes(ROLE)) throw new Error(`HOTROD_ROLE=${JSON.stringify(ROLE)}: want frontend, customer, driver or route`);
  const otel = process.env.HOTROD_MODE === 'instrumented' ? await import('./hotrod-otel.ts') : undefined;
  otel?.start();
  const server = http.createServer((req, res) => {
    // the request's own I/O callback: its calls to other services start from here
    req.resume();
    req.on('end', () => serve(req, res));
  });
  // longer than nginx's upstream keepalive_timeout (60 s), as the single-node lab's app
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;
  server.listen(PORT, '0.0.0.0', () => console.log(`${POD} (${ROLE}, ${otel ? 'instrumented' : 'plain'}) listening on :${PORT} pid ${process.pid}`));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      server.close();
      // flush the SDK's spans, but never hold a teardown up for an unreachable collector
      const flushed = Promise.resolve(otel?.shutdown()).catch(() => {});
      Promise.race([flushed, new Promise((r) => setTimeout(r, SHUTDOWN_FLUSH_MS))]).finally(() => process.exit(0));
    });
  }
}

if (import.meta.main) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
