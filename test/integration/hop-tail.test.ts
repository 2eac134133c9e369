// Hop spans cover a message from its first to its last byte at each observation point, on the
// real kernel: the one-node lab (nginx ingress pod, app pod), the agent as a child process, and a
// ~200 KiB response from the app. With a tbf rate limit on the app pod's eth0 (what it sends) the
// hops across that device (into it, its qdisc, out of it) grow by about the transfer time the rate
// implies, most of it out of the device; the hop spans at the other devices of the response path
// do not; without the limit all of them are short.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { inNetns, runClient } from '../../lab/lab.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { assertNested, chain, KIND_INTERNAL, LabTracing, type Row } from '../helpers/lab-tracing.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);

const SIZE = 200 * 1024;
/** 4 Mbit/s: ~420 ms for the response, far above what the path takes without the limit (~1 ms) */
const RATE_BIT = 4_000_000;
const BURST = 4096;
const ROUNDS = 3;
/** TCP payload per segment on the lab's 1500-byte veths (timestamps on), and what tbf counts per segment besides */
const MSS = 1448;
const OVERHEAD = 14 + 20 + 32;
const LIMITED = 'response frontend eth0';
/**
 * The hop from the app's socket into the limited device. TCP only hands the device what its
 * congestion window allows, and ACKs come back at the limited rate: early in a round the last
 * byte can reach the device tens of ms after the first (measured: 43 of 421 ms once), so the
 * transfer time splits between this hop and the hops out of the device.
 */
const INTO_LIMITED = 'response frontend -> frontend eth0';
const acrossLimited = (name: string) => name.startsWith(`${LIMITED} `) || name === INTO_LIMITED;

const ms = (r: Row) => Number(r.span.endTimeUnixNano - r.span.startTimeUnixNano) / 1e6;
const max = (xs: number[]) => Math.max(...xs);

describe('hop spans from first to last byte (tbf on a pod eth0)', { skip: why }, () => {
  const lt = new LabTracing('shs');
  let limited = false;
  let seq = 0;

  before(() => lt.up());
  after(async () => {
    if (limited) await inNetns(lt.lab.pods.app.netns, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root']).catch(() => {});
    await lt.down();
  });

  /**
   * ROUNDS requests for ~200 KiB through nginx: the app's response hops (under nginx's upstream
   * CLIENT span) by span name, durations in ms; every span of each trace inside its parent.
   */
  async function responseHops(): Promise<{ hops: Map<string, number[]>; upstream: number[] }> {
    const hops = new Map<string, number[]>();
    const upstreams: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const path = `/big/${SIZE + seq++}`;
      const res = await runClient(lt.lab, { paths: [path] });
      assert.equal(res[0]?.status, 200);
      const t = await lt.tree(path, { hops: 12 });
      assertNested(t);
      const { upstream } = chain(t);
      upstreams.push(ms(upstream));
      for (const r of t) {
        if (r.span.kind !== KIND_INTERNAL || r.span.parentSpanId !== upstream.span.spanId || r.span.attributes['strata.direction'] !== 'response') continue;
        const l = hops.get(r.span.name) ?? [];
        l.push(ms(r));
        hops.set(r.span.name, l);
      }
    }
    return { hops, upstream: upstreams };
  }

  /** per round, the time the hops that pass names accept took, summed */
  const sumOf = (hops: Map<string, number[]>, pass: (name: string) => boolean) =>
    Array.from({ length: ROUNDS }, (_, i) => [...hops].filter(([n]) => pass(n)).reduce((a, [, d]) => a + (d[i] ?? 0), 0));
  /** the hops into and out of the limited device (into it, its qdisc span, to its host veth) */
  const atLimited = (hops: Map<string, number[]>) => sumOf(hops, acrossLimited);
  /** the hops out of it only */
  const outOfLimited = (hops: Map<string, number[]>) => sumOf(hops, (n) => n.startsWith(`${LIMITED} `));

  test('the limited device holds the message for its transfer time; the other devices do not; without the limit all are short', async () => {
    const base = await responseHops();
    await inNetns(lt.lab.pods.app.netns, 'tc', ['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', `${RATE_BIT}bit`, 'burst', `${BURST}`, 'limit', '1mb']);
    limited = true;
    const slow = await responseHops();
    await inNetns(lt.lab.pods.app.netns, 'tc', ['qdisc', 'del', 'dev', 'eth0', 'root']);
    limited = false;

    // what the rate implies: the body's segments with their headers, less the burst tbf lets through at once
    const expected = ((Math.ceil(SIZE / MSS) * (MSS + OVERHEAD) - BURST) * 8 / RATE_BIT) * 1e3;
    // nothing can cross the limit faster than the body alone, less the burst
    const floor = ((SIZE - BURST) * 8 / RATE_BIT) * 1e3;
    // the noise of this machine now: the longest response hop without the limit
    const baseMax = max([...base.hops.values()].flat());
    const tolerance = 0.1 * expected + 5 * baseMax;
    const report = (h: Map<string, number[]>) => [...h].map(([n, d]) => `${n}: ${d.map((x) => x.toFixed(2)).join('/')}`).join('; ');
    const ctx = `expected ${expected.toFixed(1)} ms (floor ${floor.toFixed(1)}), tolerance ${tolerance.toFixed(1)} ms; base: ${report(base.hops)}; limited: ${report(slow.hops)}`;
    console.log(ctx);

    // without the limit: every hop far below the transfer time the limit implies (the hop into
    // nginx's socket is nginx's own reading pace: up to 25 ms measured on a loaded machine)
    assert.ok(baseMax < expected / 5, `without the limit every response hop is short: ${ctx}`);
    // with it: the hops across the limited device grow by the transfer time, each round
    const grown = atLimited(slow.hops).map((d, i) => d - (atLimited(base.hops)[i] ?? 0));
    for (const g of grown) {
      assert.ok(g >= floor - 5 * baseMax && g <= expected + tolerance, `the limited device's hops grew ${g.toFixed(1)} ms: ${ctx}`);
    }
    // most of it in the hops out of the device, where the queue is (TCP's window holds back the rest)
    for (const o of outOfLimited(slow.hops)) assert.ok(o >= floor / 2, `the hops out of the limited device took ${o.toFixed(1)} ms: ${ctx}`);
    // and the hops at every other device do not
    for (const [name, d] of slow.hops) {
      if (acrossLimited(name)) continue;
      assert.ok(max(d) <= 5 * baseMax + 0.05 * expected, `${name} stays short with the limit: ${ctx}`);
    }
    assert.ok([...slow.hops.keys()].some((n) => !acrossLimited(n)), 'hops at other devices were seen');
    assert.ok(slow.hops.has(INTO_LIMITED), `the hop into the limited device was seen: ${ctx}`);
    // the upstream CLIENT span, which holds them, took the transfer time too
    for (const u of slow.upstream) assert.ok(u >= floor, `upstream CLIENT ${u.toFixed(1)} ms`);
  });
});
