// Configuration: precedence of the sources, validation messages, unknown keys, freezing, and the
// mapping onto AgentOptions.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type LoadOptions, type StrataConfig, defaultConfig, envName, leafPaths, loadConfig, parseAgentArgs, SCHEMA, toAgentOptions } from '../../agent/src/config/index.ts';
import { EXIT_CONFIG, EXIT_USAGE, STRATA_ERR_CONFIG, STRATA_ERR_USAGE, StrataError } from '../../agent/src/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'strata-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function yamlFile(text: string): string {
  const f = join(dir, `c${n++}.yaml`);
  writeFileSync(f, text);
  return f;
}

/** load with a clean environment unless one is given */
function load(o: LoadOptions & { args?: string[] } = {}): StrataConfig {
  return loadConfig({ env: {}, hostname: 'host-1', ...o, flags: o.flags ?? (o.args ? parseAgentArgs(o.args).settings : undefined) });
}

/** the config error of a load, asserting its code and exit code */
function configError(o: LoadOptions & { args?: string[] }): StrataError {
  try {
    load(o);
  } catch (e) {
    assert.ok(e instanceof StrataError, `a StrataError, got ${String(e)}`);
    assert.equal(e.code, STRATA_ERR_CONFIG);
    assert.equal(e.exitCode, EXIT_CONFIG);
    return e;
  }
  assert.fail('expected a configuration error');
}

function assertMentions(msg: string, ...parts: string[]): void {
  for (const p of parts) assert.ok(msg.includes(p), `message should mention ${JSON.stringify(p)}:\n${msg}`);
}

describe('config: defaults', () => {
  test('the documented defaults, node name from the hostname or NODE_NAME', () => {
    const c = load();
    assert.deepEqual(c, defaultConfig({}, 'host-1'));
    assert.equal(c.node.name, 'host-1');
    assert.equal(c.probes.sockPayloadBytes, 256);
    assert.equal(c.probes.ringBufferBytes, 4194304);
    assert.equal(c.export.otlp.endpoint, 'http://localhost:4318/v1/traces');
    assert.deepEqual(c.correlator.proxyComms, ['nginx', 'envoy', 'haproxy', 'traefik']);
    assert.equal(load({ env: { NODE_NAME: 'node-7' } }).node.name, 'node-7');
  });

  test('every schema key has a default and the other way round', () => {
    const def = defaultConfig({}, 'h') as unknown as Record<string, unknown>;
    const defaultPaths = (o: Record<string, unknown>, p = ''): string[] =>
      Object.entries(o).flatMap(([k, v]) => {
        const key = p ? `${p}.${k}` : k;
        const leafObject = key === 'export.otlp.headers';
        return v !== null && typeof v === 'object' && !Array.isArray(v) && !leafObject ? defaultPaths(v as Record<string, unknown>, key) : [key];
      });
    assert.deepEqual(defaultPaths(def), leafPaths(SCHEMA));
    assert.equal(envName('probes.sockPayloadBytes'), 'STRATA_PROBES_SOCK_PAYLOAD_BYTES');
    assert.equal(envName('export.otlp.endpoint'), 'STRATA_EXPORT_OTLP_ENDPOINT');
  });
});

