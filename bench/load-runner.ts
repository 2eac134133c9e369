// The protocol of bench's load programs (loadgen.c, sysloop.c), shared by bench/run.ts and
// bench/prefilter-ab-child.ts: the program prints "ready <netns inode>" once its TCP pair is set
// up, onReady attaches whatever the variant needs (synchronously), "go" starts the measured part,
// and the result is the one JSON line it prints.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** `live`: the caller's set of running children (killed on its exit paths); this one is in it while it runs */
export function runLoad<T>(bin: string, args: string[], onReady: (netnsIno: number) => void, live?: Set<ChildProcess>): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    live?.add(child);
    let stderr = '';
    let result: T | undefined;
    let failure: unknown;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.on('error', () => {}); // the child died; 'close' reports it
    createInterface({ input: child.stdout }).on('line', (line) => {
      const ready = /^ready (\d+)$/.exec(line);
      if (ready) {
        try {
          onReady(Number(ready[1]));
          child.stdin.write('go\n');
        } catch (e) {
          failure = e;
          child.kill('SIGKILL');
        }
      } else if (line.startsWith('{')) {
        result = JSON.parse(line) as T;
      }
    });
    child.on('error', (e) => {
      failure ??= e;
    });
    child.on('close', (code, signal) => {
      live?.delete(child);
      if (failure) reject(failure);
      else if (code === 0 && result !== undefined) resolve(result);
      else reject(new Error(`${path.basename(bin)} ${args.join(' ')} exited with ${code ?? signal}: ${stderr.trim() || 'no output'}`));
    });
  });
}
