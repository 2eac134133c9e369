import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  fmtPct,
  fmtRatio,
  fmtSI,
  fmtSig,
  fmtSummary,
  median,
  minMax,
  progDeltas,
  ratio,
  roundOrder,
  summarize,
  table,
} from '../../bench/stats.ts';

describe('bench stats: median, min/max, summary', () => {
  it('takes the middle value of an odd count, whatever the input order', () => {
    assert.equal(median([5, 1, 3]), 3);
    assert.equal(median([7]), 7);
  });

  it('averages the middle two of an even count', () => {
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });

  it('ignores non-finite values (a round that measured nothing) and is NaN when none are left', () => {
    assert.equal(median([1, Number.NaN, 3, Number.POSITIVE_INFINITY, 2]), 2);
    assert.ok(Number.isNaN(median([])));
    assert.ok(Number.isNaN(median([Number.NaN])));
  });

  it('does not reorder the caller array', () => {
    const xs = [3, 1, 2];
    median(xs);
    assert.deepEqual(xs, [3, 1, 2]);
  });

  it('finds min and max, NaN for no data', () => {
    assert.deepEqual(minMax([3, -1, 9, 4]), { min: -1, max: 9 });
    const none = minMax([]);
    assert.ok(Number.isNaN(none.min) && Number.isNaN(none.max));
  });

  it('summarizes median, min, max and the count of usable rounds', () => {
    assert.deepEqual(summarize([10, 30, 20, Number.NaN]), { median: 20, min: 10, max: 30, n: 3 });
  });
});

describe('bench stats: ratios and formatting', () => {
  it('divides, and refuses a ratio to zero or to a missing value', () => {
    assert.equal(ratio(6, 3), 2);
    assert.ok(Number.isNaN(ratio(1, 0)));
    assert.ok(Number.isNaN(ratio(Number.NaN, 2)));
    assert.ok(Number.isNaN(ratio(2, Number.POSITIVE_INFINITY)));
  });

  it('formats ratios with 3 significant digits and an x', () => {
    assert.equal(fmtRatio(3.0321), '3.03x');
    assert.equal(fmtRatio(12.34), '12.3x');
    assert.equal(fmtRatio(1234.5), '1235x');
    assert.equal(fmtRatio(0.01391), '0.0139x');
    assert.equal(fmtRatio(Number.NaN), 'n/a');
  });

  it('keeps 3 significant digits below 100 and whole numbers from 100 up', () => {
    assert.equal(fmtSig(0), '0');
    assert.equal(fmtSig(1.5), '1.50');
    assert.equal(fmtSig(42.04), '42.0');
    assert.equal(fmtSig(99.96), '100.0');
    assert.equal(fmtSig(1452.8), '1453');
    assert.equal(fmtSig(-0.1234), '-0.123');
  });

  it('uses SI prefixes for rates', () => {
    assert.equal(fmtSI(195476), '195 k');
    assert.equal(fmtSI(2_630_000), '2.63 M');
    assert.equal(fmtSI(1.5e9), '1.50 G');
    assert.equal(fmtSI(950), '950');
    assert.equal(fmtSI(Number.NaN), 'n/a');
  });

  it('shows fractions as percentages', () => {
    assert.equal(fmtPct(0.8712), '87.1 %');
    assert.equal(fmtPct(0), '0 %');
    assert.equal(fmtPct(0.0000507), '0.00507 %');
  });

  it('prints median (min..max), or one value when the rounds agree after formatting', () => {
    assert.equal(fmtSummary(summarize([1453, 1398, 1508])), '1453 (1398..1508)');
    assert.equal(fmtSummary(summarize([195000, 195400]), fmtSI), '195 k');
    assert.equal(fmtSummary(summarize([])), 'n/a');
  });
});

describe('bench stats: table, round order, BPF run-time deltas', () => {
  it('pads columns: first left-aligned, the others right-aligned, a rule under the header', () => {
    const t = table(['variant', 'ns'], [['a no probes', '1453'], ['b', '6011 (5866..6155)']]);
    assert.equal(
      t,
      ['variant                     ns', '-----------  -----------------', 'a no probes               1453', 'b            6011 (5866..6155)'].join('\n'),
    );
  });

  it('fills short rows with empty cells', () => {
    const lines = table(['a', 'b', 'c'], [['x']]).split('\n');
    assert.equal(lines[2], 'x');
  });

  it('alternates the variant order between rounds and leaves the input alone', () => {
    const v = ['a', 'b', 'c'];
    assert.deepEqual(roundOrder(v, 0), ['a', 'b', 'c']);
    assert.deepEqual(roundOrder(v, 1), ['c', 'b', 'a']);
    assert.deepEqual(roundOrder(v, 2), ['a', 'b', 'c']);
    assert.deepEqual(v, ['a', 'b', 'c']);
  });

  it('turns two progStats snapshots into ns per run, by program name', () => {
    const before = [
      { name: 'enter_write', runTimeNs: 1000, runCnt: 10 },
      { name: 'exit_write', runTimeNs: 500, runCnt: 10 },
      { name: 'enter_read', runTimeNs: 70, runCnt: 1 },
    ];
    const after = [
      { name: 'exit_write', runTimeNs: 1500, runCnt: 20 },
      { name: 'enter_write', runTimeNs: 3400, runCnt: 20 },
      { name: 'enter_read', runTimeNs: 70, runCnt: 1 },
      { name: 'sock_state', runTimeNs: 300, runCnt: 2 },
    ];
    const d = progDeltas(before, after);
    assert.deepEqual(d[0], { name: 'exit_write', runs: 10, runTimeNs: 1000, nsPerRun: 100 });
    assert.deepEqual(d[1], { name: 'enter_write', runs: 10, runTimeNs: 2400, nsPerRun: 240 });
    // did not run in the interval: no rate rather than 0/0
    assert.equal(d[2].runs, 0);
    assert.ok(Number.isNaN(d[2].nsPerRun));
    // absent before (stats enabled later): counted from zero
    assert.deepEqual(d[3], { name: 'sock_state', runs: 2, runTimeNs: 300, nsPerRun: 150 });
  });
});
