// Load shedding on purpose (issue 8): when the agent costs more CPU than its budget, the kernel
// stops reporting a share of the requests, whole: the decision is made once per root message
// (a request from outside the traced set) by a hash every observer computes alike, and every
// message it causes inherits it in the kernel (bpf/include/common.bpf.h). Nothing is dropped at
// random further down: the JS queue and the exporter see only kept requests.
//
// The controller is multiplicative: the agent's own cost is roughly proportional to the share of
// requests it keeps, so the keep ratio moves by budget / usage (smoothed over a few intervals, so a
// burst of a few hundred ms is absorbed rather than shed; nothing for the first seconds, while
// the agent loads and scans), halves at once when the ring buffer or the JS queue dropped
// anything, and creeps back up when usage is well below budget.

export interface SheddingOptions {
  /** CPU the agent may use, in cores (user + system of the whole process); 0 = never shed */
  cpuBudget: number;
  /** the keep ratio at start (with cpuBudget 0: for good) */
  keepRatio: number;
  /** the keep ratio never goes below this (some traces always come through) */
  minKeepRatio: number;
  /** how often usage is measured and the ratio adjusted */
  intervalMs: number;
  /** no CPU-based shedding this long after start (loading, JIT, first discovery scan); losses still count */
  warmupMs?: number;
  /** weight of the newest interval in the smoothed usage (1 = no smoothing): a short burst is not a trend */
  smoothing?: number;
}

const DEFAULT_WARMUP_MS = 3000;
const DEFAULT_SMOOTHING = 0.3;

export interface SheddingState {
  keepRatio: number;
  /** the kernel's shed threshold (root hashes below it are shed), 0..2^32-1 */
  shed: number;
  gen: number;
  /** CPU cores the agent used over the last interval */
  usageCores: number;
  adjustments: number;
}

const TWO32 = 2 ** 32;

export class LoadShedder {
  readonly state: SheddingState = { keepRatio: 1, shed: 0, gen: 0, usageCores: 0, adjustments: 0 };
  private lastCpuUs: number;
  private lastMs: number;
  private lastLosses: number;
  private readonly startMs: number;
  private smoothed: number | undefined;

  private readonly opts: SheddingOptions;
  /** writes the kernel's threshold (ProbeSet.setSampling) */
  private readonly write: (shed: number, gen: number) => void;
  /** events lost so far before the correlator (ring buffer full, JS queue full) */
  private readonly losses: () => number;
  private readonly cpuUs: () => number;
  private readonly nowMs: () => number;

  constructor(
    opts: SheddingOptions,
    write: (shed: number, gen: number) => void,
    losses: () => number,
    cpuUs: () => number = () => {
      const u = process.cpuUsage();
      return u.user + u.system;
    },
    nowMs: () => number = () => performance.now(),
  ) {
    this.opts = opts;
    this.write = write;
    this.losses = losses;
    this.cpuUs = cpuUs;
    this.nowMs = nowMs;
    this.lastCpuUs = cpuUs();
    this.lastMs = nowMs();
    this.lastLosses = losses();
    this.startMs = this.lastMs;
  }

  /**
   * tick() when an interval has passed: called for every batch as well as from a timer, because a
   * backlog of batches runs in one turn of the event loop, and timers wait behind it.
   */
  maybeTick(): void {
    if (this.nowMs() - this.lastMs >= this.opts.intervalMs) this.tick();
  }

  /** Measures the last interval and moves the keep ratio; call every opts.intervalMs. */
  tick(): void {
    const cpu = this.cpuUs();
    const now = this.nowMs();
    const losses = this.losses();
    const wallMs = now - this.lastMs;
    if (wallMs <= 0) return;
    const usage = (cpu - this.lastCpuUs) / 1000 / wallMs;
    const lost = losses > this.lastLosses;
    this.lastCpuUs = cpu;
    this.lastMs = now;
    this.lastLosses = losses;
    this.state.usageCores = usage;
    const a = this.opts.smoothing ?? DEFAULT_SMOOTHING;
    const avg = this.smoothed === undefined ? usage : a * usage + (1 - a) * this.smoothed;
    this.smoothed = avg;
    const budget = this.opts.cpuBudget;
    if (budget <= 0) return;
    const warm = now - this.startMs >= (this.opts.warmupMs ?? DEFAULT_WARMUP_MS);
    let keep = this.state.keepRatio;
    if (lost) keep *= 0.5;
    else if (!warm) return;
    else if (avg > budget) keep *= Math.max(0.25, (0.9 * budget) / avg);
    else if (avg < 0.6 * budget && keep < 1) keep *= Math.min(2, (0.8 * budget) / Math.max(avg, 1e-6));
    keep = Math.min(1, Math.max(this.opts.minKeepRatio, keep));
    this.set(keep);
  }

  /** Sets the keep ratio directly (tests, a fixed sampling rate). */
  set(keep: number): void {
    const shed = keep >= 1 ? 0 : Math.min(TWO32 - 1, Math.round((1 - keep) * TWO32));
    this.state.keepRatio = keep;
    if (shed === this.state.shed) return;
    // decisions threads remember from before shedding started are void
    if (this.state.shed === 0) this.state.gen = (this.state.gen + 1) >>> 0;
    this.state.shed = shed;
    this.state.adjustments++;
    this.write(shed, this.state.gen);
  }
}
