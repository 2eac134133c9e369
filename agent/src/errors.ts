// Error codes of the agent, in one place. Every error that reaches a user carries one.
export const STRATA_ERR_USAGE = 'STRATA_ERR_USAGE';
export const STRATA_ERR_CONFIG = 'STRATA_ERR_CONFIG';
export const STRATA_ERR_PODS_FILE = 'STRATA_ERR_PODS_FILE';
export const STRATA_ERR_PROBE_LOAD = 'STRATA_ERR_PROBE_LOAD';
export const STRATA_ERR_PROBE_ATTACH = 'STRATA_ERR_PROBE_ATTACH';
export const STRATA_ERR_NOT_PERMITTED = 'STRATA_ERR_NOT_PERMITTED';
/** discovery.kubeconfig or the in-cluster service account: unreadable, malformed, or an authentication strata does not support (exec, auth-provider, basic) */
export const STRATA_ERR_KUBECONFIG = 'STRATA_ERR_KUBECONFIG';
/** a request to the Kubernetes API server failed: HTTP status, network, timeout, a body over its bound */
export const STRATA_ERR_KUBE_API = 'STRATA_ERR_KUBE_API';
/** a Kubernetes watch stream was unusable: a line over the bound or not an event, an ERROR event other than 410 Gone */
export const STRATA_ERR_KUBE_WATCH = 'STRATA_ERR_KUBE_WATCH';
/** a peer agent's stitch batch had a bad or missing HMAC signature (stitch.secret differs) */
export const STRATA_ERR_PEER_AUTH = 'STRATA_ERR_PEER_AUTH';
/** a peer agent's stitch batch was signed but malformed or too large */
export const STRATA_ERR_PEER_BATCH = 'STRATA_ERR_PEER_BATCH';
/** `strata report`: the traces directory has no readable Jaeger JSON */
export const STRATA_ERR_REPORT_INPUT = 'STRATA_ERR_REPORT_INPUT';
/** flushing and detaching on SIGTERM/SIGINT took longer than shutdown.timeoutS */
export const STRATA_ERR_SHUTDOWN_TIMEOUT = 'STRATA_ERR_SHUTDOWN_TIMEOUT';
/** `strata demo`: not root, not built (scripts/setup.sh), a lab program missing, an agent or a request failed */
export const STRATA_ERR_DEMO = 'STRATA_ERR_DEMO';
/** `strata demo`: a mode (uninstrumented, instrumented) produced no complete trace */
export const STRATA_ERR_DEMO_INCOMPLETE = 'STRATA_ERR_DEMO_INCOMPLETE';

/** the test VM (lab/vm.ts): scripts/vm.sh could not build it; the guest's job outlived its deadline; qemu ended without the job's exit code (a panic, a failed mount in the initramfs) */
export const STRATA_ERR_VM_BUILD = 'STRATA_ERR_VM_BUILD';
export const STRATA_ERR_VM_TIMEOUT = 'STRATA_ERR_VM_TIMEOUT';
export const STRATA_ERR_VM_CRASH = 'STRATA_ERR_VM_CRASH';

/** exit codes of `strata` (README: "Exit codes") */
export const EXIT_OK = 0;
export const EXIT_UNEXPECTED = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONFIG = 3;
export const EXIT_PROBE = 4;
export const EXIT_CHECK = 5;

export class StrataError extends Error {
  readonly code: string;
  readonly exitCode: number;
  readonly detail?: Record<string, unknown>;

  constructor(code: string, message: string, exitCode: number, detail?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.exitCode = exitCode;
    this.detail = detail;
  }
}
