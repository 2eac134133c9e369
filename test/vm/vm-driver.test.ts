// lab/vm.ts on a real VM (scripts/vm.sh, Debian's 6.1 kernel under qemu TCG): a job's exit code,
// stdout, stderr and files come back; the guest's own deadline ends a job that hangs (124); a
// kernel panic is STRATA_ERR_VM_CRASH and a VM that never powers off STRATA_ERR_VM_TIMEOUT, and
// either way no qemu process and no output directory is left behind.
// Under CI=true a missing piece (not root, a VM that cannot be built) fails; elsewhere it skips.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { before, describe, test } from 'node:test';
import { STRATA_ERR_VM_CRASH, STRATA_ERR_VM_TIMEOUT, type StrataError } from '../../agent/src/errors.ts';
import { type VmResult, runInVm } from '../../lab/vm.ts';
import { gate } from '../helpers/kernel.ts';
import { prepareVm } from '../helpers/vm.ts';

const KERNEL = '6.1';

/** processes whose command line names this output directory (qemu shares it as 9p "out") */
function qemuFor(outDir: string): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`path=${outDir},`);
    } catch {
      return false;
    }
  }).map(Number);
}

function assertGone(outDir: string): void {
  assert.ok(outDir.length > 0);
  assert.equal(existsSync(outDir), false, `${outDir} removed`);
  assert.deepEqual(qemuFor(outDir), [], 'no qemu left');
}

describe('lab/vm.ts: runInVm', () => {
  let why: string | undefined;
  before(async () => {
    ({ why } = await prepareVm([KERNEL]));
  });
  // a job of shell builtins and coreutils: seconds once booted (measured: guest up at 4-10 s)
  const JOB_MS = 60_000;

  test('the job runs as root in this checkout; exit code, stdout, stderr and its files come back', async (t) => {
    if (!gate(t, why)) return;
    const r: VmResult = await runInVm({
      kernel: KERNEL, timeoutMs: JOB_MS,
      script: 'id -u; pwd; uname -r >&2; mkdir -p "$STRATA_VM_OUT/sub"; echo "$STRATA_VM_KERNEL" >"$STRATA_VM_OUT/sub/kernel"; test -w package.json && echo writable; exit 3',
    });
    assert.equal(r.exitCode, 3);
    assert.deepEqual(r.stdout.trim().split('\n'), ['0', process.cwd()], 'root, in the checkout, which is read-only');
    assert.match(r.stderr, /^\d+\.\d+/);
    assert.deepEqual(r.files, { 'sub/kernel': `${KERNEL}\n` });
    assert.match(r.console, /strata-vm: guest up at [\d.]+ s/);
    assert.ok(r.bootS !== undefined && r.bootS > 0);
    assertGone(r.outDir);
  });

  test("a job that hangs ends at the guest's own deadline (124) and the VM powers off", async (t) => {
    if (!gate(t, why)) return;
    const r = await runInVm({ kernel: KERNEL, timeoutMs: 3_000, script: 'echo started; sleep 600' });
    assert.equal(r.exitCode, 124);
    assert.equal(r.stdout, 'started\n');
    assertGone(r.outDir);
  });

  test('a kernel panic: STRATA_ERR_VM_CRASH with the console; nothing left', async (t) => {
    if (!gate(t, why)) return;
    const e = (await runInVm({ kernel: KERNEL, timeoutMs: JOB_MS, script: 'echo c >/proc/sysrq-trigger' }).then(() => assert.fail('no error'), (x: unknown) => x)) as StrataError;
    assert.equal(e.code, STRATA_ERR_VM_CRASH, e.message);
    assert.match(String(e.detail?.console), /sysrq|Kernel panic/i);
    assertGone(String(e.detail?.outDir));
  });

  test('a VM that does not power off in time: killed, STRATA_ERR_VM_TIMEOUT; nothing left', async (t) => {
    if (!gate(t, why)) return;
    const e = (await runInVm({ kernel: KERNEL, timeoutMs: 600_000, vmTimeoutMs: 20_000, script: 'sleep 600' }).then(() => assert.fail('no error'), (x: unknown) => x)) as StrataError;
    assert.equal(e.code, STRATA_ERR_VM_TIMEOUT, e.message);
    assertGone(String(e.detail?.outDir));
  });
});
