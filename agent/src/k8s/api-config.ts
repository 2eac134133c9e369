// Where the API server is and how the agent proves who it is: the pod's service account
// (in-cluster) or one kubeconfig file (its current-context). Only what a DaemonSet and the lab
// need: a bearer token (inline or a file, re-read at every request: projected tokens rotate) and/or
// a client certificate, the server's CA (file or inline) or no verification. exec plugins,
// auth-provider, basic auth, impersonation and proxy-url are refused with STRATA_ERR_KUBECONFIG
// (README "Limits").
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { dirname, resolve } from 'node:path';
import { parse } from 'yaml';
import { EXIT_CONFIG, STRATA_ERR_KUBECONFIG, StrataError } from '../errors.ts';

export interface KubeConnection {
  /** https://host:port[/prefix] */
  server: URL;
  ca?: Buffer;
  /** insecure-skip-tls-verify */
  insecure: boolean;
  /** TLS SNI / name checked against the server's certificate (tls-server-name) */
  serverName?: string;
  cert?: Buffer;
  key?: Buffer;
  /** the bearer token for the next request; a token file is read again each time */
  token: () => string | undefined;
  /** the namespace of the service account or the context (not used for requests) */
  namespace?: string;
  /** where this came from, for messages */
  origin: string;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

const configError = (msg: string, detail?: Record<string, unknown>) => new StrataError(STRATA_ERR_KUBECONFIG, msg, EXIT_CONFIG, detail);

function readOrFail(path: string, what: string, origin: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw configError(`${origin}: cannot read ${what} ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { file: path });
  }
}

/** A token file read at each call; a file that cannot be read is an error of that request. */
function tokenFile(path: string, origin: string): () => string {
  return () => {
    const t = readOrFail(path, 'the token file', origin).toString('utf8').trim();
    if (!t) throw configError(`${origin}: the token file ${path} is empty`, { file: path });
    return t;
  };
}

/** The pod's service account: KUBERNETES_SERVICE_HOST/PORT, its token and CA. */
export function inClusterConnection(env: NodeJS.ProcessEnv = process.env, dir = SERVICE_ACCOUNT_DIR): KubeConnection {
  const origin = 'in-cluster (service account)';
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw configError('not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not both set; set discovery.kubeconfig to use a kubeconfig file');
  }
  if (!/^\d{1,5}$/.test(port)) throw configError(`${origin}: KUBERNETES_SERVICE_PORT "${port}" is not a port`);
  const server = new URL(`https://${isIPv6(host) ? `[${host}]` : host}:${port}`);
  const ca = readOrFail(`${dir}/ca.crt`, 'the CA', origin);
  const token = tokenFile(`${dir}/token`, origin);
  // fail at start, not at every request, when no token is mounted (automountServiceAccountToken: false)
  token();
  let namespace: string | undefined;
  try {
    namespace = readFileSync(`${dir}/namespace`, 'utf8').trim() || undefined;
  } catch {
    namespace = undefined;
  }
  return { server, ca, insecure: false, token, namespace, origin };
}

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);

function named(list: unknown, name: string, key: string, file: string): Obj {
  const entry = Array.isArray(list) ? list.find((x) => isObj(x) && x.name === name) : undefined;
  if (!isObj(entry) || !isObj(entry[key])) throw configError(`kubeconfig ${file}: no ${key} named "${name}"`, { file });
  return entry[key];
}

const str = (o: Obj, k: string, file: string): string | undefined => {
  const v = o[k];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw configError(`kubeconfig ${file}: ${k} is not a string`, { file });
  return v;
};

function base64(o: Obj, k: string, file: string): Buffer | undefined {
  const v = str(o, k, file);
  if (v === undefined) return undefined;
  if (!/^[A-Za-z0-9+/=\s]+$/.test(v)) throw configError(`kubeconfig ${file}: ${k} is not base64`, { file });
  return Buffer.from(v, 'base64');
}

/** user fields strata does not implement: each a clear error instead of requests without credentials */
const UNSUPPORTED_USER: [string, string][] = [
  ['exec', 'exec credential plugins'],
  ['auth-provider', 'auth-provider plugins'],
  ['username', 'basic authentication'],
  ['password', 'basic authentication'],
  ['as', 'impersonation'],
  ['as-groups', 'impersonation'],
  ['as-uid', 'impersonation'],
  ['as-user-extra', 'impersonation'],
];

/** A kubeconfig file, its current-context. Relative file paths are relative to the file, as kubectl reads them. */
export function kubeconfigConnection(file: string): KubeConnection {
  const origin = `kubeconfig ${file}`;
  let doc: unknown;
  try {
    doc = parse(readOrFail(file, 'the kubeconfig', origin).toString('utf8'));
  } catch (e) {
    if (e instanceof StrataError) throw e;
    throw configError(`${origin}: not YAML (${(e as Error).message.split('\n')[0]})`, { file });
  }
  if (!isObj(doc)) throw configError(`${origin}: not a kubeconfig (no mapping at the top)`, { file });
  const current = str(doc, 'current-context', file);
  if (!current) throw configError(`${origin}: current-context is not set`, { file });
  const ctx = named(doc.contexts, current, 'context', file);
  const clusterName = str(ctx, 'cluster', file);
  if (!clusterName) throw configError(`${origin}: context "${current}" names no cluster`, { file });
  const cluster = named(doc.clusters, clusterName, 'cluster', file);
  const userName = str(ctx, 'user', file);
  const user = userName ? named(doc.users, userName, 'user', file) : {};
  const dir = dirname(resolve(file));
  const path = (p: string) => resolve(dir, p);

  const serverText = str(cluster, 'server', file);
  if (!serverText) throw configError(`${origin}: cluster "${clusterName}" has no server`, { file });
  let server: URL;
  try {
    server = new URL(serverText);
  } catch {
    throw configError(`${origin}: cluster "${clusterName}" server "${serverText}" is not a URL`, { file });
  }
  if (server.protocol !== 'https:' && server.protocol !== 'http:') throw configError(`${origin}: server "${serverText}" is neither https nor http`, { file });
  if (str(cluster, 'proxy-url', file)) throw configError(`${origin}: cluster "${clusterName}": proxy-url is not supported by strata (README "Limits")`, { file });
  const caFile = str(cluster, 'certificate-authority', file);
  const ca = base64(cluster, 'certificate-authority-data', file) ?? (caFile ? readOrFail(path(caFile), 'certificate-authority', origin) : undefined);
  const insecure = cluster['insecure-skip-tls-verify'] === true;

  for (const [k, what] of UNSUPPORTED_USER) {
    if (user[k] !== undefined && user[k] !== null) {
      throw configError(`${origin}: user "${userName}" uses ${k} (${what}), which strata does not support: use a token, a token file or a client certificate (README "Limits")`, { file, field: k });
    }
  }
  const certFile = str(user, 'client-certificate', file);
  const keyFile = str(user, 'client-key', file);
  const cert = base64(user, 'client-certificate-data', file) ?? (certFile ? readOrFail(path(certFile), 'client-certificate', origin) : undefined);
  const key = base64(user, 'client-key-data', file) ?? (keyFile ? readOrFail(path(keyFile), 'client-key', origin) : undefined);
  if ((cert === undefined) !== (key === undefined)) throw configError(`${origin}: user "${userName}" has a client certificate without its key, or a key without its certificate`, { file });
  const inline = str(user, 'token', file);
  const tf = str(user, 'tokenFile', file);
  // kubeconfig's rule: token takes precedence over tokenFile
  let token: () => string | undefined = () => undefined;
  if (inline) token = () => inline;
  else if (tf) {
    token = tokenFile(path(tf), origin);
    token();
  }
  return {
    server, ca, insecure, serverName: str(cluster, 'tls-server-name', file), cert, key, token,
    namespace: str(ctx, 'namespace', file), origin,
  };
}

/** discovery.kubeconfig, else in-cluster */
export function loadConnection(kubeconfig: string | null): KubeConnection {
  return kubeconfig ? kubeconfigConnection(kubeconfig) : inClusterConnection();
}
