// Watches a netns for links appearing and strata's TC filters being added, from outside the agent:
// `ip -o monitor link` and `tc monitor` (rtnetlink notifications) run as two long-lived processes
// and every line is stamped when this process reads it. A link's "appeared" and its filter's
// "attached" stamps pass through the same kind of pipe, so their difference is the latency as the
// kernel's own notifications order it (checking with `tc filter show` costs 80-150 ms a call on a
// busy 2-CPU VM, which would measure the checker).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { waitFor } from './otlp-fixture.ts';

export interface DevTimes {
  /** the link's first RTM_NEWLINK, as read */
  appeared?: number;
  /** strata's ingress filter (handle 0x57a7) added or replaced on it, as read */
  attached?: number;
  deleted?: number;
}

export class TcWatch {
  readonly devs = new Map<string, DevTimes>();
  private readonly children: ChildProcess[] = [];

  /** Starts both monitors in the netns (a name under /run/netns; "" = ours); resolves once both run. */
  async start(netns: string): Promise<void> {
    const inNs = (args: string[]): [string, string[]] => (netns ? ['ip', ['netns', 'exec', netns, ...args]] : [args[0] as string, args.slice(1)]);
    const run = (args: string[], onLine: (l: string, at: number) => void) =>
      new Promise<void>((resolve, reject) => {
        const [cmd, a] = inNs(args);
        const c = spawn(cmd, a, { stdio: ['ignore', 'pipe', 'ignore'] });
        this.children.push(c);
        createInterface({ input: c.stdout as NodeJS.ReadableStream }).on('line', (l) => onLine(l, performance.now()));
        c.once('spawn', () => resolve());
        c.once('error', reject);
      });
    await run(['ip', '-o', 'monitor', 'link'], (l, at) => {
      const m = /^(Deleted )?\d+: ([^:@\s]+)/.exec(l);
      if (!m?.[2]) return;
      const d = this.dev(m[2]);
      if (m[1]) d.deleted ??= at;
      else d.appeared ??= at;
    });
    let qdiscs = '';
    await run(['tc', 'monitor'], (l, at) => {
      const m = /filter dev (\S+) ingress .* handle 0x57a7/.exec(l);
      if (m?.[1]) this.dev(m[1]).attached ??= at;
      if (l.startsWith('qdisc clsact')) qdiscs += l;
    });
    // Both subscribed: a probe link and a qdisc on it show up in each. 'spawn' only says the
    // processes exist, not that they have joined their netlink groups yet (on a loaded machine
    // that can take seconds), so a probe link added before then is never reported: add a fresh one
    // per attempt, each attempt waiting twice as long, until both monitors report one.
    const ip = (...args: string[]) => execFileSync('ip', [...(netns ? ['-n', netns] : []), ...args], { stdio: 'ignore' });
    const deadline = performance.now() + 120_000;
    let lastError: unknown;
    for (let attempt = 0, waitMs = 500; performance.now() < deadline; attempt++, waitMs = Math.min(2 * waitMs, 8000)) {
      const [a, b] = [`sdiw${process.pid % 1000}${attempt}a`, `sdiw${process.pid % 1000}${attempt}b`];
      ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
      try {
        // an agent watching this netns may put its clsact there first: either one shows in tc monitor
        try {
          const [cmd, args] = inNs(['tc', 'qdisc', 'add', 'dev', a, 'clsact']);
          execFileSync(cmd, args, { stdio: 'ignore' });
        } catch {
          // exists already
        }
        await waitFor(() => this.devs.get(a)?.appeared !== undefined && qdiscs.includes(`dev ${a} `), 'the link and tc monitors to report a probe link', waitMs, 10);
        return;
      } catch (e) {
        lastError = e;
      } finally {
        ip('link', 'del', a);
        this.devs.delete(a);
        this.devs.delete(b);
      }
    }
    throw lastError;
  }

  private dev(name: string): DevTimes {
    let d = this.devs.get(name);
    if (!d) this.devs.set(name, (d = {}));
    return d;
  }

  stop(): void {
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
