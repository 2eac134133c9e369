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
// anything (or an export queue overflowed), and creeps back up when usage is well below budget.
// CPU use shows a surge only once the agent has worked through it: by then the ring buffer holds
// seconds of work. So the kernel also counts the requests it sees, kept or shed (the offered
// load), and the controller brakes ahead of the CPU: before every batch (at most every
// RATE_WINDOW_MS), when offered requests x the keep ratio x the learned CPU cost of a kept request
// exceed twice the budget, and the work beyond the budget so far exceeds 250 ms of CPU (a burst
// of a few dozen requests is absorbed), the ratio drops at once to what the budget affords. Only
// the CPU loop raises it again, and not for a while after a loss nor while an export queue is
// past half full.
//
// The budget is for what requests cost, not for the agent's floor: ring polling, timers,
// discovery and metrics cost the same with no request at all (4-7 % of a core on the lab). The
// floor is learned from the intervals in which the kernel saw no request, and the controller
// works to usage above it (and learns the cost of a request above it), so a budget smaller than
// the floor still traces a quiet node. A node that never has a request-free interval keeps the
// floor it had (0 at start): the whole usage counts, as it did before.

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
/** the offered request rate is measured over at least this long (checked before every batch) */
const RATE_WINDOW_MS = 20;
/** the agent checks at least this often (a timer), so a window after a quiet spell stays short */
export const RATE_CHECK_MS = 50;
/**
 * CPU µs per kept request before one was measured: ~0.5 ms per request message was measured here
 * with NGINX in front of the app (two messages and ~20 spans per proxied request); erring high
 * sheds more in the first surge, the CPU loop then gives it back
 */
const INITIAL_COST_US = 1000;
/** kept requests an interval needs before its CPU per request updates the learned cost */
const MIN_COST_SAMPLE = 50;
/** the brake acts when the predicted cost is this many times the budget (else the CPU loop governs) */
const BRAKE_FACTOR = 2;
/**
 * ...and when the work predicted beyond the budget since the load began, in CPU µs, exceeds this:
 * a burst of a few dozen requests is absorbed by the queues, a sustained surge is not
 */
const BRAKE_DEBT_US = 250_000;
/** after a loss the ratio is not raised for this long: rising straight back would lose again */
const HOLD_AFTER_LOSS_MS = 2000;
/** queues fuller than this hold the ratio */
const BACKLOG_HOLD = 0.5;
/**
 * the floor follows a higher request-free interval by this share of the difference: an idle
 * interval in which the agent still works off a backlog (exports, the correlator's timers) must
 * not raise it much, while the true floor is where idle intervals bottom out
 */
const FLOOR_RISE = 0.05;
/** ...and follows a lower one by this share (one quiet interval is not the floor either) */
const FLOOR_FALL = 0.3;
/** the floor never takes more than this share of an interval's CPU from what its requests cost */
const FLOOR_MAX_SHARE = 0.5;

/** where the controller reads and writes */
export interface SheddingIo {
  /** writes the kernel's threshold (ProbeSet.setSampling) */
  write: (shed: number, gen: number) => void;
  /** work lost so far: events before the correlator (ring buffer full, JS queue full), spans at a full export queue */
  losses: () => number;
  /** requests the kernel saw so far, kept or shed (STRATA_STAT_REQUESTS); absent: no brake */
  requests?: () => number;
  /**
   * how full the agent's bounded queues are, 0..1 (the fullest export queue): past half, the ratio
   * is not raised, whatever the CPU says (a node short of CPU starves the agent: its usage then
   * looks low while its queues fill)
   */
  backlog?: () => number;
  /** the agent's CPU so far, µs (default: process.cpuUsage()) */
  cpuUs?: () => number;
  nowMs?: () => number;
}

export interface SheddingState {
  keepRatio: number;
  /** the kernel's shed threshold (root hashes below it are shed), 0..2^32-1 */
  shed: number;
  gen: number;
  /** CPU cores the agent used over the last interval */
  usageCores: number;
  adjustments: number;
  /** offered requests per second over the last rate window */
  offeredPerS: number;
  /** learned CPU µs per kept request */
  costUs: number;
  /** times the brake cut the ratio ahead of the CPU measurement */
  brakes: number;
  /** the agent's CPU with no request, cores (learned from request-free intervals): the budget is for usage above it */
  floorCores: number;
}

const TWO32 = 2 ** 32;

export class LoadShedder {
  readonly state: SheddingState = { keepRatio: 1, shed: 0, gen: 0, usageCores: 0, adjustments: 0, offeredPerS: 0, costUs: INITIAL_COST_US, brakes: 0, floorCores: 0 };
  private lastCpuUs: number;
  private lastMs: number;
  private lastLosses: number;
  private readonly startMs: number;
  private smoothed: number | undefined;

  private readonly opts: SheddingOptions;
  private readonly write: (shed: number, gen: number) => void;
  private readonly losses: () => number;
  private readonly requests: (() => number) | undefined;
  private readonly backlog: (() => number) | undefined;
  /** no raise before this time (after a loss) */
  private holdUntilMs = 0;
  /** predicted CPU µs beyond the budget, accumulated over the rate windows of a surge */
  private debtUs = 0;
  private readonly cpuUs: () => number;
  private readonly nowMs: () => number;
  /** the rate window: requests counted and when */
  private rateReq: number;
  private rateMs: number;
  /** the kernel's request count at the last tick (a request-free interval is a sample of the floor) */
  private tickReq: number;
  private floorSeen = false;
  private idleBefore = false;
  /** requests kept since the last tick (each counted at the ratio in force when the kernel saw it), up to accReq */
  private kept = 0;
  private accReq: number;
  /** between observation windows: no measuring, no adjusting */
  private suspended = false;
  /** the budget in force (cpuBudget, or shedding.windowCpu while observation windows are on) */
  private budgetCores: number;

