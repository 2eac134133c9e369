// The peer channel of cross-node stitching: which node owns an address (pod CIDR -> node), a
// bounded outbox per peer flushed in batches, and the HTTP endpoint that takes batches in.
// An unreachable peer costs counters, never memory: each outbox holds at most maxPending mappings
// (the oldest are dropped and counted) and at most one request in flight.
import { type IncomingMessage, type Server, type ServerResponse, createServer, request } from 'node:http';
import { STRATA_ERR_PEER_AUTH, StrataError } from '../errors.ts';
import { PEER_PATH, SIGNATURE_HEADER, type PeerMapping, encodeBatch, mappingBytes, openBatch, sign } from './protocol.ts';

export interface PeerNode {
  name: string;
  /** pod CIDR, IPv4 a.b.c.d/n */
  podCidr: string;
  /** base URL of its agent's peer endpoint, e.g. http://172.18.0.12:9465 */
  address: string;
}

export interface PeerOptions {
  /** this node (its own entry in `peers` is skipped) */
  nodeName: string;
  peers: readonly PeerNode[];
  secret: Buffer;
  /** flush a peer's outbox at least this often */
  flushMs: number;
  /** or as soon as it holds this many mappings */
  batchMax: number;
  /** body size limit, both ways */
  maxBatchBytes: number;
  /** mappings waiting per peer, at most (then the oldest are dropped) */
  maxPending: number;
  /** a batch POST taking longer is abandoned and counted */
  timeoutMs: number;
}

export interface PeerStats {
  /** mappings delivered to peers (2xx), received and accepted from peers */
  sent: number;
  received: number;
  /** batches refused: bad signature; malformed or too large */
  rejectedAuth: number;
  rejectedBatch: number;
  /** mappings dropped: outbox full (oldest), peer errors/unreachable, no peer for the address */
  droppedQueueFull: number;
  droppedSendError: number;
  droppedNoPeer: number;
  /** batch POSTs abandoned after timeoutMs */
  timeouts: number;
  /** batches sent, and the last estimate of (receiver clock - sender clock) in ms per peer */
  batchesSent: number;
  batchesReceived: number;
}

/** one peer's side of the channel: what reached it, what was lost on the way to it, and whether it answers */
export interface PeerLinkStats {
  delivered: number;
  /** mappings for this peer not delivered: outbox full (oldest dropped); unreachable, refused or timed out */
  droppedQueueFull: number;
  droppedSendError: number;
  /** false from a failed batch until the next delivered one (true before any batch) */
  up: boolean;
  /** mappings waiting in its outbox now */
  pending: number;
}

interface Cidr {
  net: number;
  mask: number;
}

