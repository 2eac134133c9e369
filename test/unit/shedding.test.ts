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
  const s = new LoadShedder(o, { write: (shed, gen) => writes.push({ shed, gen }), losses: () => lost, cpuUs: () => cpuUs, nowMs: () => ms });
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

  describe('the brake: the offered load, counted by the kernel, ahead of the CPU', () => {
    function braking(opts: Partial<SheddingOptions> = {}) {
      const o: SheddingOptions = { cpuBudget: 0.5, keepRatio: 1, minKeepRatio: 0.001, intervalMs: 250, warmupMs: 3000, smoothing: 0.3, ...opts };
      let cpuUs = 0;
      let ms = 0;
      let req = 0;
      const s = new LoadShedder(o, { write: () => {}, losses: () => 0, requests: () => req, cpuUs: () => cpuUs, nowMs: () => ms });
      /** `perS` requests per second for `forMs`, the agent using `cores`, a batch every 10 ms */
      const run = (perS: number, forMs: number, cores = 0) => {
        for (let t = 0; t < forMs; t += 10) {
          req += perS / 100;
          cpuUs += cores * 10_000;
          ms += 10;
          s.maybeTick();
        }
      };
      return { s, run };
    }

    test('a surge is cut within a few rate windows, during the warm-up and before any CPU shows it', () => {
      const { s, run } = braking();
      // 10k/s x 1 ms: 190 ms of work beyond the budget per 20 ms window: cut at the second
      run(10_000, 20);
      assert.equal(s.state.brakes, 0);
      run(10_000, 30);
      // 10k/s x 1 ms each = 10 cores against 0.5: keep 0.05
      assert.ok(Math.abs(s.state.keepRatio - 0.05) < 1e-9, String(s.state.keepRatio));
      assert.equal(s.state.brakes, 1);
      assert.ok(Math.abs(s.state.offeredPerS - 10_000) < 1e-6);
    });

    test('a burst of a few dozen requests is absorbed: no brake', () => {
      const { s, run } = braking();
      run(0, 200);
      run(5_000, 20); // 100 requests in 20 ms: ~100 ms of work, over the budget but not for long
      run(0, 500);
      assert.equal(s.state.brakes, 0);
      assert.equal(s.state.keepRatio, 1);
    });

    test('an idle or modest load is left to the CPU loop: nothing is shed at start', () => {
      const { s, run } = braking();
      run(200, 1000); // 200/s x 1 ms = 0.2 cores: under twice the budget
      assert.equal(s.state.keepRatio, 1);
      assert.equal(s.state.brakes, 0);
    });

    test('the cost of a kept request is learned from CPU over intervals, and the brake uses it', () => {
      const { s, run } = braking({ warmupMs: 0 });
      // 300/s at 0.3 cores: 1000 µs per request, kept whole
      run(300, 1000, 0.3);
      assert.ok(Math.abs(s.state.costUs - 1000) < 1, String(s.state.costUs));
      // cheaper requests: 300/s at 0.03 cores -> 100 µs each, learned over a few intervals
      run(300, 3000, 0.03);
      assert.ok(s.state.costUs < 150, String(s.state.costUs));
      // now 6k/s x ~100 µs = ~0.6 cores: within twice the budget, no brake
      const before = s.state.brakes;
      run(6_000, 100, 0.03);
      assert.equal(s.state.brakes, before);
      // 60k/s x 100 µs = 6 cores: braked to about budget / cost
      run(60_000, 100, 0.03);
      assert.ok(s.state.brakes > before);
      const expect = 0.5e6 / (60_000 * s.state.costUs);
      assert.ok(Math.abs(s.state.keepRatio - expect) / expect < 0.2, `${s.state.keepRatio} vs ${expect}`);
    });

    test('the brake never raises the ratio and never goes below the floor', () => {
      const { s, run } = braking({ minKeepRatio: 0.01 });
      run(10_000_000, 50);
      assert.equal(s.state.keepRatio, 0.01);
      run(0, 1000);
      assert.equal(s.state.keepRatio, 0.01, 'the CPU loop raises it, after the warm-up');
    });
  });

  test('after a loss the ratio is held for a while, and a backlog holds it too, though the CPU is idle', () => {
    let cpuUs = 0;
    let ms = 0;
    let lost = 0;
    let backlog = 0;
    const o: SheddingOptions = { cpuBudget: 0.2, keepRatio: 1, minKeepRatio: 0.01, intervalMs: 250, warmupMs: 0, smoothing: 1 };
    const s = new LoadShedder(o, { write: () => {}, losses: () => lost, backlog: () => backlog, cpuUs: () => cpuUs, nowMs: () => ms });
    const interval = (cores: number) => {
      cpuUs += cores * 250_000;
      ms += 250;
      s.tick();
    };
    lost = 10;
    interval(0.01);
    assert.equal(s.state.keepRatio, 0.5);
    // 2 s of hold: the idle CPU does not raise it
    for (let i = 0; i < 7; i++) interval(0.01);
    assert.equal(s.state.keepRatio, 0.5);
    interval(0.01);
    interval(0.01);
    assert.ok(s.state.keepRatio > 0.5, 'raised after the hold');
    // another loss, and then a queue past half full (the agent starved of CPU by the node): held
    // beyond the 2 s, for as long as the queue stays full
    lost += 10;
    backlog = 0.8;
    interval(0.01);
    const k = s.state.keepRatio;
    assert.ok(k < 1);
    for (let i = 0; i < 16; i++) interval(0.01);
    assert.equal(s.state.keepRatio, k);
    backlog = 0.1;
    interval(0.01);
    assert.ok(s.state.keepRatio > k);
  });

  describe("the agent's floor: the budget is for what requests cost", () => {
    /** intervals of 250 ms with `perS` requests (all kept while the ratio is 1) and `cores` of CPU */
    function floored(opts: Partial<SheddingOptions> = {}) {
      const o: SheddingOptions = { cpuBudget: 0.02, keepRatio: 1, minKeepRatio: 0.001, intervalMs: 250, warmupMs: 1000, smoothing: 1, ...opts };
      let cpuUs = 0;
      let ms = 0;
      let req = 0;
      const s = new LoadShedder(o, { write: () => {}, losses: () => 0, requests: () => req, cpuUs: () => cpuUs, nowMs: () => ms });
      const interval = (perS: number, cores: number) => {
        req += perS / 4;
        cpuUs += cores * 250_000;
        ms += 250;
        s.tick();
      };
      return { s, interval };
    }

    test('learned from request-free intervals after the warm-up; a trickle of requests on a quiet node is kept whole under a budget below the floor', () => {
      const { s, interval } = floored();
      for (let i = 0; i < 3; i++) interval(0, 0.3); // loading (the first second): not the floor
      assert.equal(s.state.floorCores, 0);
      for (let i = 0; i < 20; i++) interval(0, 0.06);
      assert.ok(Math.abs(s.state.floorCores - 0.06) < 0.005, String(s.state.floorCores));
      // a few requests at 1 ms each above the floor: 0.004 cores, within 0.02
      for (let i = 0; i < 40; i++) interval(4, 0.064);
      assert.equal(s.state.keepRatio, 1, 'the floor (0.06) is three times the budget, and nothing is shed');
      assert.ok(s.state.floorCores < 0.065, 'intervals with requests are not floor samples');
    });

    test('above the floor the budget holds, and the cost of a request is learned above it', () => {
      const { s, interval } = floored({ cpuBudget: 0.1 });
      for (let i = 0; i < 20; i++) interval(0, 0.06);
      // 300/s at 0.36 cores: 0.3 above the floor, 1000 µs per request; 3x the budget
      interval(300, 0.36);
      assert.ok(Math.abs(s.state.costUs - 1000) < 1, String(s.state.costUs));
      assert.ok(Math.abs(s.state.keepRatio - 0.3) < 1e-9, `keep 0.9 x 0.1 / 0.3, got ${s.state.keepRatio}`);
    });

    test('the work left by the last requests is not the floor: an idle interval right after requests is no sample, a busy idle one barely raises it', () => {
      const { s, interval } = floored({ cpuBudget: 0.1 });
      for (let i = 0; i < 20; i++) interval(0, 0.05);
      const f = s.state.floorCores;
      // a load, then its backlog worked off in the first idle interval after it (exports, timers)
      for (let i = 0; i < 8; i++) interval(300, 0.4);
      interval(0, 0.5);
      assert.equal(s.state.floorCores, f, 'the first idle interval after requests');
      // one idle interval busy for another reason (a discovery scan): 5 % of the way to it
      interval(0, 0.45);
      assert.ok(Math.abs(s.state.floorCores - (f + 0.05 * (0.45 - f))) < 1e-9, String(s.state.floorCores));
    });

    test('requests cost at least half of what the agent spends while they run, whatever the floor', () => {
      const { s, interval } = floored({ cpuBudget: 0.1 });
      for (let i = 0; i < 20; i++) interval(0, 0.05);
      // 75 requests in 15 ms of CPU, 12.5 ms of it the floor's: counted 7.5 ms (100 us each), not 2.5
      interval(300, 0.06);
      assert.ok(Math.abs(s.state.costUs - (0.7 * 1000 + 0.3 * 100)) < 1e-6, String(s.state.costUs));
    });

    test('a node never free of requests keeps a floor of 0: the whole usage counts', () => {
      const { s, interval } = floored({ cpuBudget: 0.1 });
      for (let i = 0; i < 20; i++) interval(100, 0.08);
      assert.equal(s.state.floorCores, 0);
      assert.equal(s.state.keepRatio, 1);
      interval(100, 0.2);
      assert.ok(Math.abs(s.state.keepRatio - 0.45) < 1e-9, String(s.state.keepRatio));
    });
  });
});
