// Records the raw ring-buffer batches of a real lab run, for replay: test/fixtures (decoder and
// correlator tests, no root needed to replay) and bench/correlator.ts (throughput on real events).
// Run as root: node scripts/capture-fixture.ts [--name skeleton] [--scenario basic|http] [--requests 0] [--dir test/fixtures]
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { curlFromClient, labDown, labUp, pipelineFromClient, runClient } from '../lab/lab.ts';
import { Agent, monoNow } from '../agent/src/agent.ts';
import { defaultConfig, toAgentOptions } from '../agent/src/config/index.ts';
import { readPodsFile } from '../agent/src/k8s/pods-file.ts';

export interface Capture {
  batches: number;
  records: number;
  spans: number;
}

/**
 * Two GETs through NGINX to the app (the first with a traceparent), then `requests` more over
 * 16 keep-alive connections; writes <dir>/<name>.batches (length-prefixed) and <name>.meta.json.
 */
export async function captureLab(dir: string, name: string, requests = 0, scenario: 'basic' | 'http' = 'basic', prefix = 'capfx'): Promise<Capture> {
  const lab = await labUp({ prefix });
  try {
    const pods = readPodsFile(lab.podsFile);
    const agent = new Agent({ ...toAgentOptions(defaultConfig(), pods), export: { files: { dir: `${lab.stateDir}/traces` } }, nodeName: 'node-1', pods, nodeNetns: `/run/netns/${lab.nodeNetns}`, interfaces: [lab.clientVeth] });
    const batches: Buffer[] = [];
    const decode = agent.decoder.decode.bind(agent.decoder);
    agent.decoder.decode = (b: Buffer) => {
      batches.push(Buffer.from(b));
      decode(b);
    };
    await agent.start();
    await curlFromClient(lab, `${lab.nginxUrl}/fx/with-context`, ['-H', 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']);
    await curlFromClient(lab, `${lab.nginxUrl}/fx/plain`);
    let want = 6;
    if (scenario === 'http') {
      // the traffic shapes of issue 3, through real NGINX and upstreams
      const upload = `${lab.stateDir}/upload.bin`;
      writeFileSync(upload, Buffer.alloc(1 << 20, 0x61));
      await pipelineFromClient(lab, lab.nginxUrl, ['/fx/pipe/1', '/fx/pipe/2', '/fx/pipe/3']);
      await curlFromClient(lab, `${lab.nginxUrl}/chunked/5`);
      await curlFromClient(lab, `${lab.nginxUrl}/fx/upload`, ['-X', 'POST', '--data-binary', `@${upload}`]);
      await curlFromClient(lab, `${lab.nginxUrl}/h10/fx`);
      await curlFromClient(lab, `${lab.nginxUrl}/fx/b3`, ['-H', 'b3: 0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1']);
      await curlFromClient(lab, `${lab.nginxUrl}/svc/fx`);
      want += 8 * 3;
    }
    if (requests > 0) {
      const paths = Array.from({ length: requests }, (_, i) => (i % 10 === 9 ? `/chunked/3?i=${i}` : `/load/${i}`));
      await runClient(lab, { paths, concurrency: 16, keepalive: true });
    }
    want += requests * 3;
    const deadline = Date.now() + 15_000;
    while (agent.correlator.stats.spansEmitted < want && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      agent.correlator.tick(monoNow());
    }
    // interfaces as the agent saw them: ifindex -> name (ifindex is per netns, replay needs them)
    const ifaces = (agent as unknown as { probes?: { attachments(): { ifname: string; ifindex: number }[] } }).probes?.attachments() ?? [];
    const spans = agent.correlator.stats.spansEmitted;
    await agent.stop();
    const frames = batches.map((b) => {
      const h = Buffer.alloc(4);
      h.writeUInt32LE(b.length);
      return Buffer.concat([h, b]);
    });
    writeFileSync(join(dir, `${name}.batches`), Buffer.concat(frames));
    writeFileSync(join(dir, `${name}.meta.json`), `${JSON.stringify({
      note: `captured by scripts/capture-fixture.ts from a real lab run: two GETs through nginx to the app (the first with a traceparent)${requests ? ` and ${requests} more on 16 keep-alive connections` : ''}`,
      nodeName: 'node-1',
      pods,
      ifaces: ifaces.map((i) => ({ ifname: i.ifname, ifindex: i.ifindex })),
      app: { ip: lab.pods.app.ip, hostVeth: lab.pods.app.hostVeth },
      ingress: { ip: lab.pods.ingress.ip, hostVeth: lab.pods.ingress.hostVeth },
      clientVeth: lab.clientVeth,
    }, null, 2)}\n`);
    return { batches: batches.length, records: agent.decoder.stats.records, spans };
  } finally {
    await labDown(prefix);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      name: { type: 'string', default: 'skeleton' },
      requests: { type: 'string', default: '0' },
      dir: { type: 'string', default: 'test/fixtures' },
      scenario: { type: 'string', default: 'basic' },
    },
  });
  const c = await captureLab(resolve(values.dir ?? 'test/fixtures'), values.name ?? 'skeleton', Number(values.requests), values.scenario === 'http' ? 'http' : 'basic');
  console.log(`captured ${c.batches} batches, ${c.records} records, ${c.spans} exchange spans`);
}
