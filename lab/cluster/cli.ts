// node lab/cli.ts cluster up|down|status|fault ... (README: "Cluster lab")
import { parseArgs } from 'node:util';
import { LabError, STRATA_ERR_LAB_ABORTED, STRATA_ERR_LAB_TEARDOWN } from '../errors.ts';
import { DEFAULT_PREFIX, defaultStateDir } from '../lab.ts';
import { listLabNetns } from '../netns.ts';
import { isAlive, readProcRecords } from '../procs.ts';
import { applyFault, clearFaults, clusterDown, clusterUp, DEFAULT_TOPOLOGY, loadCluster, requireCluster } from './cluster.ts';

export const CLUSTER_USAGE = `usage: node lab/cli.ts cluster <command> [--prefix P] [--state-dir D]
  up     [--topology FILE] [--otlp-endpoint http://127.0.0.1:PORT]
         builds the cluster (default topology ${DEFAULT_TOPOLOGY}); prints its description (JSON)
  down   removes everything with the prefix (also what a crashed or interrupted run left)
  status prints the description, the processes and whether they are alive; exit 1 if not healthy
  fault  --pod NAMESPACE/NAME | --node NODE  (--rate 1mbit [--burst 4kb] [--where eth0|veth] | --delay-ms N)
         puts a fault in force: a tbf rate limit on the pod's eth0 (what it sends) or its host veth
         (what it receives) or the node's uplink; or a handler delay
  fault  --clear [--pod NAMESPACE/NAME | --node NODE]   lifts faults (all, or on one target)`;

/** Runs `cluster ...` with its arguments (after the word cluster); resolves with the exit code. */
export async function clusterMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      prefix: { type: 'string', default: DEFAULT_PREFIX },
      'state-dir': { type: 'string' },
      topology: { type: 'string' },
      'otlp-endpoint': { type: 'string' },
      pod: { type: 'string' },
      node: { type: 'string' },
      rate: { type: 'string' },
      burst: { type: 'string' },
      where: { type: 'string' },
      'delay-ms': { type: 'string' },
      clear: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const prefix = values.prefix;
  const stateDir = values['state-dir'] ?? defaultStateDir(prefix);
  const started = performance.now();
  const took = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
  const log = (line: string) => console.error(`[cluster ${prefix}] ${line}`);
  if (values.help) {
    console.log(CLUSTER_USAGE);
    return 0;
  }
  switch (positionals[0]) {
    case 'up': {
      const ctl = new AbortController();
      // Ctrl-C or SIGTERM while building: stop at the next step, reap everything, exit 130/143
      let signalled: NodeJS.Signals | undefined;
      const onSignal = (sig: NodeJS.Signals) => {
        if (signalled) return;
        signalled = sig;
        log(`${sig}: stopping and removing what was built`);
        ctl.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const c = await clusterUp({ prefix, stateDir, topology: values.topology, otlpEndpoint: values['otlp-endpoint'], signal: ctl.signal, log });
        console.log(JSON.stringify(c, null, 2));
        log(`up in ${took()}; description ${stateDir}/cluster.json`);
        return 0;
      } catch (e) {
        if (signalled && e instanceof LabError && e.code === STRATA_ERR_LAB_ABORTED) {
          log(`interrupted; removed in ${took()}`);
          return signalled === 'SIGINT' ? 130 : 143;
        }
        throw e;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    }
    case 'down': {
      // a signal must not leave half a teardown: finish it
      const hold = () => log('finishing the teardown first');
      process.on('SIGINT', hold);
      process.on('SIGTERM', hold);
      try {
        await clusterDown(prefix, { stateDir });
      } catch (e) {
        throw new LabError(STRATA_ERR_LAB_TEARDOWN, (e as Error).message);
      }
      log(`down in ${took()}`);
      return 0;
    }
    case 'status': {
      const c = loadCluster(prefix, { stateDir });
      const procs = readProcRecords(stateDir).map((p) => ({ ...p, alive: isAlive(p.pid, p.starttime) }));
      const healthy = c !== undefined && procs.length > 0 && procs.every((p) => p.alive);
      console.log(JSON.stringify({ prefix, stateDir, healthy, netns: listLabNetns(prefix), procs, cluster: c }, null, 2));
      return healthy ? 0 : 1;
    }
    case 'fault': {
      const c = requireCluster(prefix, { stateDir });
      const target = { ...(values.pod ? { pod: values.pod } : {}), ...(values.node ? { node: values.node } : {}) };
      if (values.clear) {
        const lifted = await clearFaults(c, values.pod || values.node ? target : undefined);
        console.log(JSON.stringify({ lifted, inForce: c.faults }, null, 2));
        return 0;
      }
      const spec = {
        ...target,
        ...(values.rate !== undefined ? { rate: values.rate } : {}),
        ...(values.burst !== undefined ? { burst: values.burst } : {}),
        ...(values.where !== undefined ? { where: values.where } : {}),
        ...(values['delay-ms'] !== undefined ? { delayMs: Number(values['delay-ms']) } : {}),
      };
      const f = await applyFault(c, spec);
      console.log(JSON.stringify({ applied: f, inForce: c.faults }, null, 2));
      return 0;
    }
    default:
      console.error(CLUSTER_USAGE);
      return 2;
  }
}
