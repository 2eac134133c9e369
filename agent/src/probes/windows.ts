// Shedding by time (issue 8): observation windows.
//
// In-kernel sampling (shedding.ts) cuts what the agent does per request, not what the probes cost:
// a shed request still runs every socket program in its syscalls and every packet program on its
// packets, and every process on the node takes the syscall tracepoints' slow path, traced or not.
// Measured on the lab, the probes cost NGINX and the app about as much with 99.9 % of requests
// shed as with none (bench/README.md, "the floor"). So when keeping everything would cost more
// than the agent's budget and the agent may work faster than its budget for a while
// (shedding.windowCpu > shedding.cpuBudget), it observes in windows instead: the windowed
// families (registry: `windowed`) are attached for a share of every period and detached for the
// rest, when nothing on the node pays for them, and the packet families pass over every packet
// (`paused`, one map lookup). While a window is open the inner controller (shedding.ts) holds the
// agent to windowCpu; the share open is what keeps its average within cpuBudget:
//
//   demand D = offered requests/s x CPU per kept request     (what keeping everything would cost)
//   share open = cpuBudget / min(D, windowCpu)               (1: no windows)
//
// A window opens and closes on whole requests: for drainMs after it opens (settling) and before it
// closes (draining) the kernel keeps no new request (every root message is shed) while those it
// kept go on; the socket and flow state from before a pause starts afresh (strata_sampling.window).
// Then the packet families pause and the syscall programs are detached (on a pool thread: a tracepoint's detach waits for RCU
// grace periods, ~0.1 s per program on a VM). The next window opens once that is done. Requests
// the node served while closed are not seen at all: the metrics say how long the windows were
// closed and the offered rate seen while open.

export interface WindowOptions {
  /** the agent's average CPU budget, cores (shedding.cpuBudget) */
  cpuBudget: number;
  /** CPU the agent may use while a window is open, cores; windows only when above cpuBudget (0: never) */
  windowCpu: number;
  /** one window and the pause after it, ms */
  periodMs: number;
  /** new requests are not kept for this long before a window closes, so the kept ones end inside it */
  drainMs: number;
  /** a window is open at least this share of the period */
  minOpenShare: number;
  /** no windows this long after start (loading, JIT: the learned cost is not yet worth much) */
  warmupMs?: number;
  /**
   * while steady (all attached), the load is looked at this often rather than once a period: a
   * load back after a lull would otherwise pay for the probes, attached, for up to a period
   * before windows begin again (they end only after a whole period of little load)
   */
  steadyCheckMs?: number;
}

export interface WindowIo {
  /**
   * attaches the windowed programs (synchronously) and lifts the packet families' pause; `keep`:
   * the share of requests the agent can keep within windowCpu while it is open (windowCpu / D),
   * where the inner controller starts from
   */
  open: (keep: number) => void;
  /** the kernel keeps no new request from now on; those it kept go on */
  drain: () => void;
  /** drainMs after a window opened: what began before it is no longer in flight (settling ends) */
  settled: () => void;
  /** pauses the packet families and detaches the windowed programs; resolves once detached */
  close: () => Promise<unknown>;
  /** windows start (true: the inner controller works to windowCpu, from `keep`) or stop (false: to cpuBudget) */
  active: (on: boolean, keep: number) => void;
  /** requests the kernel saw so far, kept or shed (it counts only while the programs are attached) */
  requests: () => number;
  /** the learned CPU µs per kept request (LoadShedder) */
  costUs: () => number;
  nowMs?: () => number;
  log?: (msg: string) => void;
}

/** the phases in order (strata_observation_window_phase{phase}) */
export const WINDOW_PHASES = ['steady', 'open', 'draining', 'closing', 'closed'] as const;
export type WindowPhase = (typeof WINDOW_PHASES)[number];

