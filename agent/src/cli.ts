#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=20
// `strata` command line: agent | demo | check | version. Exit codes: README "Exit codes".
// Each command imports what it needs when it runs: `check` and `version` start without the
// configuration schema, YAML and pods-file modules (seconds under emulation, see scripts/vm.sh).
import { readFileSync } from 'node:fs';
import type { StrataConfig } from './config/index.ts';
import {
  EXIT_CONFIG,
  EXIT_OK,
  EXIT_UNEXPECTED,
  EXIT_USAGE,
  STRATA_ERR_CONFIG,
  STRATA_ERR_PODS_FILE,
  STRATA_ERR_SHUTDOWN_TIMEOUT,
  STRATA_ERR_USAGE,
  StrataError,
} from './errors.ts';
import type { PodEntry } from './k8s/pods-file.ts';

const USAGE = `usage: strata <command> [options]
  agent     run the agent (strata agent --help: flags and every configuration key)
  demo      bring up the 4-node cluster lab with one agent per node, trace requests with and
            without headers, write ./traces, print two traces as waterfalls, tear down
  check     preflight: kernel, BTF, tracefs, capabilities, which probes attach here
  report    where the time went in a directory of traces: by layer, node and hop (p50/p99)
  version   print the version
Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 configuration, 4 a required probe could not
load or attach, 5 \`check\` found a required piece missing.`;

const agentUsage = (configHelp: () => string) => `usage: strata agent [--config FILE] [--set section.key=value]... [flags]
  --config F         YAML configuration file (default: $STRATA_CONFIG; in a cluster, a ConfigMap)
  --set K=V          set one key, e.g. --set sampling.ratio=0.1 (repeatable)
  --pods-file F      = --set discovery.podsFile=F    pods of this node (JSON, as the lab writes it)
  --node-name N      = --set node.name=N
  --node-netns P     = --set node.netns=P            netns path holding the node's interfaces
  --iface I          = node.interfaces (repeatable)  extra interface to observe, e.g. the uplink
  --otlp-endpoint U  = --set export.otlp.endpoint=U  OTLP traces URL, or none
  --traces-dir D     = --set export.files.dir=D      also write OTLP JSON + Jaeger JSON files into D
  --metrics-port P   = --set metrics.port=P          /metrics /healthz /readyz (0 = any port)
  --metrics-host H   = --set metrics.host=H
  --print-config     print the effective configuration (YAML, header values hidden) and exit

Precedence, lowest first: defaults < file < OTEL_EXPORTER_OTLP_{ENDPOINT,TRACES_ENDPOINT,PROTOCOL,
HEADERS,TIMEOUT} < STRATA_<SECTION>_<KEY> variables < flags. Unknown keys are errors.
Prints {"event":"ready",...} on stdout once attached; SIGTERM/SIGINT flush, detach and exit 0
(exit 1 when that takes longer than shutdown.timeoutS).

Keys (default; allowed; variable, flag):
${configHelp()}`;

const DEMO_USAGE = `usage: strata demo [--traces-dir D] [--prefix P] [--requests N] [--topology FILE] [--all-spans]
       strata demo --single-node [--traces-dir D] [--prefix P]
  Brings up the cluster lab (lab/cluster.yaml: 4 nodes, VXLAN, one OVS bridge, NGINX ingress, the
  HotROD-style app plain and instrumented), runs one agent per node, sends N dispatch requests
  (default 2) per app, writes D (default ./traces: otlp-traces.json, jaeger-traces.json for Jaeger
  UI's Upload JSON), prints one trace per mode as a waterfall with the time per layer and per node,
  and tears everything down (also on Ctrl-C: exit 130). --prefix names the lab's namespaces,
  cgroups and state (default strata). --all-spans prints every hop span instead of one
  line per hop chain. --single-node: the one-node lab demo (client, NGINX pod, app pod).
  OTEL_EXPORTER_OTLP_ENDPOINT (and the other OTEL_EXPORTER_OTLP_* / STRATA_EXPORT_* variables)
  also sends every span to a collector. Needs root and scripts/setup.sh.`;

const REPORT_USAGE = `usage: strata report <traces-dir> [--json] [--hops N]
  Reads <traces-dir>/jaeger-traces.json (what the agent writes with export.files.dir, and the
  demo's ./traces) and prints, over its traces, how each root's time split between application,
  proxy, network and other time (p50/p99), the network time per node and the slowest hops.
  --json prints the same as one JSON object; --hops N shows N hops (default 12).`;

async function runReport(argv: string[]): Promise<number> {
  const { parseArgs } = await import('node:util');
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean', default: false }, hops: { type: 'string', default: '12' } } });
  } catch (e) {
    throw new StrataError(STRATA_ERR_USAGE, `report: ${(e as Error).message}\n${REPORT_USAGE}`, EXIT_USAGE);
  }
  const hops = Number(parsed.values.hops);
  if (parsed.positionals.length !== 1 || !Number.isInteger(hops) || hops < 0) throw new StrataError(STRATA_ERR_USAGE, REPORT_USAGE, EXIT_USAGE);
  const { buildReport, formatReport, readTraces } = await import('./report.ts');
  const r = buildReport(readTraces(parsed.positionals[0] as string));
  process.stdout.write(parsed.values.json ? `${JSON.stringify({ ...r, hops: r.hops.slice(0, hops) })}\n` : formatReport(r, hops));
  return EXIT_OK;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const wantsHelp = (argv: string[]) => argv.includes('--help') || argv.includes('-h');

