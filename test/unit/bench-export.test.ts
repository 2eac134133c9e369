import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseVariant } from '../../bench/export.ts';

describe('bench/export.ts variants', () => {
  it('reads name:batch=N,inflight=N,http=0|1 with the agent defaults for what is left out', () => {
    assert.deepEqual(parseVariant('a:batch=2048,inflight=1'), { name: 'a', batch: 2048, inflight: 1, http: true });
    assert.deepEqual(parseVariant('ser:http=0'), { name: 'ser', batch: 512, inflight: 4, http: false });
    assert.deepEqual(parseVariant('plain'), { name: 'plain', batch: 512, inflight: 4, http: true });
  });
  it('refuses unknown keys, bad numbers and a missing name, naming what is wrong', () => {
    assert.throws(() => parseVariant('a:bach=3'), /unknown key "bach"/);
    assert.throws(() => parseVariant('a:batch=0'), /batch must be a positive integer/);
    assert.throws(() => parseVariant(':batch=3'), /a name is needed/);
  });
});