export interface WindowState {
  phase: WindowPhase;
  /** share of the period a window is open (1: no windows) */
  openShare: number;
  /** share of the period new requests are kept: open, less settling and draining */
  keptShare: number;
  /** windows opened */
  windows: number;
  /**
   * times the windowed programs attached again after a pause: the kernel's window number
   * (strata_sampling.window). A socket last seen under an older one missed what it moved
   * meanwhile; the first window, begun with the programs attached, keeps the number.
   */
  attaches: number;
  /** ms the windowed programs were detached (closing and closed) */
  closedMs: number;
  /** offered requests per second while the programs were attached, over the last period */
  offeredPerS: number;
  /** the demand D of the last decision, cores */
  demandCores: number;
  /** the share of requests kept while a window is open: windowCpu / D, at most 1 */
  windowKeep: number;
  /** how long the last detach took, ms */
  lastDetachMs: number;
  /** detaches that failed (the programs may still run: the next window attaches what is missing) */
  detachErrors: number;
}

const DEFAULT_WARMUP_MS = 3000;
const DEFAULT_STEADY_CHECK_MS = 1000;
/** windows start when the share falls to this (and stop when it reaches 1): no flapping at the edge */
const ENTER_SHARE = 0.9;

/** The share of time open for a demand of `demand` cores (1: no windows). */
export function openShare(demand: number, opts: Pick<WindowOptions, 'cpuBudget' | 'windowCpu' | 'minOpenShare'>): number {
  const { cpuBudget, windowCpu } = opts;
  if (windowCpu <= cpuBudget || cpuBudget <= 0 || !(demand > cpuBudget)) return 1;
  return Math.min(1, Math.max(opts.minOpenShare, cpuBudget / Math.min(demand, windowCpu)));
}

export class ProbeWindows {
  readonly state: WindowState = { phase: 'steady', openShare: 1, keptShare: 1, windows: 0, attaches: 0, closedMs: 0, offeredPerS: 0, demandCores: 0, windowKeep: 1, lastDetachMs: 0, detachErrors: 0 };
  private readonly opts: WindowOptions;
  private readonly io: WindowIo;
  private readonly now: () => number;
  private readonly startMs: number;
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;
  /** the request counter and the attached time since the last decision */
  private lastReq: number;
  private attachedMs = 0;
  private attachedSince: number | undefined;
  private closedSince = 0;
  private closing: Promise<unknown> | undefined;
  private settlingNow = false;

  constructor(opts: WindowOptions, io: WindowIo) {
    this.opts = opts;
    this.io = io;
    this.now = io.nowMs ?? (() => performance.now());
    this.startMs = this.now();
    this.lastReq = io.requests();
    this.attachedSince = this.startMs;
  }