async function readPods(path: string): Promise<PodEntry[]> {
  const { readPodsFile } = await import('./k8s/pods-file.ts');
  try {
    return readPodsFile(path);
  } catch (e) {
    const err = e as Error & { code?: string };
    throw new StrataError(err.code ?? STRATA_ERR_PODS_FILE, err.message, EXIT_CONFIG, { key: 'discovery.podsFile', file: path });
  }
}

async function printableConfig(c: StrataConfig): Promise<string> {
  const { stringify } = await import('yaml');
  const headers = Object.fromEntries(Object.keys(c.export.otlp.headers).map((k) => [k, '***']));
  const jaeger = c.export.jaeger.endpoint?.replace(/\/\/[^/@\s]+@/, '//***@') ?? null;
  return stringify({ ...c, export: { ...c.export, otlp: { ...c.export.otlp, headers }, jaeger: { endpoint: jaeger } } });
}

async function runAgent(argv: string[]): Promise<number> {
  const { configHelp, loadConfig, parseAgentArgs, toAgentOptions } = await import('./config/index.ts');
  const args = parseAgentArgs(argv);
  if (args.help) {
    process.stdout.write(`${agentUsage(configHelp)}\n`);
    return EXIT_OK;
  }
  const config = loadConfig({ file: args.configFile, flags: args.settings });
  if (args.printConfig) {
    process.stdout.write(await printableConfig(config));
    return EXIT_OK;
  }
  const pods = config.discovery.podsFile !== null ? await readPods(config.discovery.podsFile) : [];
  // imported here: the OpenTelemetry SDK behind it costs most of the start-up of other commands
  const { Agent } = await import('./agent.ts');
  let agent: InstanceType<typeof Agent>;
  try {
    agent = new Agent(toAgentOptions(config, pods));
  } catch (e) {
    // the constructor only builds from the configuration (exporters): what it rejects is a setting
    if (e instanceof StrataError) throw e;
    throw new StrataError(STRATA_ERR_CONFIG, `the configuration cannot be applied: ${(e as Error).message}`, EXIT_CONFIG);
  }
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    const limitS = config.shutdown.timeoutS;
    process.stderr.write(`strata: ${sig}: flushing and detaching (at most ${limitS} s)\n`);
    // not unref'd: it also keeps the process alive while stop() waits on nothing else
    setTimeout(() => {
      process.stderr.write(`strata: error [${STRATA_ERR_SHUTDOWN_TIMEOUT}]: flushing and detaching took longer than shutdown.timeoutS = ${limitS} s; detaching now and exiting\n`);
      agent.detachNow();
      process.exit(EXIT_UNEXPECTED);
    }, limitS * 1000);
    try {
      await agent.stop();
    } catch (e) {
      process.stderr.write(`strata: error: stopping: ${(e as Error).message}\n`);
      process.exit(EXIT_UNEXPECTED);
    }
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
  process.stdout.write(`${JSON.stringify({ event: 'ready', metricsPort: agent.metricsPort, pid: process.pid, probes: Object.fromEntries(agent.families().map((f) => [f.name, f.variant])) })}\n`);
  return new Promise<number>(() => {}); // runs until a signal
}

async function main(): Promise<number> {
  const [cmd, ...rest] = process.argv.slice(2);
  switch (cmd) {
    case 'agent':
      return runAgent(rest);
    case 'demo': {
      if (wantsHelp(rest)) {
        process.stdout.write(`${DEMO_USAGE}\n`);
        return EXIT_OK;
      }
      const { runDemo } = await import('./demo.ts');
      return runDemo(rest);
    }
    case 'check': {
      const { CHECK_USAGE, runCheckCommand } = await import('./check.ts');
      if (wantsHelp(rest)) {
        process.stdout.write(`${CHECK_USAGE}\n`);
        return EXIT_OK;
      }
      return runCheckCommand(rest);
    }
    case 'report':
      if (wantsHelp(rest)) {
        process.stdout.write(`${REPORT_USAGE}\n`);
        return EXIT_OK;
      }
      return runReport(rest);
    case 'version':
    case '--version':
      if (wantsHelp(rest)) {
        process.stdout.write('usage: strata version\n  prints the version\n');
        return EXIT_OK;
      }
      process.stdout.write(`strata ${version()}\n`);
      return EXIT_OK;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return EXIT_OK;
    default:
      throw new StrataError(STRATA_ERR_USAGE, `unknown command "${cmd}"\n${USAGE}`, EXIT_USAGE);
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const err = e as Partial<StrataError> & Error;
    const code = typeof err.code === 'string' ? err.code : undefined;
    let exit = err.exitCode;
    if (exit === undefined) exit = code === STRATA_ERR_PODS_FILE ? EXIT_CONFIG : code?.startsWith('ERR_PARSE_ARGS') ? EXIT_USAGE : EXIT_UNEXPECTED;
    // an unexpected error is a bug: its stack is what a report needs
    const text = exit === EXIT_UNEXPECTED && err.stack ? err.stack : err.message;
    process.stderr.write(`strata: error${code ? ` [${code}]` : ''}: ${text}\n`);
    if (exit === EXIT_USAGE && code !== STRATA_ERR_USAGE) process.stderr.write(`${USAGE}\n`);
    process.exit(exit);
  },
);
