import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bpfDelta,
  fileStamp,
  goalMet,
  mdTable,
  parseBpfPrograms,
  parseHey,
  parseIperf,
  parseWrk,
  statCpuTicks,
  statusRssBytes,
  wrkDurationUs,
} from '../../bench/agent-report.ts';

// real output of Debian's wrk 4.1 and hey 0.1.4 (trimmed histogram), 2026-12-02
const WRK = `Running 1s test @ http://127.0.0.1:18777/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.27ms   10.51ms  68.89ms   90.25%
    Req/Sec   334.30    126.33   550.00     60.00%
  Latency Distribution
     50%    4.73ms
     75%    8.69ms
     90%   17.38ms
     99%   61.72ms
  341 requests in 1.04s, 1.05MB read
Requests/sec:    327.24
Transfer/sec:      1.01MB
`;

const HEY = `
Summary:
  Total:	1.0253 secs
  Slowest:	0.0415 secs
  Fastest:	0.0027 secs
  Average:	0.0073 secs
  Requests/sec:	37.0632

Latency distribution:
  10% in 0.0037 secs
  25% in 0.0043 secs
  50% in 0.0055 secs
  75% in 0.0068 secs
  90% in 0.0122 secs
  95% in 0.0415 secs
  99% in 0.0415 secs

Status code distribution:
  [200]	36 responses
  [502]	2 responses

Error distribution:
  [3]	Get "http://10.0.0.1/": dial tcp: connection refused
`;

describe('bench agent report: load generator parsers', () => {
  it('reads wrk durations in every unit as microseconds', () => {
    assert.equal(wrkDurationUs('812.00us'), 812);
    assert.equal(wrkDurationUs('4.73ms'), 4730);
    assert.equal(wrkDurationUs('1.50s'), 1.5e6);
    assert.ok(Number.isNaN(wrkDurationUs('fast')));
  });

  it('parses wrk --latency: requests, duration, req/s, percentiles, errors', () => {
    const w = parseWrk(`${WRK}  Non-2xx or 3xx responses: 4\n  Socket errors: connect 1, read 2, write 0, timeout 3\n`);
    assert.equal(w.requests, 341);
    assert.equal(w.durationS, 1.04);
    assert.equal(w.rps, 327.24);
    assert.deepEqual(w.latencyUs, { 50: 4730, 75: 8690, 90: 17380, 99: 61720 });
    assert.equal(w.errors, 10);
    assert.equal(parseWrk(WRK).errors, 0);
  });

  it('rejects wrk output without a summary (wrk failed to connect)', () => {
    assert.throws(() => parseWrk('unable to connect to 10.0.0.1:80 Connection refused\n'), /summary/);
  });

  it('parses hey: req/s, percentiles in microseconds, non-2xx and transport errors', () => {
    const h = parseHey(HEY);
    assert.equal(h.rps, 37.0632);
    assert.equal(h.latencyUs['50'], 5500);
    assert.equal(Math.round(h.latencyUs['99']), 41500);
    assert.equal(h.responses, 38);
    assert.equal(h.errors, 5);
    assert.throws(() => parseHey('nothing'), /Requests\/sec/);
  });

  it('parses iperf3 -J: receiver goodput and sender retransmits; reports iperf3 errors', () => {
    const r = parseIperf(JSON.stringify({ end: { sum_received: { bits_per_second: 9.5e9 }, sum_sent: { retransmits: 12 } } }));
    assert.deepEqual(r, { bitsPerSecond: 9.5e9, retransmits: 12 });
    assert.throws(() => parseIperf(JSON.stringify({ error: 'unable to connect to server' })), /unable to connect/);
  });
});

describe('bench agent report: /proc readers, goals, tables', () => {
  it('sums utime and stime of /proc/<pid>/stat, a comm with spaces and parentheses included', () => {
    const stat = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 11 0 999 1000 2000';
    assert.equal(statCpuTicks(stat), 1234 + 567);
  });

  it('reads VmRSS in bytes', () => {
    assert.equal(statusRssBytes('Name:\tnode\nVmRSS:\t  204800 kB\nVmData:\t1 kB\n'), 204800 * 1024);
    assert.ok(Number.isNaN(statusRssBytes('Name:\tkthread\n')));
  });

  it('says whether a ratio meets its goal, n/a when unmeasured', () => {
    assert.equal(goalMet(0.98, 0.97), 'met');
    assert.equal(goalMet(0.96, 0.97), 'not met');
    assert.equal(goalMet(1.2, 1.5, false), 'met');
    assert.equal(goalMet(Number.NaN, 0.97), 'n/a');
  });

  it('writes a markdown table with right-aligned figures and escaped pipes', () => {
    assert.equal(
      mdTable(['variant', 'req/s'], [['a|b', '1.2 k'], ['c']]),
      '| variant | req/s |\n|:---|---:|\n| a\\|b | 1.2 k |\n| c |  |',
    );
  });

  it('makes a file name from a date without colons or milliseconds', () => {
    assert.equal(fileStamp(new Date('2026-12-02T04:31:07.123Z')), '2026-12-02T04-31-07Z');
  });

  it('reads the BPF programs\' runs and run time from the agent\'s metrics, and their cost per request between two scrapes', () => {
    const scrape = (runs: number, secs: number, extra = '') => [
      '# HELP strata_bpf_runs_total Times this BPF program ran',
      '# TYPE strata_bpf_runs_total counter',
      `strata_bpf_runs_total{program="exit_read"} ${runs}`,
      `strata_bpf_runs_total{program="tc_ingress"} ${2 * runs}`,
      extra,
      '# TYPE strata_bpf_run_time_seconds_total counter',
      `strata_bpf_run_time_seconds_total{program="exit_read"} ${secs}`,
      `strata_bpf_run_time_seconds_total{program="tc_ingress"} ${secs / 2}`,
      'strata_bpf_runs_total_created 17',
    ].join('\n');
    const a = parseBpfPrograms(scrape(100, 0.0001));
    assert.deepEqual(a, { exit_read: { runs: 100, ns: 100_000 }, tc_ingress: { runs: 200, ns: 50_000 } });
    const b = parseBpfPrograms(scrape(1100, 0.0021, 'strata_bpf_runs_total{program="fresh"} 5'));
    assert.equal(b.fresh?.runs, 5);
    // per 100 requests: 10 reads and 20 packets each, 2 us and 1 us of BPF; the program that appeared counts from 0
    assert.deepEqual(bpfDelta(a, b, 100), { exit_read: { runs: 10, ns: 20_000 }, tc_ingress: { runs: 20, ns: 10_000 }, fresh: { runs: 0.05, ns: 0 } });
    // a program that did not run is left out
    assert.deepEqual(bpfDelta(a, a, 1), {});
  });
});
