#!/usr/bin/env node
// `strata` command line: agent | demo | version. Exit codes: README "Exit codes".
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Agent } from './agent.ts';
import { EXIT_CONFIG, EXIT_OK, EXIT_USAGE, STRATA_ERR_CONFIG, StrataError } from './errors.ts';
import { resolveOtlpTracesUrl } from './export/otlp.ts';
import { readPodsFile } from './k8s/pods-file.ts';

const USAGE = `usage: strata <command> [options]
  agent     run the agent
              --pods-file F      pods of this node (JSON, as the lab writes it)
              --node-name N      this node's name (default: hostname)
              --node-netns P     netns path holding the node's interfaces (default: own)
              --iface I          extra interface to observe (repeatable), e.g. the uplink
              --otlp-endpoint U  OTLP/HTTP traces URL, or none (default: OTEL_EXPORTER_OTLP_*,
                                 else http://localhost:4318/v1/traces)
              --traces-dir D     also write OTLP JSON + Jaeger JSON files into D
              --metrics-port P   serve /metrics /healthz /readyz on P (default 9464; 0 = any)
  demo      bring up the lab, trace a few requests, write ./traces, print them, tear down
  version   print the version`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function runAgent(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'pods-file': { type: 'string' },
      'node-name': { type: 'string' },
      'node-netns': { type: 'string', default: '' },
      iface: { type: 'string', multiple: true, default: [] },
      'otlp-endpoint': { type: 'string' },
      'traces-dir': { type: 'string' },
      'metrics-port': { type: 'string', default: '9464' },
      'metrics-host': { type: 'string', default: '0.0.0.0' },
    },
    strict: true,
  });
  const port = Number(values['metrics-port']);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new StrataError(STRATA_ERR_CONFIG, `--metrics-port: expected 0..65535, got "${values['metrics-port']}"`, EXIT_CONFIG);
  }
  const pods = values['pods-file'] ? readPodsFile(values['pods-file']) : [];
  // default: OTEL_EXPORTER_OTLP_* or Jaeger's OTLP/HTTP port on localhost; "none" turns it off
  const otlpOpt = values['otlp-endpoint'] ?? resolveOtlpTracesUrl();
  const otlpUrl = otlpOpt === 'none' ? undefined : otlpOpt;
  if (!otlpUrl && !values['traces-dir']) {
    throw new StrataError(STRATA_ERR_CONFIG, '--otlp-endpoint none needs --traces-dir: spans must go somewhere', EXIT_CONFIG);
  }
  const agent = new Agent({
    nodeName: values['node-name'] ?? (await import('node:os')).hostname(),
    pods,
    nodeNetns: values['node-netns'] ?? '',
    interfaces: values.iface ?? [],
    otlpUrl,
    tracesDir: values['traces-dir'],
    metricsPort: port,
    metricsHost: values['metrics-host'],
  });
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`strata: ${sig}: flushing and detaching\n`);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    await agent.stop();
    process.exit(EXIT_OK);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  try {
    await agent.start();
  } catch (e) {
    await agent.stop().catch(() => {});
    throw e;
  }
  // one machine-readable line for supervisors and tests
  process.stdout.write(`${JSON.stringify({ event: 'ready', metricsPort: agent.metricsPort, pid: process.pid })}\n`);
  return new Promise<number>(() => {}); // runs until a signal
}

async function main(): Promise<number> {
  const [cmd, ...rest] = process.argv.slice(2);
  switch (cmd) {
    case 'agent':
      return runAgent(rest);
    case 'demo': {
      const { runDemo } = await import('./demo.ts');
      return runDemo(rest);
    }
    case 'version':
    case '--version':
      process.stdout.write(`strata ${version()}\n`);
      return EXIT_OK;
    default:
      process.stderr.write(`${USAGE}\n`);
      return cmd === undefined || cmd === 'help' || cmd === '--help' ? EXIT_OK : EXIT_USAGE;
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Partial<StrataError> & Error;
    process.stderr.write(`strata: error${err.code ? ` [${err.code}]` : ''}: ${err.message}\n`);
    process.exit(err.exitCode ?? (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? EXIT_USAGE : 1));
  },
);