describe('config: precedence defaults < file < OTEL_* < STRATA_* < flags', () => {
  test('one key set at every level: the highest wins', () => {
    const file = yamlFile('export:\n  otlp:\n    endpoint: http://from-file:4318/v1/traces\n    timeoutMs: 1000\n');
    const otel = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://from-otel:4318/v1/traces', OTEL_EXPORTER_OTLP_TIMEOUT: '2000' };
    const strata = { STRATA_EXPORT_OTLP_ENDPOINT: 'http://from-strata-env:4318/v1/traces', STRATA_EXPORT_OTLP_TIMEOUT_MS: '3000' };
    const flags = ['--otlp-endpoint', 'http://from-flag:4318/v1/traces', '--set', 'export.otlp.timeoutMs=4000'];
    const pick = (c: StrataConfig) => [c.export.otlp.endpoint, c.export.otlp.timeoutMs];

    assert.deepEqual(pick(load()), ['http://localhost:4318/v1/traces', 10000]);
    assert.deepEqual(pick(load({ file })), ['http://from-file:4318/v1/traces', 1000]);
    assert.deepEqual(pick(load({ file, env: otel })), ['http://from-otel:4318/v1/traces', 2000]);
    assert.deepEqual(pick(load({ file, env: { ...otel, ...strata } })), ['http://from-strata-env:4318/v1/traces', 3000]);
    assert.deepEqual(pick(load({ file, env: { ...otel, ...strata }, args: flags })), ['http://from-flag:4318/v1/traces', 4000]);
    // levels that are absent do not reset the ones below
    assert.deepEqual(pick(load({ file, args: flags.slice(2) })), ['http://from-file:4318/v1/traces', 4000]);
  });

  test('the file comes from --config, else STRATA_CONFIG', () => {
    const a = yamlFile('sampling:\n  ratio: 0.25\n');
    const b = yamlFile('sampling:\n  ratio: 0.5\n');
    assert.equal(load({ env: { STRATA_CONFIG: a } }).sampling.ratio, 0.25);
    assert.equal(load({ env: { STRATA_CONFIG: a }, file: b }).sampling.ratio, 0.5);
    assert.equal(load({ file: parseAgentArgs(['--config', b]).configFile }).sampling.ratio, 0.5);
  });

  test('flags apply in command-line order; short flags are aliases of keys', () => {
    const c = load({ args: ['--set', 'metrics.port=1', '--metrics-port', '2', '--iface', 'eth0', '--node-netns', '/run/netns/n', '--iface', 'eth1', '--pods-file', '/p.json', '--traces-dir', '/t', '--metrics-host', '127.0.0.1', '--node-name', 'n1'] });
    assert.equal(c.metrics.port, 2);
    assert.deepEqual(c.node.interfaces, ['eth0', 'eth1']);
    assert.equal(c.node.netns, '/run/netns/n');
    assert.equal(c.discovery.podsFile, '/p.json');
    assert.equal(c.export.files.dir, '/t');
    assert.equal(c.metrics.host, '127.0.0.1');
    assert.equal(c.node.name, 'n1');
    assert.equal(load({ args: ['--metrics-port', '2', '--set', 'metrics.port=1'] }).metrics.port, 1);
  });

  test('OTEL_EXPORTER_OTLP_* variables: base endpoint, protocol, headers, timeout', () => {
    const c = load({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/', OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Bearer%20abc, x-tenant=t1', OTEL_EXPORTER_OTLP_TIMEOUT: '2500' } });
    assert.equal(c.export.otlp.endpoint, 'http://collector:4318/v1/traces', 'the signal path is appended to the base (http/protobuf)');
    assert.deepEqual(c.export.otlp.headers, { authorization: 'Bearer abc', 'x-tenant': 't1' });
    assert.equal(c.export.otlp.timeoutMs, 2500);
    const g = load({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } });
    assert.equal(g.export.otlp.protocol, 'grpc');
    assert.equal(g.export.otlp.endpoint, 'http://collector:4317', 'grpc: the endpoint as is');
    assert.equal(load({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } }).export.otlp.endpoint, 'http://localhost:4317');
    // the signal-specific endpoint wins over the base
    assert.equal(
      load({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:4318/custom' } }).export.otlp.endpoint,
      'http://b:4318/custom',
    );
  });

  test('typed values from strings: numbers, booleans, lists, null', () => {
    const c = load({
      env: { STRATA_SAMPLING_KEEP_ERRORS: 'false', STRATA_PRIVACY_HEADER_ALLOW_LIST: 'X-Request-Id, traceparent', STRATA_DISCOVERY_PODS_FILE: 'null' },
      args: ['--set', 'sampling.ratio=0.125', '--set', 'correlator.proxyComms=nginx,envoy'],
    });
    assert.equal(c.sampling.keepErrors, false);
    assert.deepEqual(c.privacy.headerAllowList, ['x-request-id', 'traceparent']);
    assert.equal(c.discovery.podsFile, null);
    assert.equal(c.sampling.ratio, 0.125);
    assert.deepEqual(c.correlator.proxyComms, ['nginx', 'envoy']);
  });

  test('a YAML file with every section', () => {
    const file = yamlFile(`# a ConfigMap's config.yaml
node: { name: node-a, netns: /run/netns/node, interfaces: [eth0] }
discovery: { podsFile: /var/run/strata/pods.json }
probes: { sockPayloadBytes: 512, pktPayloadBytes: 64, ringBufferBytes: 8388608, wakeupBytes: 4096 }
correlator: { graceMs: 50, idleTimeoutS: 60, maxConnections: 1000, maxMessages: 2000, proxyComms: [envoy] }
privacy: { headerAllowList: [x-request-id], redactHeaders: [authorization] }
sampling: { ratio: 0.5, slowThresholdMs: 250, keepErrors: false, respectParentSampled: false }
export:
  otlp: { endpoint: "http://jaeger:4318/v1/traces", protocol: http/protobuf, headers: { X-Tenant: a }, timeoutMs: 5000 }
  jaeger: { endpoint: null }
  files: { dir: /tmp/traces }
  queue: { maxSpans: 100, batchSize: 10, delayMs: 50 }
metrics: { port: 0, host: 127.0.0.1 }
shutdown: { timeoutS: 3 }
`);
    const c = load({ file });
    assert.equal(c.node.name, 'node-a');
    assert.equal(c.probes.wakeupBytes, 4096);
    assert.deepEqual(c.export.otlp.headers, { 'x-tenant': 'a' });
    assert.equal(c.export.queue.batchSize, 10);
    assert.equal(c.shutdown.timeoutS, 3);
    assert.equal(load({ file: yamlFile('# nothing yet\n') }).sampling.ratio, 1, 'an empty file is no settings');
  });
});

