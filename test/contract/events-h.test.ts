// bpf/include/events.h is the kernel/user contract: it must compile as plain C and as C++ (user
// space: linux/types.h), with its size assertions live in both languages, after the structs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const INCLUDE = fileURLToPath(new URL('../../bpf/include', import.meta.url));
const SRC = '#include "events.h"\nint main(void) { return (int)sizeof(struct strata_netdev_event); }\n';
// every __u64 field of events.h shrinks to 4 bytes (the UAPI typedefs are already in, untouched)
const SHRUNK = `#include <linux/types.h>\n#define __u64 __u32\n${SRC}`;

const COMPILERS: { lang: string; cmd: string; args: string[] }[] = [
  { lang: 'C', cmd: 'cc', args: ['-x', 'c', '-std=c11'] },
  { lang: 'C++', cmd: 'c++', args: ['-x', 'c++', '-std=c++17'] },
];

function compile(cmd: string, args: string[], extra: string[] = [], input = SRC): { status: number | null; stderr: string; missing: boolean } {
  const r = spawnSync(cmd, [...args, '-fsyntax-only', '-Wall', '-Wextra', '-Werror', '-Wpadded', `-I${INCLUDE}`, ...extra, '-'], { input, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr ?? '', missing: (r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT' };
}

for (const c of COMPILERS) {
  test(`events.h compiles as ${c.lang} (${c.cmd}), without padding warnings`, (t) => {
    const r = compile(c.cmd, c.args);
    if (r.missing) {
      if (process.env.CI === 'true') assert.fail(`${c.cmd} not installed`);
      t.skip(`${c.cmd} not installed`);
      return;
    }
    assert.equal(r.status, 0, r.stderr);
  });

  test(`events.h size assertions fire in ${c.lang} when a layout changes`, (t) => {
    // the structs no longer have their asserted sizes
    const r = compile(c.cmd, c.args, ['-Wno-padded'], SHRUNK);
    if (r.missing) {
      t.skip(`${c.cmd} not installed`);
      return;
    }
    assert.notEqual(r.status, 0, 'a changed layout must not compile');
    for (const what of ['strata_hdr layout', 'sock event layout', 'netdev event layout', 'tail event layout']) assert.match(r.stderr, new RegExp(what));
    assert.doesNotMatch(r.stderr, /conflicting|redefinition|incomplete type/, 'only the assertions fail, after the structs exist');
  });
}
