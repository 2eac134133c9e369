// Where the other nodes' agents are: a JSON file, either the lab's cluster.json (nodes with name,
// podCidr and their node IP: the agent there listens on stitch.port) or a plain list
// [{ name, podCidr, address }] (a ConfigMap; or several agents on one machine, each on its own port).
// The shared secret is a file, as a mounted Kubernetes Secret is.
import { readFileSync } from 'node:fs';
import { EXIT_CONFIG, STRATA_ERR_CONFIG, StrataError } from '../errors.ts';
import { type PeerNode, parseCidr } from './peers.ts';

const fail = (file: string, why: string) => new StrataError(STRATA_ERR_CONFIG, `stitch.peersFile ${file}: ${why}`, EXIT_CONFIG, { file });

export function parsePeers(text: string, file: string, port: number): PeerNode[] {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw fail(file, `not JSON (${(e as Error).message})`);
  }
  const cluster = !Array.isArray(j) && typeof j === 'object' && j !== null && Array.isArray((j as { nodes?: unknown }).nodes);
  const list = cluster ? (j as { nodes: unknown[] }).nodes : j;
  if (!Array.isArray(list)) throw fail(file, 'expected a list of { name, podCidr, address } or a cluster.json with nodes');
  const out: PeerNode[] = [];
  list.forEach((x, i) => {
    const o = (typeof x === 'object' && x !== null ? x : {}) as Record<string, unknown>;
    const address = cluster ? (typeof o.ip === 'string' ? `http://${o.ip}:${port}` : undefined) : o.address;
    if (typeof o.name !== 'string' || !o.name) throw fail(file, `[${i}]: name missing`);
    if (typeof o.podCidr !== 'string' || !parseCidr(o.podCidr)) throw fail(file, `[${i}] ${o.name}: podCidr must be an IPv4 CIDR (a.b.c.d/n)`);
    if (typeof address !== 'string' || !/^http:\/\/[^/]+$/.test(address)) throw fail(file, `[${i}] ${o.name}: address must be http://host:port`);
    out.push({ name: o.name, podCidr: o.podCidr, address });
  });
  return out;
}

export function readPeersFile(file: string, port: number): PeerNode[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw fail(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parsePeers(text, file, port);
}

/** the secret's bytes, one trailing newline removed (as `kubectl create secret --from-file` keeps it) */
export function readSecretFile(file: string | null): Buffer {
  if (file === null) throw new StrataError(STRATA_ERR_CONFIG, 'stitching is on (stitch.peersFile or stitch.peersFrom=kubernetes) but stitch.secretFile is not set: the peer channel is always authenticated', EXIT_CONFIG);
  let b: Buffer;
  try {
    b = readFileSync(file);
  } catch (e) {
    throw new StrataError(STRATA_ERR_CONFIG, `stitch.secretFile ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, EXIT_CONFIG, { file });
  }
  if (b.length && b[b.length - 1] === 0x0a) b = b.subarray(0, b.length - 1);
  if (b.length < 16) throw new StrataError(STRATA_ERR_CONFIG, `stitch.secretFile ${file}: the secret must be at least 16 bytes`, EXIT_CONFIG, { file });
  return b;
}
