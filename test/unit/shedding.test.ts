// The load-shedding controller (agent/src/probes/shedding.ts): what it writes to the kernel's
// sampling map as the agent's CPU use moves around its budget. CPU and time are injected.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LoadShedder, type SheddingOptions } from '../../agent/src/probes/shedding.ts';

function rig(opts: Partial<SheddingOptions> = {}) {
  const o: SheddingOptions = { cpuBudget: 0.2, keepRatio: 1, minKeepRatio: 0.01, intervalMs: 1000, warmupMs: 0, smoothing: 1, ...opts };
  let cpuUs = 0;
  let ms = 0;
  let lost = 0;
  const writes: { shed: number; gen: number }[] = [];
  const s = new LoadShedder(o, (shed, gen) => writes.push({ shed, gen }), () => lost, () => cpuUs, () => ms);
  /** one interval during which the agent used `cores` of CPU (and lost `loss` events) */
  const interval = (cores: number, loss = 0) => {
    cpuUs += cores * 1000 * 1000;
    ms += 1000;
    lost += loss;
    s.tick();
  };
  return { s, writes, interval };
}

describe('load shedding controller', () => {
  test('below budget nothing is shed and the kernel map is never written', () => {
    const { s, writes, interval } = rig();
    for (let i = 0; i < 5; i++) interval(0.1);
    assert.equal(s.state.keepRatio, 1);
    assert.equal(s.state.shed, 0);
    assert.deepEqual(writes, []);
    assert.ok(Math.abs(s.state.usageCores - 0.1) < 1e-9);
  });

  test('over budget the keep ratio falls in proportion, and the threshold follows it', () => {
    const { s, writes, interval } = rig();
    interval(0.8); // 4x the budget: keep 0.9 * 0.2 / 0.8 = 0.225, at most 4x down per step
    assert.ok(Math.abs(s.state.keepRatio - 0.25) < 1e-9, String(s.state.keepRatio));
    assert.equal(writes.length, 1);
    assert.equal(writes[0]?.shed, Math.round(0.75 * 2 ** 32));
    assert.equal(writes[0]?.gen, 1, 'shedding started: a new generation voids older per-thread decisions');
    interval(0.4);
    assert.ok(Math.abs(s.state.keepRatio - 0.25 * 0.45) < 1e-9);
    assert.equal(writes.at(-1)?.gen, 1, 'still shedding: same generation');
  });

  test('losses before the correlator halve the ratio at once, whatever the CPU says', () => {
    const { s, interval } = rig();
    interval(0.1, 1000);
    assert.equal(s.state.keepRatio, 0.5);
  });

  test('well below budget it recovers to 1, and stops writing once there', () => {
    const { s, writes, interval } = rig();
    interval(0.8);
    for (let i = 0; i < 20 && s.state.keepRatio < 1; i++) interval(0.02);
    assert.equal(s.state.keepRatio, 1);
    assert.equal(s.state.shed, 0);
    const n = writes.length;
    interval(0.02);
    assert.equal(writes.length, n);
    // shedding again later is a new generation
    interval(0.8);
    assert.equal(writes.at(-1)?.gen, 2);
  });

  test('never below minKeepRatio; budget 0 keeps a fixed ratio', () => {
    const { s, interval } = rig({ minKeepRatio: 0.05 });
    for (let i = 0; i < 10; i++) interval(5);
    assert.equal(s.state.keepRatio, 0.05);
    const fixed = rig({ cpuBudget: 0 });
    fixed.s.set(0.5);
    fixed.interval(5, 100);
    assert.equal(fixed.s.state.keepRatio, 0.5);
    assert.equal(fixed.s.state.shed, 2 ** 31);
  });

  test('a burst shorter than the smoothing window is absorbed; a sustained one is shed; nothing during warm-up', () => {
    const { s, interval } = rig({ smoothing: 0.3, warmupMs: 2500 });
    interval(1); // warm-up: over budget, nothing shed
    interval(1);
    assert.equal(s.state.keepRatio, 1);
    const b = rig({ smoothing: 0.3 });
    b.interval(0.05);
    b.interval(0.5); // one interval at 2.5x the budget: smoothed 0.185, under it
    assert.equal(b.s.state.keepRatio, 1);
    b.interval(0.5);
    b.interval(0.5); // sustained: smoothed above the budget
    assert.ok(b.s.state.keepRatio < 1);
    // losses act at once, warm-up or not
    const w = rig({ warmupMs: 60_000 });
    w.interval(0.01, 5);
    assert.equal(w.s.state.keepRatio, 0.5);
  });
});
