// Rate-limited warning lines for the export path: a backend that is down must not flood the log.

export type LogFn = (line: string) => void;

export const defaultWarn: LogFn = (line) => {
  process.stderr.write(`${line}\n`);
};

/**
 * Returns a logger that prints at most one line per `intervalMillis`; lines suppressed in between are
 * counted and the count is appended to the next line that is printed.
 */
export function rateLimitedLog(log: LogFn = defaultWarn, intervalMillis = 10_000, now: () => number = Date.now): LogFn {
  let last = Number.NEGATIVE_INFINITY;
  let suppressed = 0;
  return (line: string) => {
    const t = now();
    if (t - last < intervalMillis) {
      suppressed++;
      return;
    }
    last = t;
    const extra = suppressed > 0 ? ` (${suppressed} similar warnings suppressed)` : '';
    suppressed = 0;
    try {
      log(line + extra);
    } catch {
      // a broken logger must not break export
    }
  };
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  if (Array.isArray(err)) return err.map(errorMessage).join('; ');
  return String(err);
}
