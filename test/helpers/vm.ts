// Gate for the tests that boot the project's VM (lab/vm.ts): root, and the VM built (cold: the
// rootfs and the kernel packages are fetched from Debian's mirrors, minutes; warm: under a second).
import { type VmKernel, buildVm } from '../../lab/vm.ts';

/** a cold build: the rootfs (~160 s measured) and ~400 MB of kernel packages per kernel (~20 s each) */
const BUILD_TIMEOUT_MS = 30 * 60_000;

/** builds (or finds) the VM for these kernels; `why` says what is missing when it cannot run here */
export async function prepareVm(kernels: string[]): Promise<{ built: VmKernel[]; why?: string }> {
  if (process.getuid?.() !== 0) return { built: [], why: 'needs root (scripts/vm.sh builds a rootfs and installs qemu)' };
  try {
    return { built: await buildVm(kernels, BUILD_TIMEOUT_MS) };
  } catch (e) {
    return { built: [], why: `the VM could not be built: ${(e as Error).message}` };
  }
}
