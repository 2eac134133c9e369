import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createExporters, type ExportConfig } from '../../agent/src/export/factory.ts';
import { TraceFileExporter } from '../../agent/src/export/file-exporter.ts';
import { JaegerThriftExporter } from '../../agent/src/export/jaeger-thrift.ts';
import { OtlpGrpcTraceExporter, toGrpcMetadata } from '../../agent/src/export/otlp-grpc.ts';

describe('createExporters', () => {
  it('builds one exporter per configured backend, in the order otlp, jaeger, files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'strata-factory-'));
    try {
      assert.deepEqual(createExporters({}), []);
      const http = createExporters({ otlp: { protocol: 'http/protobuf', endpoint: 'http://127.0.0.1:4318/v1/traces' } });
      assert.equal(http[0]?.constructor.name, 'OTLPTraceExporter');
      const all = createExporters({
        otlp: { protocol: 'grpc', endpoint: 'http://127.0.0.1:4317', headers: { 'X-Tenant': 'a' }, timeoutMs: 1000 },
        jaeger: { endpoint: 'http://127.0.0.1:14268/api/traces' },
        files: { dir },
      });
      assert.ok(all[0] instanceof OtlpGrpcTraceExporter);
      assert.ok(all[1] instanceof JaegerThriftExporter);
      assert.ok(all[2] instanceof TraceFileExporter);
      for (const e of [...http, ...all]) await e.shutdown();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses what it cannot honour', () => {
    assert.throws(
      () => createExporters({ otlp: { protocol: 'http/json', endpoint: 'http://x:4318' } } as unknown as ExportConfig),
      /OTLP protocol http\/json not supported/,
    );
    assert.throws(() => createExporters({ jaeger: { endpoint: 'jaeger:14268' } }), /must be http\(s\)/);
    assert.throws(() => createExporters({ jaeger: { endpoint: '' } }), /not a URL/);
    assert.throws(() => createExporters({ otlp: { protocol: 'grpc', endpoint: 'http://x:4317', headers: { 'bad header': '1' } } }));
  });

  it('turns headers into gRPC metadata: lowercased names, base64 for -bin', () => {
    const md = toGrpcMetadata({ Authorization: 'Bearer x', 'Trace-Bin': Buffer.from([1, 2, 3]).toString('base64') });
    assert.deepEqual(md.get('authorization'), ['Bearer x']);
    assert.deepEqual(md.get('trace-bin'), [Buffer.from([1, 2, 3])]);
  });
});