export function parseCidr(s: string): Cidr | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (o.some((x) => x > 255) || bits > 32) return undefined;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { net: (((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0 & mask) >>> 0, mask };
}

function ipv4(s: string): number | undefined {
  const p = s.split('.');
  if (p.length !== 4) return undefined;
  let v = 0;
  for (const x of p) {
    const n = Number(x);
    if (!/^\d{1,3}$/.test(x) || n > 255) return undefined;
    v = (v * 256) + n;
  }
  return v;
}

class Outbox {
  readonly peer: PeerNode;
  queue: PeerMapping[] = [];
  inFlight = false;
  delivered = 0;
  droppedQueueFull = 0;
  droppedSendError = 0;
  up = true;
  constructor(peer: PeerNode) {
    this.peer = peer;
  }
}

export class Peers {
  readonly stats: PeerStats = { sent: 0, received: 0, rejectedAuth: 0, rejectedBatch: 0, droppedQueueFull: 0, droppedSendError: 0, droppedNoPeer: 0, timeouts: 0, batchesSent: 0, batchesReceived: 0 };
  /** receiver clock minus sender clock (ms) at the last batch, per sending node (skew is recorded, not corrected) */
  readonly skewMs = new Map<string, number>();
  private readonly opts: PeerOptions;
  private nets: { cidr: Cidr; box: Outbox }[] = [];
  private boxes: Outbox[] = [];
  private ownCidr?: Cidr;
  private timer?: NodeJS.Timeout;
  private server?: Server;
  private onMappings: (from: string, m: PeerMapping[], skewMs: number) => void = () => {};
  private readonly warn: (msg: string) => void;
  private warned = new Set<string>();

  constructor(opts: PeerOptions, warn: (msg: string) => void = () => {}) {
    this.opts = opts;
    this.warn = warn;
    this.setPeers(opts.peers);
  }

  /**
   * Replaces the node list (stitch.peersFrom=kubernetes: the Node objects as they change). A peer
   * whose name and address stay keeps its outbox; the mappings waiting for one that left are
   * dropped and counted (no peer). Throws STRATA_ERR_CONFIG on a CIDR that is not IPv4, leaving the
   * list as it was.
   */
  setPeers(peers: readonly PeerNode[]): void {
    const old = new Map(this.boxes.map((b) => [`${b.peer.name}\0${b.peer.address}`, b]));
    const nets: { cidr: Cidr; box: Outbox }[] = [];
    const boxes: Outbox[] = [];
    let own: Cidr | undefined;
    for (const p of peers) {
      const cidr = parseCidr(p.podCidr);
      if (!cidr) throw new StrataError('STRATA_ERR_CONFIG', `stitch.peers: ${p.name}: podCidr "${p.podCidr}" is not an IPv4 CIDR`, 3);
      if (p.name === this.opts.nodeName) {
        own = cidr;
        continue;
      }
      const k = `${p.name}\0${p.address}`;
      const box = old.get(k) ?? new Outbox(p);
      old.delete(k);
      boxes.push(box);
      nets.push({ cidr, box });
    }
    for (const gone of old.values()) this.stats.droppedNoPeer += gone.queue.splice(0).length;
    this.nets = nets;
    this.boxes = boxes;
    this.ownCidr = own;
  }

  /** the other nodes known (their agents get mappings) */
  get peerCount(): number {
    return this.boxes.length;
  }

  /** is this address a pod of another node (a peer whose agent may know the trace)? */
  isPeerAddress(ip: string): boolean {
    return this.boxOf(ip) !== undefined;
  }

  private boxOf(ip: string): Outbox | undefined {
    const v = ipv4(ip);
    if (v === undefined) return undefined;
    for (const n of this.nets) if (((v & n.cidr.mask) >>> 0) === n.cidr.net) return n.box;
    return undefined;
  }

  /**
   * Queues a mapping for the node owning `serverIp`. An address in no pod CIDR (a Service VIP: the
   * caller's socket keeps it, kube-proxy's DNAT is invisible to it) goes to every peer; one in this
   * node's own CIDR to none.
   */
  publish(serverIp: string, m: PeerMapping): void {
    const v = ipv4(serverIp);
    if (v !== undefined && this.ownCidr && ((v & this.ownCidr.mask) >>> 0) === this.ownCidr.net) return;
    const box = this.boxOf(serverIp);
    if (box) return this.enqueue(box, m);
    if (this.boxes.length === 0) {
      this.stats.droppedNoPeer++;
      return;
    }
    for (const b of this.boxes) this.enqueue(b, m);
  }

  private enqueue(box: Outbox, m: PeerMapping): void {
    if (box.queue.length >= this.opts.maxPending) {
      box.queue.shift();
      this.stats.droppedQueueFull++;
      box.droppedQueueFull++;
    }
    box.queue.push(m);
    if (box.queue.length >= this.opts.batchMax) this.flushBox(box);
  }

  /** sends what each outbox holds (one request in flight per peer) */
  flush(): void {
    for (const b of this.boxes) if (b.queue.length) this.flushBox(b);
  }

  /** each peer's delivered and lost mappings, whether it answers, and its outbox now, by peer name */
  linkStats(): Map<string, PeerLinkStats> {
    return new Map(this.boxes.map((b) => [b.peer.name, { delivered: b.delivered, droppedQueueFull: b.droppedQueueFull, droppedSendError: b.droppedSendError, up: b.up, pending: b.queue.length }]));
  }

  get pending(): number {
    let n = 0;
    for (const b of this.boxes) n += b.queue.length;
    return n;
  }

  private flushBox(box: Outbox): void {
    if (box.inFlight) return;
    const batch: PeerMapping[] = [];
    let bytes = 64;
    while (box.queue.length && batch.length < this.opts.batchMax) {
      const m = box.queue[0] as PeerMapping;
      const add = mappingBytes(m);
      if (batch.length && bytes + add > this.opts.maxBatchBytes) break;
      bytes += add;
      batch.push(m);
      box.queue.shift();
    }
    if (!batch.length) return;
    const body = encodeBatch({ from: this.opts.nodeName, sentAtMs: Date.now(), mappings: batch });
    box.inFlight = true;
    let done = false;
    const finish = (ok: boolean, why?: string) => {
      if (done) return;
      done = true;
      box.inFlight = false;
      if (ok) {
        this.stats.sent += batch.length;
        this.stats.batchesSent++;
        box.delivered += batch.length;
        box.up = true;
        if (this.warned.delete(box.peer.name)) this.warn(`stitch: peer ${box.peer.name} (${box.peer.address}) answers again; its mappings are delivered`);
      } else {
        this.stats.droppedSendError += batch.length;
        box.droppedSendError += batch.length;
        box.up = false;
        // one warning per peer until it answers again, never one per batch
        if (!this.warned.has(box.peer.name)) {
          this.warned.add(box.peer.name);
          this.warn(`stitch: peer ${box.peer.name} (${box.peer.address}): ${why}; its mappings are dropped and counted until it answers`);
        }
      }
      if (box.queue.length >= this.opts.batchMax) this.flushBox(box);
    };
    let url: URL;
    try {
      url = new URL(PEER_PATH, box.peer.address);
    } catch {
      return finish(false, 'bad address');
    }
    const req = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': body.length, [SIGNATURE_HEADER]: sign(this.opts.secret, body) },
      timeout: this.opts.timeoutMs,
    }, (res) => {
      res.resume();
      res.on('end', () => finish(res.statusCode === 204 || res.statusCode === 200, `HTTP ${res.statusCode}`));
      res.on('error', (e) => finish(false, e.message));
    });
    req.on('timeout', () => {
      this.stats.timeouts++;
      req.destroy(new Error(`no answer within ${this.opts.timeoutMs} ms`));
    });
    req.on('error', (e) => finish(false, (e as NodeJS.ErrnoException).code ?? e.message));
    req.end(body);
  }

  /** starts the flush timer */
  start(): void {
    this.timer ??= setInterval(() => this.flush(), this.opts.flushMs);
    this.timer.unref();
  }

  /** Listens for peers' batches; verified mappings go to `onMappings`. Resolves to the bound port. */
  listen(port: number, host: string, onMappings: (from: string, m: PeerMapping[], skewMs: number) => void): Promise<number> {
    this.onMappings = onMappings;
    const server = createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 30_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST' || req.url !== PEER_PATH) {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > this.opts.maxBatchBytes) {
        if (!tooBig) {
          tooBig = true;
          this.stats.rejectedBatch++;
          res.writeHead(413, { connection: 'close' }).end();
          req.destroy();
        }
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) return;
      const sig = req.headers[SIGNATURE_HEADER];
      try {
        const b = openBatch(this.opts.secret, Buffer.concat(chunks), typeof sig === 'string' ? sig : undefined);
        this.stats.batchesReceived++;
        this.stats.received += b.mappings.length;
        const skew = Date.now() - b.sentAtMs;
        this.skewMs.set(b.from, skew);
        this.onMappings(b.from, b.mappings, skew);
        res.writeHead(204).end();
      } catch (e) {
        const auth = (e as StrataError).code === STRATA_ERR_PEER_AUTH;
        if (auth) this.stats.rejectedAuth++;
        else this.stats.rejectedBatch++;
        res.writeHead(auth ? 401 : 400, { 'content-type': 'text/plain' }).end(`${(e as StrataError).code}\n`);
      }
    });
    req.on('error', () => {});
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  }
}
