// node lab/cli.ts up|down|status [--prefix P] [--state-dir D]     the one-node lab
// node lab/cli.ts cluster up|down|status|fault ...                 the cluster lab (lab/cluster/cli.ts)
import { parseArgs } from 'node:util';
import { clusterMain } from './cluster/cli.ts';
import { DEFAULT_PREFIX, defaultStateDir, labDown, labUp, loadLab } from './lab.ts';
import { listLabNetns } from './netns.ts';
import { isAlive, readProcRecords } from './procs.ts';

async function main(): Promise<number> {
  if (process.argv[2] === 'cluster') return clusterMain(process.argv.slice(3));
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      prefix: { type: 'string', default: DEFAULT_PREFIX },
      'state-dir': { type: 'string' },
    },
  });
  const prefix = values.prefix;
  const stateDir = values['state-dir'] ?? defaultStateDir(prefix);
  const started = performance.now();
  const took = () => `${Math.round(performance.now() - started)} ms`;
  switch (positionals[0]) {
    case 'up': {
      const lab = await labUp({ prefix, stateDir });
      console.log(JSON.stringify(lab, null, 2));
      console.error(`lab ${prefix} up in ${took()}`);
      return 0;
    }
    case 'down':
      await labDown(prefix, { stateDir });
      console.error(`lab ${prefix} down in ${took()}`);
      return 0;
    case 'status': {
      const procs = readProcRecords(stateDir).map((p) => ({ ...p, alive: isAlive(p.pid, p.starttime) }));
      const netns = listLabNetns(prefix);
      const healthy = loadLab(prefix, { stateDir }) !== undefined && procs.length > 0 && procs.every((p) => p.alive);
      console.log(JSON.stringify({ prefix, stateDir, healthy, netns, procs }, null, 2));
      return healthy ? 0 : 1;
    }
    default:
      console.error('usage: node lab/cli.ts up|down|status [--prefix P] [--state-dir D]\n       node lab/cli.ts cluster up|down|status|fault ... (node lab/cli.ts cluster --help)');
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const code = (e as { code?: unknown }).code;
    console.error(e instanceof Error ? `${typeof code === 'string' && code.startsWith('STRATA_') ? `${code}: ` : ''}${e.message}` : e);
    process.exit(1);
  },
);
