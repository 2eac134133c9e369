// Raw TCP client for the lab, run inside the client netns:
//   echo '{"host":"10.244.1.10","port":80,"chunks":["<base64>",...],"delayMs":5,"half":false,"timeoutMs":5000}' \
//     | node lab/raw.ts
// Connects, sends each chunk as its own write (waiting for the write to be handed to the
// kernel, plus delayMs if given: traffic shaping, so a request arrives in pieces), half-closes
// the sending side afterwards if `half`, and reads until the server closes or timeoutMs passes.
// Prints one JSON line: {received: <base64>, closed, reset, timedOut}.
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RawRequest {
  host: string;
  port: number;
  /** base64 */
  chunks: string[];
  delayMs?: number;
  half?: boolean;
  timeoutMs?: number;
}

export interface RawResult {
  /** base64 of every byte received */
  received: string;
  /** the server closed (FIN) */
  closed: boolean;
  /** the connection was reset (RST) */
  reset: boolean;
  /** neither happened before timeoutMs */
  timedOut: boolean;
}

const write = (sock: Socket, b: Buffer) =>
  new Promise<void>((resolve, reject) => sock.write(b, (e) => (e ? reject(e) : resolve())));

export function rawExchange(r: RawRequest): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let connected = false;
    let done = false;
    const sock = connect({ host: r.host, port: r.port, allowHalfOpen: true });
    const finish = (how: { closed?: boolean; reset?: boolean; timedOut?: boolean }, err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err && !connected) return reject(err);
      resolve({
        received: Buffer.concat(got).toString('base64'),
        closed: how.closed ?? false,
        reset: how.reset ?? false,
        timedOut: how.timedOut ?? false,
      });
    };
    const timer = setTimeout(() => finish({ timedOut: true }), r.timeoutMs ?? 5000);
    sock.setNoDelay(true);
    sock.on('data', (b: Buffer) => got.push(b));
    sock.on('end', () => finish({ closed: true }));
    sock.on('error', (e: NodeJS.ErrnoException) => finish({ reset: e.code === 'ECONNRESET' || e.code === 'EPIPE' }, e));
    sock.on('close', () => finish({ closed: true }));
    sock.on('connect', async () => {
      connected = true;
      try {
        for (const [i, c] of r.chunks.entries()) {
          if (done) return;
          if (i > 0 && r.delayMs) await sleep(r.delayMs);
          await write(sock, Buffer.from(c, 'base64'));
        }
        if (r.half && !done) sock.end();
      } catch {
        // the server closed or reset mid-way: 'error'/'close' report it
      }
    });
  });
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RawRequest;
  process.stdout.write(`${JSON.stringify(await rawExchange(req))}\n`);
}

if (import.meta.main) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  });
}
