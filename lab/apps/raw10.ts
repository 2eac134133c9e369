// A second server in the app pod: HTTP/1.0 with a close-delimited body, on plain node:net.
// Reads one request head (and a Content-Length body, if any), answers
//   HTTP/1.0 200 OK / Content-Type: text/plain / no Content-Length
// with `path=<path>\n` repeated to about 2 KB, then closes the connection (FIN).
// A head that does not parse gets a 400 the same way.
import { createServer, type Socket } from 'node:net';

const PORT = Number(process.env.PORT ?? 8081);
const BODY_BYTES = 2048;
const MAX_HEAD = 64 * 1024;

export function raw10Body(path: string): string {
  const line = `path=${path}\n`;
  return line.repeat(Math.max(1, Math.ceil(BODY_BYTES / Buffer.byteLength(line))));
}

function answer(sock: Socket, status: string, body: string): void {
  sock.end(`HTTP/1.0 ${status}\r\nContent-Type: text/plain\r\n\r\n${body}`);
}

function serve(sock: Socket): void {
  let buf = Buffer.alloc(0);
  let bodyLeft = -1; // -1: still reading the head
  let path = '/';
  const onData = (chunk: Buffer) => {
    if (bodyLeft < 0) {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) finish('400 Bad Request', 'head too large\n');
        return;
      }
      const head = buf.subarray(0, end).toString('latin1');
      const m = /^[A-Z]+ (\S+) HTTP\/1\.[01]$/.exec(head.split('\r\n')[0] ?? '');
      if (!m) return finish('400 Bad Request', 'bad request line\n');
      path = (m[1] ?? '/').split('?')[0] ?? '/';
      const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
      bodyLeft = (cl ? Number(cl[1]) : 0) - (buf.length - end - 4);
    } else {
      bodyLeft -= chunk.length;
    }
    if (bodyLeft <= 0) finish('200 OK', raw10Body(path));
  };
  const finish = (status: string, body: string) => {
    sock.off('data', onData);
    sock.resume(); // drain whatever else arrives, so close sends FIN rather than RST
    answer(sock, status, body);
  };
  sock.on('data', onData);
  sock.on('error', () => {});
  sock.setTimeout(30_000, () => sock.destroy());
}

if (import.meta.main) {
  createServer(serve).listen(PORT, '0.0.0.0', () => {
    console.log(`raw10 listening on 0.0.0.0:${PORT} pid ${process.pid}`);
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}
