// OTEL_* variables are read once, by config/load.ts: a value a later source (a flag) overrode must
// not reach the backend through the SDK exporters' own OTEL_EXPORTER_OTLP_* fallbacks (headers
// merged key by key, compression, endpoint). Real exporters, real receivers on 127.0.0.1, the
// variables set in this process's environment while the exporters are built and used.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { loadConfig, parseAgentArgs, toAgentOptions } from '../../agent/src/config/index.ts';
import { createExporters } from '../../agent/src/export/factory.ts';
import { otlpEnvHidden } from '../../agent/src/export/otlp-grpc.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { spanTree } from '../helpers/otlp-fixture.ts';
import { OtlpGrpcReceiver } from '../helpers/otlp-grpc-receiver.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { sinkOptions } from '../helpers/options.ts';

/** variables a launcher could set, every one overridden or absent from the configuration */
const LEAKY: Record<string, string> = {
  OTEL_EXPORTER_OTLP_HEADERS: 'x-from-env=generic,authorization=Bearer%20env',
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-from-env-traces=1',
  OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
  OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
  OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '1',
};

describe('OTEL_* variables overridden by flags do not leak into the exporters', () => {
  const http = new OtlpReceiver();
  const grpc = new OtlpGrpcReceiver();
  const saved = new Map<string, string | undefined>();
  before(async () => {
    await http.start();
    await grpc.start();
  });
  after(async () => {
    await http.stop();
    await grpc.stop();
  });
  const setEnv = (vars: Record<string, string>) => {
    for (const [k, v] of Object.entries(vars)) {
      if (!saved.has(k)) saved.set(k, process.env[k]);
      process.env[k] = v;
    }
  };
  afterEach(() => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    saved.clear();
  });

  const exportOne = async (args: string[], name: string) => {
    const config = loadConfig({ env: process.env, flags: parseAgentArgs(args).settings, warn: () => {} });
    const sink = new SdkSpanSink(sinkOptions({ exporters: createExporters(toAgentOptions(config, []).export ?? {}), batch: { scheduledDelayMillis: 20 }, log: () => {} }));
    sink.emit({ ...(spanTree()[3] as SpanRecord), spanId: 'e1e1e1e1e1e1e1e1', name });
    await sink.flush();
    const st = sink.stats();
    await sink.shutdown();
    return { config, st };
  };

  it('http/protobuf: the flag\'s endpoint and headers only; no env header, no gzip; the configured timeout', async () => {
    // the endpoint from the environment points nowhere: only the flag's may be used
    setEnv({ ...LEAKY, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:9/v1/traces' });
    const from = http.requests.length;
    const { config, st } = await exportOne(
      ['--otlp-endpoint', http.url, '--set', 'export.otlp.headers=x-from-flag=1', '--set', 'export.otlp.timeoutMs=5000'],
      'http-env',
    );
    assert.deepEqual(config.export.otlp.headers, { 'x-from-flag': '1' });
    assert.equal(config.export.otlp.timeoutMs, 5000);
    assert.equal(st.exportsSucceeded, 1, `exported to the flag's endpoint (${st.exporters[0]?.lastError ?? ''})`);
    const req = http.requests[from];
    assert.ok(req);
    assert.equal(req.headers['x-from-flag'], '1');
    for (const h of ['x-from-env', 'x-from-env-traces', 'authorization', 'content-encoding']) assert.equal(req.headers[h], undefined, h);
    assert.deepEqual(flattenSpans(req.decoded).map((x) => x.span.name), ['http-env']);
  });

  it('grpc: the flag\'s endpoint and metadata only; no env metadata, no compression', async () => {
    setEnv({ ...LEAKY, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_INSECURE: 'false' });
    const from = grpc.requests.length;
    const { st } = await exportOne(
      ['--otlp-endpoint', grpc.url, '--set', 'export.otlp.protocol=grpc', '--set', 'export.otlp.headers=x-from-flag=1', '--set', 'export.otlp.timeoutMs=5000'],
      'grpc-env',
    );
    assert.equal(st.exportsSucceeded, 1, `exported to the flag's endpoint (${st.exporters[0]?.lastError ?? ''})`);
    const req = grpc.requests[from];
    assert.ok(req);
    assert.equal(req.metadata['x-from-flag'], '1');
    for (const h of ['x-from-env', 'x-from-env-traces', 'authorization', 'grpc-encoding']) assert.equal(req.metadata[h], undefined, h);
    assert.deepEqual(flattenSpans(req.decoded).map((x) => x.span.name), ['grpc-env']);
    // the variables are back in the environment afterwards
    assert.equal(process.env.OTEL_EXPORTER_OTLP_COMPRESSION, 'gzip');
  });

  it('otlpEnvHidden hides OTEL_EXPORTER_OTLP_* while it builds, and restores them even when building throws', () => {
    setEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'a=b', OTEL_SERVICE_NAME: 'kept' });
    const seen = otlpEnvHidden(() => ({ headers: process.env.OTEL_EXPORTER_OTLP_HEADERS, service: process.env.OTEL_SERVICE_NAME }));
    assert.deepEqual(seen, { headers: undefined, service: 'kept' });
    assert.throws(() => otlpEnvHidden(() => {
      throw new Error('boom');
    }), /boom/);
    assert.equal(process.env.OTEL_EXPORTER_OTLP_HEADERS, 'a=b');
  });
});