  constructor(opts: SheddingOptions, io: SheddingIo) {
    this.opts = opts;
    this.budgetCores = opts.cpuBudget;
    this.write = io.write;
    this.losses = io.losses;
    this.requests = io.requests;
    this.backlog = io.backlog;
    this.cpuUs = io.cpuUs ?? (() => {
      const u = process.cpuUsage();
      return u.user + u.system;
    });
    this.nowMs = io.nowMs ?? (() => performance.now());
    this.lastCpuUs = this.cpuUs();
    this.lastMs = this.nowMs();
    this.lastLosses = this.losses();
    this.startMs = this.lastMs;
    this.tickReq = this.accReq = this.rateReq = this.requests?.() ?? 0;
    this.rateMs = this.lastMs;
  }

  /**
   * tick() when an interval has passed: called for every batch as well as from a timer, because a
   * backlog of batches runs in one turn of the event loop, and timers wait behind it.
   */
  maybeTick(): void {
    if (this.suspended) return;
    const now = this.nowMs();
    if (this.requests && now - this.rateMs >= RATE_WINDOW_MS) this.brake(now);
    if (now - this.lastMs >= this.opts.intervalMs) this.tick();
  }

  /** reads the kernel's request count; those since the last call count as kept at the ratio in force */
  private account(): number {
    const req = (this.requests as () => number)();
    this.kept += (req - this.accReq) * this.state.keepRatio;
    this.accReq = req;
    return req;
  }

  /** the offered load over the last rate window: cut the ratio at once when it clearly overruns the budget */
  private brake(now: number): void {
    const req = this.account();
    const windowMs = now - this.rateMs;
    const perS = ((req - this.rateReq) * 1000) / windowMs;
    this.rateReq = req;
    this.rateMs = now;
    this.state.offeredPerS = perS;
    const budgetUs = this.budgetCores * 1e6; // µs of CPU per second
    if (budgetUs <= 0) return;
    const keep = this.state.keepRatio;
    const predictedUs = perS * keep * this.state.costUs;
    // the work this window brought beyond what the budget covers, summed while it lasts
    this.debtUs = Math.max(0, this.debtUs + ((predictedUs - budgetUs) * windowMs) / 1000);
    if (predictedUs <= BRAKE_FACTOR * budgetUs || this.debtUs <= BRAKE_DEBT_US) return;
    this.debtUs = 0;
    this.state.brakes++;
    this.set(Math.max(this.opts.minKeepRatio, Math.min(keep, budgetUs / (perS * this.state.costUs))));
  }

  /** the budget the controller works to from now on (observation windows: windows.ts) */
  setBudget(cores: number): void {
    this.budgetCores = cores;
  }

  /** no measuring and no adjusting (between observation windows: the kernel sees nothing then) */
  suspend(): void {
    this.suspended = true;
  }

  /** measuring again from now: what happened while suspended is not an interval */
  resume(): void {
    if (!this.suspended) return;
    this.suspended = false;
    const now = this.nowMs();
    this.lastCpuUs = this.cpuUs();
    this.lastMs = now;
    this.lastLosses = this.losses();
    this.debtUs = 0;
    this.kept = 0;
    if (this.requests) this.tickReq = this.accReq = this.rateReq = this.requests();
    this.rateMs = now;
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
    const warm = now - this.startMs >= (this.opts.warmupMs ?? DEFAULT_WARMUP_MS);
    if (this.requests) {
      const req = this.account();
      // no request at all this interval (after the warm-up's loading): what the agent costs by itself
      // (and none the interval before: what the last requests left is worked off by then)
      const idle = req === this.tickReq;
      if (idle && this.idleBefore && warm && !lost) {
        const f = this.state.floorCores;
        this.state.floorCores = !this.floorSeen ? usage : f + (usage < f ? FLOOR_FALL : FLOOR_RISE) * (usage - f);
        this.floorSeen = true;
      }
      this.idleBefore = idle;
      this.tickReq = req;
      // CPU per kept request above the floor, learned over intervals with enough of them
      const spentUs = cpu - this.lastCpuUs;
      const workUs = Math.max((1 - FLOOR_MAX_SHARE) * spentUs, spentUs - this.state.floorCores * wallMs * 1000);
      if (this.kept >= MIN_COST_SAMPLE) this.state.costUs = 0.7 * this.state.costUs + 0.3 * Math.max(1, workUs / this.kept);
      this.kept = 0;
    }
    this.lastCpuUs = cpu;
    this.lastMs = now;
    this.lastLosses = losses;
    this.state.usageCores = usage;
    const a = this.opts.smoothing ?? DEFAULT_SMOOTHING;
    const smoothed = this.smoothed === undefined ? usage : a * usage + (1 - a) * this.smoothed;
    // the warm-up's loading is not a trend: the average starts when it ends
    this.smoothed = warm ? smoothed : undefined;
    const budget = this.budgetCores;
    if (budget <= 0) return;
    // what the requests cost: the usage above the agent's floor
    const avg = Math.max(0, smoothed - this.state.floorCores);
    let keep = this.state.keepRatio;
    if (lost) {
      keep *= 0.5;
      this.holdUntilMs = now + HOLD_AFTER_LOSS_MS;
    } else if (!warm) return;
    else if (avg > budget) keep *= Math.max(0.25, (0.9 * budget) / avg);
    else if (avg < 0.6 * budget && keep < 1 && now >= this.holdUntilMs && (this.backlog?.() ?? 0) <= BACKLOG_HOLD) {
      keep *= Math.min(2, (0.8 * budget) / Math.max(avg, 1e-6));
    }
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
