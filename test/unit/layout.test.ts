// The decoder's offsets are generated from the BTF of the compiled BPF objects; this fails when
// bpf/include/events.h changed and agent/src/events/layout.generated.ts was not regenerated.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { OBJECTS, OUTPUT, generateLayout } from '../../scripts/gen-layout.ts';

test('layout.generated.ts matches the BTF of build/bpf/*.bpf.o', (t) => {
  const missing = OBJECTS.filter((o) => !existsSync(o));
  if (missing.length) {
    if (process.env.CI === 'true') assert.fail(`BPF objects not built: ${missing.join(', ')}`);
    t.skip(`BPF objects not built (npm run build): ${missing.join(', ')}`);
    return;
  }
  const fresh = generateLayout();
  assert.equal(readFileSync(OUTPUT, 'utf8'), fresh, 'run `npm run gen` and commit the result');
  // and the generator really reads the objects: the event structs are there with their sizes
  assert.match(fresh, /export const SOCK_EVENT = \{ SIZE: \d+/);
  assert.match(fresh, /export const PKT_EVENT = \{ SIZE: \d+/);
});
