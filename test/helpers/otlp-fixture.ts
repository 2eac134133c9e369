// A small span tree shared by the export tests, and a poll-with-deadline helper.
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { SpanRecord, SpanResource } from '../../agent/src/export/types.ts';

/** the caller's context, as read from the request bytes */
export const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
export const TRACESTATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
export const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
export const REMOTE_PARENT_ID = '00f067aa0ba902b7';
export const TRACE_ID_2 = '0af7651916cd43dd8448eb211c80319c';

export const IDS = {
  server: 'a1a1a1a1a1a1a1a1',
  client: 'b2b2b2b2b2b2b2b2',
  hop: 'c3c3c3c3c3c3c3c3',
  root2: 'd4d4d4d4d4d4d4d4',
} as const;

export const NGINX: SpanResource = {
  serviceName: 'nginx',
  attributes: {
    'k8s.namespace.name': 'ingress',
    'k8s.pod.name': 'nginx-7d9f',
    'k8s.node.name': 'node-1',
    'k8s.container.name': 'nginx',
  },
};

export const NET: SpanResource = {
  serviceName: 'strata-net',
  attributes: { 'k8s.node.name': 'node-1', 'host.name': 'node-1' },
};

export const FRONTEND: SpanResource = {
  serviceName: 'frontend',
  attributes: { 'k8s.namespace.name': 'default', 'k8s.pod.name': 'frontend-5c4b', 'k8s.node.name': 'node-2' },
};

const T0 = 1_767_225_600; // 2026-01-01T00:00:00Z

/** root SERVER (remote parent), CLIENT child, INTERNAL grandchild, and a second root without parent */
export function spanTree(): SpanRecord[] {
  return [
    {
      traceId: TRACE_ID,
      spanId: IDS.server,
      parentSpanId: REMOTE_PARENT_ID,
      parentIsRemote: true,
      traceFlags: 1,
      traceState: TRACESTATE,
      name: 'GET /dispatch',
      kind: SpanKind.SERVER,
      start: [T0, 123_456_789],
      end: [T0 + 1, 987_654_321],
      attributes: {
        'strata.layer': 'proxy',
        'http.request.method': 'GET',
        'url.path': '/dispatch',
        'http.response.status_code': 200,
        'strata.skew_ms': 0.25,
        'strata.keepalive': true,
        'strata.points': ['accept', 'read', 'write'],
      },
      status: { code: SpanStatusCode.OK },
      resource: NGINX,
    },
    {
      traceId: TRACE_ID,
      spanId: IDS.client,
      parentSpanId: IDS.server,
      traceFlags: 1,
      traceState: TRACESTATE,
      name: 'proxy 10.244.2.5:8080',
      kind: SpanKind.CLIENT,
      start: [T0, 200_000_001],
      end: [T0 + 1, 900_000_999],
      attributes: { 'strata.layer': 'proxy', 'server.address': '10.244.2.5', 'server.port': 8080 },
      resource: NGINX,
    },
    {
      traceId: TRACE_ID,
      spanId: IDS.hop,
      parentSpanId: IDS.client,
      traceFlags: 1,
      name: 'net node-1 stack -> eth0',
      kind: SpanKind.INTERNAL,
      start: [T0, 200_000_501],
      end: [T0, 200_001_999],
      attributes: { 'strata.layer': 'node', 'strata.from': 'sock', 'strata.to': 'eth0', 'network.interface.name': 'eth0' },
      resource: NET,
    },
    {
      traceId: TRACE_ID_2,
      spanId: IDS.root2,
      traceFlags: 1,
      name: 'GET /healthz',
      kind: SpanKind.SERVER,
      start: [T0 + 5, 1],
      end: [T0 + 5, 999_999_999],
      attributes: { 'strata.layer': 'app', 'http.response.status_code': 503 },
      status: { code: SpanStatusCode.ERROR, message: 'upstream unavailable' },
      resource: FRONTEND,
    },
  ];
}

/** HrTime -> ns since the epoch, exactly */
export function hrToNanos(t: readonly [number, number]): bigint {
  return BigInt(t[0]) * 1_000_000_000n + BigInt(t[1]);
}

/** Polls `check` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string | (() => string),
  timeoutMillis = 10_000,
  everyMillis = 20,
): Promise<Exclude<T, undefined | null | false | 0 | ''>> {
  const deadline = Date.now() + timeoutMillis;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as Exclude<T, undefined | null | false | 0 | ''>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMillis} ms waiting for ${typeof what === 'function' ? what() : what}${last ? `: ${String(last)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMillis));
  }
}
