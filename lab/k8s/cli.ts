// node lab/k8s/cli.ts apiserver|node|down|status [--slot N] [--image]
//   apiserver   etcd + kube-apiserver; prints slot, kubeconfig paths, timings (JSON), leaves it running
//   node        the full single-node cluster (--image: also imports scripts/image.sh's strata:dev
//               and strata-lab/nginx:dev)
//   down        tears a slot down (--slot N; without it every slot whose owner is gone, and every
//               slot the CLI started)
//   status      the slots in use
//   reap        (started by cluster.ts for a test's cluster) waits for --pid to die, then tears
//               --slot down, unless it was stopped already: a killed test leaves nothing running
// A cluster started here lives until `down` (tests' clusters die with their process).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { down, reap, slotsInUse, startApiServer, startNode, sweepStale } from './cluster.ts';

const IMAGE_SH = fileURLToPath(new URL('../../scripts/image.sh', import.meta.url));

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { slot: { type: 'string' }, image: { type: 'boolean', default: false }, pid: { type: 'string' }, starttime: { type: 'string' } },
  });
  const slot = values.slot === undefined ? undefined : Number(values.slot);
  const log = (s: string) => console.error(s);
  switch (positionals[0]) {
    case 'apiserver': {
      const c = await startApiServer({ slot, persistent: true, log });
      console.log(JSON.stringify({ slot: c.slot, server: c.server, kubeconfigs: c.kubeconfigs, stateDir: c.stateDir, timings: c.timings }, null, 2));
      return 0;
    }
    case 'node': {
      const c = await startNode({ slot, persistent: true, log });
      for (const target of values.image ? ['agent', 'nginx'] : []) {
        const archive = execFileSync('bash', [IMAGE_SH, target], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n').pop() as string;
        await c.importImage(archive);
      }
      console.log(JSON.stringify({
        slot: c.slot, server: c.server, node: c.nodeName, nodeIP: c.net.nodeIP, podSubnet: c.net.podSubnet,
        kubeconfigs: c.kubeconfigs, containerd: c.containerdSocket, stateDir: c.stateDir, timings: c.timings,
      }, null, 2));
      return 0;
    }
    case 'down': {
      if (slot !== undefined) {
        const problems = await down(slot);
        for (const p of problems) console.error(p);
        return problems.length ? 1 : 0;
      }
      await sweepStale(log);
      let failed = false;
      for (const l of slotsInUse().filter((x) => x.pid === 0)) {
        const problems = await down(l.slot);
        for (const p of problems) console.error(`slot ${l.slot}: ${p}`);
        failed ||= problems.length > 0;
      }
      return failed ? 1 : 0;
    }
    case 'reap':
      if (slot === undefined || values.pid === undefined || values.starttime === undefined) return 2;
      await reap(slot, Number(values.pid), Number(values.starttime));
      return 0;
    case 'status':
      console.log(JSON.stringify(slotsInUse(), null, 2));
      return 0;
    default:
      console.error('usage: node lab/k8s/cli.ts apiserver|node|down|status [--slot N] [--image]');
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  },
);
