// Error codes of the lab, in one place (the agent's are in agent/src/errors.ts). Every error the
// cluster lab raises on purpose carries one, so a caller (the CLI, a test) can tell them apart.

/** the topology file is unreadable or invalid; `path` names the offending field */
export const STRATA_ERR_TOPOLOGY = 'STRATA_ERR_TOPOLOGY';
/** a program the topology needs is not installed (nginx, nft, tc, python3, ovs-vswitchd) */
export const STRATA_ERR_LAB_PREREQ = 'STRATA_ERR_LAB_PREREQ';
/** building the cluster failed at a step (what failed is in the message); everything was reaped */
export const STRATA_ERR_LAB_BUILD = 'STRATA_ERR_LAB_BUILD';
/** `up` was interrupted (SIGINT/SIGTERM); everything was reaped */
export const STRATA_ERR_LAB_ABORTED = 'STRATA_ERR_LAB_ABORTED';
/** a command needs a cluster that is up (status, fault) and there is none with this prefix */
export const STRATA_ERR_LAB_NOT_UP = 'STRATA_ERR_LAB_NOT_UP';
/** a fault names an unknown pod or node, or has no effect to apply */
export const STRATA_ERR_FAULT = 'STRATA_ERR_FAULT';
/** teardown left something behind (named in the message) */
export const STRATA_ERR_LAB_TEARDOWN = 'STRATA_ERR_LAB_TEARDOWN';

export class LabError extends Error {
  readonly code: string;
  /** for STRATA_ERR_TOPOLOGY: the field, e.g. `pods[2].node` */
  readonly path?: string;

  constructor(code: string, message: string, path?: string) {
    super(message);
    this.code = code;
    this.path = path;
  }
}
