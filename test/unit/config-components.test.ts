// The schema is the only place defaults are written: the keys the correlator and the sink need are
// there, validated, and mapped with their units onto the components' options.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StrataError } from '../../agent/src/errors.ts';
import { type LoadOptions, type StrataConfig, loadConfig, parseAgentArgs, toAgentOptions } from '../../agent/src/config/index.ts';

function load(o: LoadOptions & { args?: string[] } = {}): StrataConfig {
  return loadConfig({ env: {}, hostname: 'host-1', ...o, flags: o.flags ?? (o.args ? parseAgentArgs(o.args).settings : undefined) });
}

function problem(args: string[]): string {
  try {
    load({ args });
  } catch (e) {
    assert.ok(e instanceof StrataError);
    return e.message;
  }
  assert.fail(`accepted ${args.join(' ')}`);
}

describe('correlator and export keys', () => {
  test('defaults come from the schema and reach the components in their units', () => {
    const o = toAgentOptions(load(), []);
    assert.equal(o.correlator.maxReady, 65536);
    assert.equal(o.correlator.lostQuietNs, 1e9);
    assert.equal(o.correlator.retainNs, 10e9);
    assert.equal(o.correlator.maxHeldTraces, 4096);
    assert.equal(o.correlator.exportInvalid, false);
    assert.deepEqual(o.routes, []);
    assert.equal(o.exportQueue.exportTimeoutMillis, 30_000);
    assert.equal(o.maxResources, 256);
  });

  test('set from flags and variables, converted', () => {
    const c = load({
      args: ['--set', 'correlator.lostQuietMs=250', '--set', 'correlator.retainS=3', '--set', 'correlator.routes=/users/{id},/static/*', '--set', 'export.queue.exportTimeoutMs=5000'],
      env: { STRATA_CORRELATOR_EXPORT_INVALID: 'true', STRATA_EXPORT_MAX_RESOURCES: '64', STRATA_CORRELATOR_MAX_HELD_TRACES: '10' },
    });
    const o = toAgentOptions(c, []);
    assert.equal(o.correlator.lostQuietNs, 250e6);
    assert.equal(o.correlator.retainNs, 3e9);
    assert.equal(o.correlator.exportInvalid, true);
    assert.equal(o.correlator.maxHeldTraces, 10);
    assert.deepEqual(o.routes, ['/users/{id}', '/static/*']);
    assert.equal(o.exportQueue.exportTimeoutMillis, 5000);
    assert.equal(o.maxResources, 64);
  });

  test('bad values are refused, naming the key', () => {
    assert.match(problem(['--set', 'correlator.routes=users/{id}']), /correlator\.routes.*paths starting with \//s);
    assert.match(problem(['--set', 'correlator.exportInvalid=sometimes']), /correlator\.exportInvalid.*true or false/s);
    assert.match(problem(['--set', 'correlator.maxReady=0']), /correlator\.maxReady/);
    assert.match(problem(['--set', 'export.queue.exportTimeoutMs=0']), /export\.queue\.exportTimeoutMs/);
    assert.match(problem(['--set', 'export.maxResources=-1']), /export\.maxResources/);
  });
});
