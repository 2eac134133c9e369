// Hop spans cover a message from its first to its last byte at each observation point, on the
// real kernel: the one-node lab (nginx ingress pod, app pod), the agent as a child process, and a
// ~200 KiB response from the app. With a tbf rate limit on the app pod's eth0 (what it sends) the
// qdisc span of that device grows by about the transfer time the rate implies; the hop spans at
// the other devices of the response path do not; without the limit all of them are short.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inNetns, runClient } from '../../lab/lab.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { chain, KIND_INTERNAL, LabTracing, type Row } from '../helpers/lab-tracing.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);

const SIZE = 200 * 1024;
const RATE_BIT = 4_000_000;
const BURST = 4096;
const ROUNDS = 3;

const ms = (r: Row) => Number(r.span.endTimeUnixNano - r.span.startTimeUnixNano) / 1e6;

describe('hop spans from first to last byte (tbf on a pod eth0)', { skip: why }, () => {
  const lt = new LabTracing('shs');
  let limited = false;
  let seq = 0;

  before(() => lt.up());
  after(async () => {
    if (limited) await inNetns(lt.lab.pods.app.netns, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root']).catch(() => {});
    await lt.down();
  });

  /** the response hops (app -> nginx) of ROUNDS ~200 KiB requests, by span name: durations in ms */
  async function responseHops(): Promise<Map<string, number[]>> {
    const out = new Map<string, number[]>();
    for (let i = 0; i < ROUNDS; i++) {
      const path = `/big/${SIZE + seq++}`;
      const res = await runClient(lt.lab, { paths: [path] });
      assert.equal(res[0]?.status, 200);
      const t = await lt.tree(path, { hops: 12 });
      const { upstream } = chain(t);
      for (const r of t) {
        if (r.span.kind !== KIND_INTERNAL || r.span.parentSpanId !== upstream.span.spanId || r.span.attributes['strata.direction'] !== 'response') continue;
        const l = out.get(r.span.name) ?? [];
        l.push(ms(r));
        out.set(r.span.name, l);
      }
      console.log(path, t.map((r) => `${r.service} ${r.span.name} ${ms(r).toFixed(2)}`).join('\n  '));
    }
    return out;
  }

  test('the limited device holds the message; the others do not', async () => {
    const base = await responseHops();
    await inNetns(lt.lab.pods.app.netns, 'tc', ['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', `${RATE_BIT}bit`, 'burst', `${BURST}`, 'limit', '1mb']);
    limited = true;
    const slow = await responseHops();
    console.log(base, slow);
  });
});