  /** decides after one period (the offered load measured over it), then every period */
  start(): void {
    this.schedule(() => this.decide(), this.opts.periodMs);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  /** windows are on (open, draining, closing or closed) */
  get active(): boolean {
    return this.state.phase !== 'steady';
  }

  /** the windowed programs are attached and new requests are kept (steady or open) */
  get observing(): boolean {
    return this.state.phase === 'steady' || this.state.phase === 'open';
  }

  /**
   * a window opened less than drainMs ago: no new request is kept yet (a message whose cause was
   * sent or read just before the programs attached would be the root of a partial trace)
   */
  get settling(): boolean {
    return this.settlingNow;
  }

  /** the windowed programs are detached, or being detached (closing, closed) */
  get detached(): boolean {
    return this.state.phase === 'closing' || this.state.phase === 'closed';
  }

  /** the ms closed so far, the running pause included */
  closedMsNow(): number {
    const p = this.state.phase;
    return this.state.closedMs + (p === 'closing' || p === 'closed' ? this.now() - this.closedSince : 0);
  }

  private schedule(fn: () => void, ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers = this.timers.filter((x) => x !== t);
      if (!this.stopped) fn();
    }, Math.max(0, ms));
    t.unref();
    this.timers.push(t);
  }

  /** a period begins: measure the offered load, choose the share, open the next window (or stay steady) */
  decide(): void {
    if (this.stopped) return;
    if (this.closing) {
      // the last detach is still running: attaching now would run both for a while
      void this.closing.then(() => this.decide());
      return;
    }
    const now = this.now();
    const req = this.io.requests();
    const attached = this.attachedMs + (this.attachedSince === undefined ? 0 : now - this.attachedSince);
    if (attached > 0) this.state.offeredPerS = ((req - this.lastReq) * 1000) / attached;
    this.lastReq = req;
    this.attachedMs = 0;
    if (this.attachedSince !== undefined) this.attachedSince = now;
    const demand = (this.state.offeredPerS * this.io.costUs()) / 1e6;
    this.state.demandCores = demand;
    const warm = now - this.startMs >= (this.opts.warmupMs ?? DEFAULT_WARMUP_MS);
    // a window settles and drains for drainMs each: it keeps requests for at least as long again
    const P = this.opts.periodMs;
    const minShare = Math.max(this.opts.minOpenShare, (3 * this.opts.drainMs) / P);
    let share = warm ? openShare(demand, { ...this.opts, minOpenShare: minShare }) : 1;
    // the pause must hold the detach (as long as the last one took, and half again) and the drain:
    // a share above that is cut to it, unless it is so near 1 that windows are not worth it
    const maxShare = 1 - (1.5 * this.state.lastDetachMs + this.opts.drainMs) / P;
    if (share >= 1 || (!this.active && share > ENTER_SHARE) || (share > maxShare && maxShare < minShare)) share = 1;
    else if (share > maxShare) share = maxShare;
    this.state.openShare = share;
    this.state.keptShare = share >= 1 ? 1 : share - (2 * this.opts.drainMs) / P;
    if (share >= 1) {
      if (this.active) {
        if (this.state.phase === 'closed') this.openNow();
        this.state.phase = 'steady';
        this.io.active(false, 1);
        this.io.log?.(`strata: observation windows end: keeping everything would cost ${demand.toFixed(2)} cores (budget ${this.opts.cpuBudget})`);
      }
      this.schedule(() => this.decide(), Math.min(P, this.opts.steadyCheckMs ?? DEFAULT_STEADY_CHECK_MS));
      return;
    }
    this.state.windowKeep = Math.min(1, this.opts.windowCpu / demand);
    if (!this.active) {
      this.io.active(true, this.state.windowKeep);
      this.io.log?.(`strata: observation windows begin: keeping everything would cost ${demand.toFixed(2)} cores at ${Math.round(this.state.offeredPerS)} requests/s (budget ${this.opts.cpuBudget}): open ${(share * 100).toFixed(1)} % of every ${P} ms (shedding.windowCpu ${this.opts.windowCpu})`);
    }
    if (this.state.phase === 'closed') this.openNow();
    else this.state.windows++;
    this.state.phase = 'open';
    // the close is timed from the drain as it happened: a late timer (the agent's thread busy
    // or starved) must not shorten the drain
    this.schedule(() => this.drain(), share * P - this.opts.drainMs);
    this.schedule(() => this.decide(), P);
  }

  private openNow(): void {
    this.state.phase = 'open';
    // counted first: the kernel takes the new window's number as the programs attach
    this.state.windows++;
    this.state.attaches++;
    this.settlingNow = true;
    this.io.open(this.state.windowKeep);
    this.schedule(() => {
      this.settlingNow = false;
      this.io.settled();
    }, this.opts.drainMs);
    this.state.closedMs += this.now() - this.closedSince;
    this.attachedSince = this.now();
  }

  private drain(): void {
    if (this.state.phase !== 'open') return;
    this.state.phase = 'draining';
    this.io.drain();
    this.schedule(() => this.close(), this.opts.drainMs);
  }

  private close(): void {
    if (this.state.phase !== 'draining' && this.state.phase !== 'open') return;
    const now = this.now();
    if (this.attachedSince !== undefined) this.attachedMs += now - this.attachedSince;
    this.attachedSince = undefined;
    this.state.phase = 'closing';
    this.closedSince = now;
    const t0 = now;
    this.closing = this.io.close().then(
      () => {
        this.state.lastDetachMs = this.now() - t0;
      },
      (e: unknown) => {
        this.state.detachErrors++;
        this.io.log?.(`strata: warning: detaching the windowed probes failed: ${(e as Error).message}`);
      },
    ).finally(() => {
      this.closing = undefined;
      if (this.state.phase === 'closing') this.state.phase = 'closed';
    });
  }
}