describe('config: validation errors name the key, the value and what is allowed', () => {
  const cases: { name: string; o: LoadOptions & { args?: string[] }; mentions: string[] }[] = [
    { name: 'number out of range', o: { file: yamlFile('sampling:\n  ratio: 2\n') }, mentions: ['sampling.ratio', '2', '0..1'] },
    { name: 'integer out of range', o: { args: ['--metrics-port', '70000'] }, mentions: ['metrics.port', '"70000"', '--metrics-port', '0..65535'] },
    { name: 'not a number', o: { env: { STRATA_SAMPLING_RATIO: 'half' } }, mentions: ['sampling.ratio', '"half"', 'STRATA_SAMPLING_RATIO', '0..1'] },
    { name: 'not a multiple of 8', o: { file: yamlFile('probes:\n  sockPayloadBytes: 100\n') }, mentions: ['probes.sockPayloadBytes', '100', '8..512', 'multiple of 8'] },
    { name: 'packet payload above its maximum', o: { args: ['--set', 'probes.pktPayloadBytes=256'] }, mentions: ['probes.pktPayloadBytes', '"256"', '8..128'] },
    { name: 'not a power of two', o: { file: yamlFile('probes:\n  ringBufferBytes: 5000\n') }, mentions: ['probes.ringBufferBytes', '5000', 'power of two', '4096'] },
    { name: 'wakeup above the ring size', o: { args: ['--set', 'probes.ringBufferBytes=4096', '--set', 'probes.wakeupBytes=8192'] }, mentions: ['probes.wakeupBytes', '8192', '0..4096', 'probes.ringBufferBytes'] },
    { name: 'not a boolean', o: { env: { STRATA_SAMPLING_KEEP_ERRORS: 'maybe' } }, mentions: ['sampling.keepErrors', '"maybe"', 'true or false'] },
    { name: 'not one of the protocols', o: { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' } }, mentions: ['export.otlp.protocol', '"http/json"', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'http/protobuf, grpc'] },
    { name: 'not a URL', o: { args: ['--otlp-endpoint', 'jaeger:4318'] }, mentions: ['export.otlp.endpoint', '"jaeger:4318"', 'http:// or https:// URL, or none'] },
    { name: 'a list with a bad item', o: { file: yamlFile('privacy:\n  headerAllowList: [x-request-id, "bad header"]\n') }, mentions: ['privacy.headerAllowList', 'bad header', 'HTTP header names'] },
    { name: 'a comm longer than 15', o: { args: ['--set', 'correlator.proxyComms=nginx,a-very-long-process-name'] }, mentions: ['correlator.proxyComms', 'a-very-long-process-name', '1..15 characters'] },
    { name: 'an interface name with a slash', o: { args: ['--iface', 'eth0/1'] }, mentions: ['node.interfaces', 'eth0/1', 'interface names'] },
    { name: 'headers not a mapping (values hidden)', o: { env: { OTEL_EXPORTER_OTLP_HEADERS: 'authorization' } }, mentions: ['export.otlp.headers', 'OTEL_EXPORTER_OTLP_HEADERS', 'name=value'] },
    { name: 'empty string', o: { args: ['--node-name', ''] }, mentions: ['node.name', '""', 'non-empty string'] },
    { name: 'a string where a number belongs in YAML', o: { file: yamlFile('shutdown:\n  timeoutS: [1]\n') }, mentions: ['shutdown.timeoutS', '[1]', '1..3600'] },
    { name: 'a section given a value', o: { file: yamlFile('sampling: 0.5\n') }, mentions: ['sampling', '0.5', 'mapping with keys ratio, slowThresholdMs'] },
    { name: 'batch larger than the queue', o: { args: ['--set', 'export.queue.maxSpans=10', '--set', 'export.queue.batchSize=20'] }, mentions: ['export.queue.batchSize', '20', '1..10', 'export.queue.maxSpans'] },
    { name: 'spans going nowhere', o: { args: ['--otlp-endpoint', 'none'] }, mentions: ['export.otlp.endpoint', '"none"', 'export.files.dir'] },
    { name: 'unparsable YAML', o: { file: yamlFile('sampling:\n  ratio: [1,\n') }, mentions: ['config file', 'c', '.yaml', 'not valid YAML', 'line'] },
    { name: 'duplicate YAML keys', o: { file: yamlFile('metrics:\n  port: 1\n  port: 2\n') }, mentions: ['not valid YAML', 'unique'] },
    { name: 'a YAML list at the top', o: { file: yamlFile('- a\n- b\n') }, mentions: ['expected a mapping of sections', 'node, discovery'] },
    { name: 'missing file', o: { file: join(dir, 'absent.yaml') }, mentions: [join(dir, 'absent.yaml'), 'cannot read', 'ENOENT'] },
  ];
  for (const c of cases) {
    test(c.name, () => assertMentions(configError(c.o).message, ...c.mentions));
  }

  test('header values never appear in messages', () => {
    const e = configError({ file: yamlFile('export:\n  otlp:\n    headers: { authorization: [secret-token] }\n') });
    assertMentions(e.message, 'export.otlp.headers');
    assert.ok(!e.message.includes('secret-token'), e.message);
  });

  test('every problem is reported at once, with the issues in detail', () => {
    const e = configError({ file: yamlFile('sampling:\n  ratio: 2\nmetrics:\n  port: -1\n'), env: { STRATA_SHUTDOWN_TIMEOUT_S: '0' } });
    assertMentions(e.message, '3 problems', 'sampling.ratio', 'metrics.port', 'shutdown.timeoutS');
    const issues = e.detail?.issues as { key: string; allowed?: string }[];
    assert.deepEqual(issues.map((i) => i.key).sort(), ['metrics.port', 'sampling.ratio', 'shutdown.timeoutS']);
    assert.ok(issues.every((i) => i.allowed));
  });

  test('a lower level with a bad value is fine when a higher one overrides it', () => {
    assert.equal(load({ file: yamlFile('sampling:\n  ratio: 2\n'), args: ['--set', 'sampling.ratio=0.5'] }).sampling.ratio, 0.5);
  });
});

describe('config: unknown keys', () => {
  test('in the file, with a suggestion when close', () => {
    assertMentions(configError({ file: yamlFile('sampling:\n  ratoi: 0.5\n') }).message, 'unknown key sampling.ratoi', 'did you mean sampling.ratio?');
    assertMentions(configError({ file: yamlFile('probes:\n  sock_payload_bytes: 64\n') }).message, 'probes.sock_payload_bytes', 'did you mean probes.sockPayloadBytes?');
    assertMentions(configError({ file: yamlFile('ratio: 0.5\n') }).message, 'unknown key ratio', 'did you mean sampling.ratio?');
    assertMentions(configError({ file: yamlFile('exprt:\n  otlp: {}\n') }).message, 'unknown key exprt', 'did you mean export?');
    const far = configError({ file: yamlFile('completely: 1\n') }).message;
    assertMentions(far, 'unknown key completely');
    assert.ok(!far.includes('did you mean'), far);
  });

  test('in --set and in STRATA_* variables', () => {
    assertMentions(configError({ args: ['--set', 'metrics.prot=1'] }).message, 'unknown key metrics.prot', '--set metrics.prot', 'did you mean metrics.port?');
    assertMentions(configError({ args: ['--set', 'sampling=1'] }).message, 'sampling (--set sampling) is a section', 'sampling.ratio, sampling.slowThresholdMs');
    assertMentions(configError({ env: { STRATA_SAMPLING_RATE: '0.5' } }).message, 'STRATA_SAMPLING_RATE', 'did you mean STRATA_SAMPLING_RATIO?');
  });

  test('a variable whose section is not in the schema: one warning for all of them, ignored', () => {
    const warnings: string[] = [];
    const c = load({
      env: { STRATA_AGENT_CMD: '/usr/bin/strata agent', STRATA_LAUNCHER_ID: '7', STRATA_SAMPLING_RATIO: '0.5' },
      warn: (m) => warnings.push(m),
    });
    assert.equal(c.sampling.ratio, 0.5, 'the settings beside them apply');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assertMentions(warnings[0] as string, 'STRATA_AGENT_CMD', 'STRATA_LAUNCHER_ID', 'not a setting', 'SAMPLING');
    // a section name with a typo is not a setting either, but the warning says what was meant
    const typo: string[] = [];
    assert.equal(load({ env: { STRATA_SAMPLNG_RATIO: '0.1' }, warn: (m) => typo.push(m) }).sampling.ratio, 1);
    assertMentions(typo[0] as string, 'STRATA_SAMPLNG_RATIO', 'did you mean STRATA_SAMPLING_RATIO?');
    // nothing to warn about: no warning
    const none: string[] = [];
    load({ env: { STRATA_SAMPLING_RATIO: '0.5', STRATA_CONFIG: '' }, warn: (m) => none.push(m) });
    assert.deepEqual(none, []);
  });

  test('an unknown key inside a known section stays an error, beside ignored sections', () => {
    const warnings: string[] = [];
    const e = configError({ env: { STRATA_AGENT_CMD: 'x', STRATA_EXPORT_OTLP_ENDPONT: 'http://c:4318/v1/traces' }, warn: (m) => warnings.push(m) });
    assertMentions(e.message, 'unknown variable STRATA_EXPORT_OTLP_ENDPONT', 'did you mean STRATA_EXPORT_OTLP_ENDPOINT?');
    assert.ok(!e.message.includes('STRATA_AGENT_CMD'), e.message);
    assert.equal(warnings.length, 1);
    assertMentions(configError({ env: { STRATA_METRICS_BIND: '0.0.0.0' }, warn: () => {} }).message, 'unknown variable STRATA_METRICS_BIND');
  });

  test('Kubernetes service-link variables and STRATA_CONFIG are not settings', () => {
    const c = load({ env: { STRATA_SERVICE_HOST: '10.0.0.1', STRATA_SERVICE_PORT: '9464', STRATA_PORT: 'tcp://10.0.0.1:9464', STRATA_PORT_9464_TCP_ADDR: '10.0.0.1' } });
    assert.equal(c.metrics.port, 9464);
  });

  test('a malformed --set is a usage error', () => {
    assert.throws(() => parseAgentArgs(['--set', 'sampling.ratio']), (e: unknown) => e instanceof StrataError && e.code === STRATA_ERR_USAGE && e.exitCode === EXIT_USAGE);
    assert.throws(() => parseAgentArgs(['--nope']), (e: unknown) => e instanceof StrataError && e.exitCode === EXIT_USAGE);
  });
});

describe('config: the result', () => {
  test('is deeply frozen', () => {
    const c = load({ env: { OTEL_EXPORTER_OTLP_HEADERS: 'a=b' } });
    for (const o of [c, c.node, c.node.interfaces, c.export, c.export.otlp, c.export.otlp.headers, c.correlator.proxyComms, c.sampling]) {
      assert.ok(Object.isFrozen(o));
    }
    assert.throws(() => {
      (c.sampling as { ratio: number }).ratio = 0;
    }, TypeError);
    assert.throws(() => (c.correlator.proxyComms as string[]).push('x'), TypeError);
  });

  test('toAgentOptions maps every key onto AgentOptions', () => {
    const c = load({
      args: [
        '--node-name', 'n1', '--node-netns', '/run/netns/node', '--iface', 'eth0', '--traces-dir', '/tmp/t',
        '--set', 'export.otlp.headers=x-tenant=a', '--set', 'export.otlp.timeoutMs=1500',
        '--set', 'probes.sockPayloadBytes=128', '--set', 'correlator.graceMs=20', '--set', 'correlator.idleTimeoutS=5',
        '--set', 'sampling.ratio=0.5', '--metrics-port', '0', '--metrics-host', '127.0.0.1',
        '--set', 'discovery.namespaces=shop,web', '--set', 'discovery.labelSelector=tier in (front, back),!canary', '--set', 'discovery.unmappedVethGraceS=3',
        '--set', 'stitch.holdMs=250',
      ],
    });
    const pods = [{ name: 'p', namespace: 'default', uid: 'u', node: 'n1', ip: '10.0.0.2', netnsInode: 4026532000, hostVeth: 'veth1' }];
    const o = toAgentOptions(c, pods);
    assert.deepEqual(o, {
      nodeName: 'n1',
      pods,
      discovery: {
        // auto: no pods file, no kubeconfig, not in a cluster
        source: 'none', podsFile: null, kubeconfig: null,
        selection: { namespaces: ['shop', 'web'], excludeNamespaces: [], labelSelector: 'tier in (front, back),!canary' },
        traceProxies: true, unknownPods: 'ignore', procRoot: '/proc', cgroupRoot: '', podCgroupParent: '', procScanIntervalMs: 2000,
        maxProcesses: 65536, maxPods: 1024, maxOwners: 1024, resyncS: 300, startTimeoutMs: 5000,
        backoff: { initialMs: 800, maxMs: 30_000 }, unmappedVethGraceMs: 3000,
      },
      nodeNetns: '/run/netns/node',
      interfaces: ['eth0'],
      export: {
        otlp: { endpoint: 'http://localhost:4318/v1/traces', protocol: 'http/protobuf', headers: { 'x-tenant': 'a' }, timeoutMs: 1500 },
        files: { dir: '/tmp/t' },
      },
      exportQueue: { maxQueueSize: 8192, maxQueueBytes: 8 * 1024 * 1024, shedFromFill: 0.5, maxExportBatchSize: 512, scheduledDelayMillis: 500, exportTimeoutMillis: 30_000, maxConcurrentExports: 4 },
      maxResources: 256,
      routes: [],
      shedding: { cpuBudget: 0.5, keepRatio: 1, minKeepRatio: 0.001, intervalMs: 250, windowCpu: 0, windowPeriodMs: 10_000, windowDrainMs: 300, minOpenShare: 0.05 },
      disableFamilies: [],
      idleDetachS: 30,
      probes: { sockPayloadCap: 128, pktPayloadCap: 128, ringBytes: 4194304, wakeupBytes: 262144, syscallAttach: 'auto' },
      correlator: {
        graceNs: 20e6,
        idleNs: 5e9,
        maxConns: 65536,
        maxMessages: 65536,
        maxReady: 65536,
        lostQuietNs: 1e9,
        retainNs: 10e9,
        proxyComms: ['nginx', 'envoy', 'haproxy', 'traefik'],
        headerAllowList: ['x-request-id', 'user-agent', 'content-type'],
        redactHeaders: ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key'],
        sampling: { ratio: 0.5, slowThresholdMs: 500, keepErrors: true, respectParentSampled: true },
        maxHeldTraces: 4096,
        exportInvalid: false,
        stitch: { holdNs: 250e6, maxHeldTraces: 4096, maxMappings: 65536, mappingTtlNs: 5e9 },
      },
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      bpfRunStats: false,
    });
    // the options are the agent's own copies: mutating them leaves the frozen config alone
    o.interfaces.push('eth1');
    assert.deepEqual(c.node.interfaces, ['eth0']);
  });

  test('toAgentOptions: endpoint none means no OTLP exporter; jaeger when set', () => {
    const c = load({ args: ['--otlp-endpoint', 'none', '--set', 'export.jaeger.endpoint=http://jaeger:14268/api/traces'] });
    assert.deepEqual(toAgentOptions(c, []).export, { jaeger: { endpoint: 'http://jaeger:14268/api/traces' } });
  });
});
