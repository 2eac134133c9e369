// What test/vm/guest-families.ts reports from inside the VM, and what the kernel matrix expects of it.

export interface FamilyReport {
  name: string;
  variant?: string;
  loaded: boolean;
  attached: boolean;
  /** when it failed: errno name, stage, message */
  error?: { code: string; stage: string; message: string };
  /** events that arrived for the test's traffic, by kind */
  events: Record<string, number>;
}

export interface GuestReport {
  release: string;
  families: FamilyReport[];
  /** every family that attached saw every kind of event its traffic should give */
  complete: boolean;
  waitedMs: number;
}

/** what each family must see for this traffic (a request and its response on one connection) */
export const EXPECTED: Record<string, string[]> = {
  sock_syscalls: ['accept', 'read', 'write', 'close', 'state'],
  veth_tc: ['ingress', 'egress'],
  net_dev: ['rx', 'queue', 'xmit'],
};
