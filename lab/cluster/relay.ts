// The cluster's collector address: a TCP relay from a port in the collector netns (on the fabric,
// reachable from every pod through its node) to an address on this machine's loopback (a test's
// OTLP receiver, a local collector). Pods cannot reach the root netns' loopback, and the lab
// creates no link in the root netns, so the listening socket is made inside the collector netns by
// a short-lived child (`ip netns exec ... relay.ts --listen-child`) and handed to this process over
// the IPC channel: a socket keeps the netns it was made in, whoever holds it.
//   node lab/cluster/relay.ts --netns <ns> --port <port> --to <host:port>
import { spawn } from 'node:child_process';
import net from 'node:net';
import { parseArgs } from 'node:util';

function listenChild(port: number): void {
  const server = net.createServer();
  server.on('error', (e) => {
    console.error(`relay: listen on :${port}: ${e.message}`);
    process.exit(1);
  });
  server.listen(port, '0.0.0.0', () => process.send?.('server', server, () => process.exit(0)));
}

function relay(netns: string, port: number, to: { host: string; port: number }): void {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, import.meta.filename, '--listen-child', '--port', String(port)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let listening = false;
  child.on('exit', (code) => {
    if (!listening) {
      console.error(`relay: the listener in ${netns} exited (code ${code}) before handing over its socket`);
      process.exit(1);
    }
  });
  child.on('message', (msg, handle) => {
    if (msg !== 'server' || !(handle instanceof net.Server)) return;
    listening = true;
    handle.on('connection', (inbound) => {
      const outbound = net.connect(to.port, to.host);
      inbound.pipe(outbound).pipe(inbound);
      const drop = () => {
        inbound.destroy();
        outbound.destroy();
      };
      inbound.on('error', drop);
      outbound.on('error', drop);
    });
    console.log(`relay: ${netns} 0.0.0.0:${port} -> ${to.host}:${to.port} pid ${process.pid}`);
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { netns: { type: 'string' }, port: { type: 'string' }, to: { type: 'string' }, 'listen-child': { type: 'boolean' } },
  });
  const port = Number(values.port);
  if (values['listen-child']) {
    listenChild(port);
  } else {
    const m = /^(.+):(\d+)$/.exec(values.to ?? '');
    if (!values.netns || !m || !port) {
      console.error('usage: node lab/cluster/relay.ts --netns <ns> --port <port> --to <host:port>');
      process.exit(2);
    }
    relay(values.netns, port, { host: m[1] as string, port: Number(m[2]) });
  }
}
