// Records the raw ring-buffer batches of a real lab run into test/fixtures, for the replay tests
// of the decoder and correlator (no root needed to replay). Run as root: node scripts/capture-fixture.ts
import { writeFileSync } from 'node:fs';
import { curlFromClient, labDown, labUp } from '../lab/lab.ts';
import { Agent, monoNow } from '../agent/src/agent.ts';
import { readPodsFile } from '../agent/src/k8s/pods-file.ts';

const out = new URL('../test/fixtures/', import.meta.url);
const lab = await labUp({ prefix: 'capfx' });
try {
  const pods = readPodsFile(lab.podsFile);
  const agent = new Agent({ nodeName: 'node-1', pods, nodeNetns: `/run/netns/${lab.nodeNetns}`, interfaces: [lab.clientVeth], tracesDir: `${lab.stateDir}/traces` });
  const batches: Buffer[] = [];
  const decode = agent.decoder.decode.bind(agent.decoder);
  agent.decoder.decode = (b: Buffer) => {
    batches.push(Buffer.from(b));
    decode(b);
  };
  await agent.start();
  await curlFromClient(lab, `${lab.nginxUrl}/fx/with-context`, ['-H', 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']);
  await curlFromClient(lab, `${lab.nginxUrl}/fx/plain`);
  const deadline = Date.now() + 5000;
  while (agent.correlator.stats.spansEmitted < 6 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    agent.correlator.tick(monoNow());
  }
  // interfaces as the agent saw them: ifindex -> name (ifindex is per netns, the test needs them)
  const ifaces = (agent as unknown as { probes?: { attachments(): { ifname: string; ifindex: number }[] } }).probes?.attachments() ?? [];
  await agent.stop();
  // length-prefixed batches
  const frames = batches.map((b) => {
    const h = Buffer.alloc(4);
    h.writeUInt32LE(b.length);
    return Buffer.concat([h, b]);
  });
  writeFileSync(new URL('skeleton.batches', out), Buffer.concat(frames));
  writeFileSync(new URL('skeleton.meta.json', out), `${JSON.stringify({
    note: 'captured by scripts/capture-fixture.ts from a real lab run: two GETs through nginx to the app, the first with a traceparent',
    nodeName: 'node-1',
    pods,
    ifaces: ifaces.map((i) => ({ ifname: i.ifname, ifindex: i.ifindex })),
    app: { ip: lab.pods.app.ip, hostVeth: lab.pods.app.hostVeth },
    ingress: { ip: lab.pods.ingress.ip, hostVeth: lab.pods.ingress.hostVeth },
    clientVeth: lab.clientVeth,
  }, null, 2)}\n`);
  console.log(`captured ${batches.length} batches, ${agent.decoder.stats.records} records, ${agent.correlator.stats.spansEmitted} exchange spans`);
} finally {
  await labDown('capfx');
}
