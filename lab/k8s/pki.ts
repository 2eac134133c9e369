// The cluster's keys and certificates, made with the openssl CLI (Node's crypto makes keys but no
// certificates): a CA, the API server's serving certificate, the API server's client certificate
// for the kubelet, and the service-account signing key pair. ECDSA P-256 (fast to make; Go 1.19
// and kubelet 1.20 take it), RSA for the service-account key (what every issuer setup uses).
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../exec.ts';

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  kubeletClientCert: string;
  kubeletClientKey: string;
  saKey: string;
  saPub: string;
}

const DAYS = '7';

async function ecKey(path: string): Promise<void> {
  await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

async function signed(dir: string, name: string, subj: string, ext: string, ca: { cert: string; key: string }): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const extFile = join(dir, `${name}.ext`);
  await ecKey(key);
  await run('openssl', ['req', '-new', '-key', key, '-subj', subj, '-out', csr]);
  writeFileSync(extFile, ext);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`,
    '-days', DAYS, '-extfile', extFile, '-out', cert]);
  return { cert, key };
}

export async function makePki(dir: string, sans: { ips: string[]; dns: string[] }): Promise<Pki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  await ecKey(caKey);
  await run('openssl', ['req', '-x509', '-new', '-key', caKey, '-subj', '/CN=sk8-ca', '-days', DAYS, '-out', caCert,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature']);
  const ca = { cert: caCert, key: caKey };
  const san = [...sans.ips.map((i) => `IP:${i}`), ...sans.dns.map((d) => `DNS:${d}`)].join(',');
  const server = await signed(dir, 'apiserver', '/CN=kube-apiserver',
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`, ca);
  // the API server's identity towards kubelets (logs, exec): system:masters may use nodes/proxy
  const kubeletClient = await signed(dir, 'apiserver-kubelet-client', '/O=system:masters/CN=kube-apiserver-kubelet-client',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n', ca);
  const saKey = join(dir, 'sa.key');
  const saPub = join(dir, 'sa.pub');
  await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', saKey]);
  await run('openssl', ['pkey', '-in', saKey, '-pubout', '-out', saPub]);
  return {
    dir, caCert, caKey, serverCert: server.cert, serverKey: server.key,
    kubeletClientCert: kubeletClient.cert, kubeletClientKey: kubeletClient.key, saKey, saPub,
  };
}
