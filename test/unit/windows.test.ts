// Observation windows (agent/src/probes/windows.ts): the share of time open, and the schedule of
// open, drain, close and the next window, on mocked timers and a clock of the test's own.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { ProbeWindows, type WindowOptions, openShare } from '../../agent/src/probes/windows.ts';

describe('openShare', () => {
  const o = { cpuBudget: 0.1, windowCpu: 1, minOpenShare: 0.05 };
  it('is 1 while keeping everything fits the budget, or windows may not work faster than it', () => {
    assert.equal(openShare(0.1, o), 1);
    assert.equal(openShare(0, o), 1);
    assert.equal(openShare(5, { ...o, windowCpu: 0.1 }), 1);
    assert.equal(openShare(5, { ...o, windowCpu: 0 }), 1);
    assert.equal(openShare(5, { ...o, cpuBudget: 0 }), 1);
  });
  it('is budget / demand below windowCpu, budget / windowCpu above it, never below minOpenShare', () => {
    assert.equal(openShare(0.4, o), 0.25);
    assert.equal(openShare(3, o), 0.1);
    assert.equal(openShare(3, { ...o, cpuBudget: 0.01 }), 0.05);
  });
});

describe('ProbeWindows', () => {
  let now = 0;
  let attached = true;
  let rate = 1000; // requests per second the kernel counts while attached
  let req = 0;
  let calls: string[] = [];
  let keeps: number[] = [];
  let detachMs = 1000;
  let cost = 500;
  let w: ProbeWindows | undefined;
  const opts: WindowOptions = { cpuBudget: 0.1, windowCpu: 1, periodMs: 10_000, drainMs: 300, minOpenShare: 0.05, warmupMs: 3000 };

  /** lets the promise callbacks of a detach run */
  const settle = () => new Promise((r) => setImmediate(r));
  /** advances the clock and the timers together, counting requests while the programs are attached */
  async function advance(ms: number): Promise<void> {
    for (let i = 0; i < ms; i += 100) {
      now += 100;
      if (attached) req += rate / 10;
      mock.timers.tick(100);
      await settle();
    }
  }

  function make(o: Partial<WindowOptions> = {}): ProbeWindows {
    const x = new ProbeWindows({ ...opts, ...o }, {
      open: (keep) => {
        calls.push(`open@${now}`);
        keeps.push(keep);
        attached = true;
      },
      drain: () => calls.push(`drain@${now}`),
      settled: () => calls.push(`settled@${now}`),
      close: () => {
        calls.push(`close@${now}`);
        attached = false;
        return new Promise((r) => setTimeout(() => r(undefined), detachMs));
      },
      active: (on, keep) => {
        calls.push(`active:${on}@${now}`);
        keeps.push(keep);
      },
      requests: () => req,
      costUs: () => cost, // 1000 req/s x 500 us = 0.5 cores: share 0.1 / 0.5 = 0.2
      nowMs: () => now,
    });
    x.start();
    return x;
  }

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout'] });
    now = 0;
    attached = true;
    rate = 1000;
    req = 0;
    calls = [];
    keeps = [];
    detachMs = 1000;
    cost = 500;
  });
  afterEach(() => {
    w?.stop();
    mock.timers.reset();
  });

  it('opens a share of every period: drain, close, detach, open again; the settle after opening; closed time counted', async () => {
    w = make();
    await advance(10_000);
    assert.deepEqual(calls, ['active:true@10000'], 'the first decision: windows begin, already attached');
    assert.equal(w.state.openShare, 0.2);
    assert.equal(w.state.phase, 'open');
    assert.ok(Math.abs(w.state.demandCores - 0.5) < 1e-9);
    await advance(2000);
    assert.deepEqual(calls.slice(1), ['drain@11700', 'close@12000']);
    assert.equal(w.detached, true);
    assert.equal(w.observing, false);
    await advance(1000);
    assert.equal(w.state.phase, 'closed');
    assert.equal(w.state.lastDetachMs, 1000);
    await advance(7000);
    assert.deepEqual(calls.slice(3), ['open@20000']);
    assert.equal(w.settling, true, 'settling right after it opened');
    await advance(300);
    assert.equal(w.settling, false);
    assert.deepEqual(calls.slice(4), ['settled@20300']);
    assert.equal(w.state.windows, 2);
    assert.equal(w.state.closedMs, 8000);
    // inside a window the agent may keep what windowCpu affords: 1 core / 0.5 cores demanded, i.e. all
    assert.deepEqual(keeps, [1, 1]);
    // the offered rate was measured over the attached time only
    assert.equal(Math.round(w.state.offeredPerS), 1000);
  });

  it('a demand beyond windowCpu: open budget / windowCpu of the time, keeping windowCpu / demand inside', async () => {
    cost = 5000; // 5 cores
    w = make();
    await advance(10_000);
    assert.equal(w.state.openShare, 0.1);
    assert.equal(w.state.windowKeep, 0.2);
    assert.deepEqual(keeps, [0.2]);
  });

  it('the load gone: the next decision ends the windows and leaves the probes attached', async () => {
    w = make();
    await advance(12_000);
    await advance(1000);
    rate = 0;
    await advance(7000);
    // opened at 20000 for the next window: it measured the load of the window before (still on)
    await advance(10_000);
    await advance(10_000);
    assert.equal(w.state.phase, 'steady');
    assert.equal(w.state.openShare, 1);
    assert.equal(attached, true);
    assert.ok(calls.includes('active:false@40000') || calls.includes('active:false@30000'), calls.join(' '));
  });

  it('the load back after the windows ended: they begin again within steadyCheckMs, not a period later', async () => {
    w = make();
    await advance(10_000);
    rate = 0;
    for (let i = 0; i < 4 && w.state.phase !== 'steady'; i++) await advance(10_000);
    assert.equal(w.state.phase, 'steady');
    const ended = now;
    rate = 1000;
    await advance(2000);
    assert.notEqual(w.state.phase, 'steady', 'windows again within 2 s of the load');
    const again = calls.filter((c) => c.startsWith('active:true@')).map((c) => Number(c.split('@')[1]));
    assert.equal(again.length, 2);
    assert.ok((again[1] as number) - ended <= 2000, calls.join(' '));
    // quiet steady checks: no window on a load under the budget
    rate = 100;
    for (let i = 0; i < 4 && w.state.phase !== 'steady'; i++) await advance(10_000);
    const n = calls.length;
    await advance(5000);
    assert.deepEqual(calls.slice(n), [], 'a second look each second, and nothing to do');
  });

  it('a detach still running at the period\'s end: the next window waits for it', async () => {
    detachMs = 9500;
    w = make();
    await advance(20_000);
    assert.ok(!calls.some((c) => c.startsWith('open@')), 'not attached while the last detach runs');
    await advance(1500);
    assert.ok(calls.some((c) => c.startsWith('open@')), 'attached once it is done');
  });

  it('the pause must hold the detach: a longer detach cuts the share, too long ends the windows', async () => {
    detachMs = 5000;
    w = make({ drainMs: 100 });
    await advance(20_000);
    // max share = 1 - (1.5 x 5000 + 100) / 10000 = 0.24: the 0.2 wanted still fits
    assert.equal(w.state.openShare, 0.2);
    detachMs = 6000;
    await advance(10_000);
    await advance(10_000);
    // 1 - (9000 + 100) / 10000 = 0.09
    assert.ok(Math.abs(w.state.openShare - 0.09) < 1e-9, String(w.state.openShare));
    detachMs = 7000;
    for (let i = 0; i < 3; i++) {
      await advance(10_000);
    }
    assert.equal(w.state.openShare, 1, 'a pause of 10.8 s would not hold it');
  });

  it('a window keeps requests at least as long as it settles and drains: the share is raised to 3 x drainMs', async () => {
    w = make({ drainMs: 1000 });
    await advance(10_000);
    assert.equal(w.state.openShare, 0.3);
    assert.ok(Math.abs(w.state.keptShare - 0.1) < 1e-9);
  });

  it('no windows before the warm-up ends, nor when the share would be near 1', async () => {
    w = make({ warmupMs: 15_000 });
    await advance(10_000);
    assert.equal(w.state.phase, 'steady');
    w.stop();
    calls = [];
    w = make({ cpuBudget: 0.46 }); // share 0.92: above the entry threshold
    await advance(10_000);
    assert.equal(w.state.phase, 'steady');
    assert.deepEqual(calls, []);
  });
});
