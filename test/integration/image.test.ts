// The agent image scripts/image.sh builds (or the one STRATA_IMAGE_ARCHIVE names, e.g. the
// Dockerfile's from scripts/dockerfile-check.sh), read from its docker-archive without a runtime:
// its config runs AGENT_IMAGE_COMMAND (agent/src/runtime-flags.ts: node dist/src/cli.js), it holds
// the JavaScript build and no TypeScript at all (so Node's type stripper, amaro, is never loaded),
// no source maps, declarations, @types or dev dependencies; and its own Node runs its own tree with
// type stripping turned off: `strata --version`, and `strata check`, which loads the addon from
// build/Release and the BPF objects it embeds, from dist/src, and attaches the required family.
// (The image in a pod, on a real kubelet: test/integration/k8s-rollout.test.ts.)
// Needs root (mmdebstrap; check loads BPF). A cold build takes minutes (cached afterwards).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AGENT_IMAGE_COMMAND } from '../../agent/src/runtime-flags.ts';
import { imageArchive } from '../helpers/k8s-node.ts';
import { requireKernel } from '../helpers/kernel.ts';

const APP = 'opt/strata';

interface Archive {
  config: { Cmd?: string[]; WorkingDir?: string; Env?: string[] };
  layers: string[];
}

function readArchive(archive: string): Archive {
  const tar = (args: string[]) => execFileSync('tar', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  const [m] = JSON.parse(tar(['-xOf', archive, 'manifest.json'])) as { Config: string; Layers: string[] }[];
  assert.ok(m, 'manifest.json names one image');
  const c = JSON.parse(tar(['-xOf', archive, m.Config])) as { config: Archive['config'] };
  return { config: c.config, layers: m.Layers };
}

/** the paths in one layer of the archive (docker-archive layers are plain tars) */
function layerPaths(archive: string, layer: string): string[] {
  const out = execFileSync('bash', ['-c', 'tar -xOf "$1" "$2" | tar -t', 'list', archive, layer], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return out.split('\n').filter(Boolean).map((p) => p.replace(/^\.?\//, '').replace(/\/$/, ''));
}

test('the agent image runs dist/src/cli.js (AGENT_IMAGE_COMMAND) and holds the JavaScript build, no TypeScript, no maps or dev dependencies; its Node runs it with type stripping off', { timeout: 25 * 60_000 }, (t) => {
  if (!requireKernel(t)) return;
  let t0 = performance.now();
  const archive = imageArchive();
  const buildMs = Math.round(performance.now() - t0);
  const { config, layers } = readArchive(archive);
  assert.deepEqual(config.Cmd, [...AGENT_IMAGE_COMMAND], 'the image\'s cmd is AGENT_IMAGE_COMMAND: node dist/src/cli.js, not agent/src/cli.ts');
  assert.equal(config.WorkingDir, `/${APP}`);

  const paths = layers.flatMap((l) => layerPaths(archive, l));
  const app = paths.filter((p) => p.startsWith(`${APP}/`));
  for (const want of [`${APP}/dist/src/cli.js`, `${APP}/dist/src/agent.js`, `${APP}/build/Release/strata_native.node`, `${APP}/package.json`, 'usr/local/bin/node']) {
    assert.ok(paths.includes(want), `${want} in the image`);
  }
  // TypeScript anywhere under the project (the agent's sources, or a dependency's) would bring
  // Node's stripper back the moment one were imported; the image has none to import
  assert.deepEqual(app.filter((p) => /\.[mc]?ts$/.test(p)), [], 'no .ts file under /opt/strata');
  assert.deepEqual(app.filter((p) => p === `${APP}/agent` || p.startsWith(`${APP}/agent/`)), [], 'no agent/ sources');
  assert.deepEqual(app.filter((p) => p.endsWith('.map')), [], 'no source maps');
  for (const gone of ['node_modules/@types', 'node_modules/node', 'node_modules/typescript', 'node_modules/eslint', 'node_modules/node-addon-api', 'lab', 'test', 'bench']) {
    assert.ok(!app.some((p) => p === `${APP}/${gone}` || p.startsWith(`${APP}/${gone}/`)), `${gone} is not in the image`);
  }
  assert.ok(app.some((p) => p.startsWith(`${APP}/node_modules/yaml/`)) && app.some((p) => p.startsWith(`${APP}/node_modules/prom-client/`)), 'the production dependencies are');
  // the agent talks to the API server with its own client (agent/src/k8s/api-client.ts)
  assert.ok(!app.some((p) => p.startsWith(`${APP}/node_modules/@kubernetes/`)), 'no Kubernetes client library');

  // the image's own tree and Node, outside a container (the same bookworm libraries as this host):
  // the layers unpacked in order (no whiteouts to honour: nothing of /opt/strata is deleted by a layer)
  const root = mkdtempSync(join(tmpdir(), 'strata-image-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const l of layers) execFileSync('bash', ['-c', 'tar -xOf "$1" "$2" | tar -x --no-same-owner -C "$3"', 'extract', archive, l, root]);
  const node = (args: string[]) =>
    execFileSync(join(root, 'usr/local/bin/node'), ['--no-experimental-strip-types', ...args], { cwd: join(root, APP), encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'pipe'] });
  const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
  assert.equal(node(['dist/src/cli.js', '--version']).trim(), `strata ${version}`);
  t0 = performance.now();
  const check = JSON.parse(node(['dist/src/cli.js', 'check', '--json'])) as { ok: boolean; probes: { name: string; required?: boolean; ok: boolean; attached: boolean; message: string }[] };
  const checkMs = Math.round(performance.now() - t0);
  const required = check.probes.filter((p) => p.required);
  assert.ok(required.length > 0, 'check lists the required families');
  for (const p of required) assert.ok(p.ok && p.attached, `${p.name} loads and attaches from the image's tree: ${p.message}`);
  assert.equal(check.ok, true, 'strata check passes with the image\'s addon (found from dist/src)');

  const unpacked = existsSync(`${archive}.rootfs-bytes`) ? `${(Number(readFileSync(`${archive}.rootfs-bytes`, 'utf8')) / 2 ** 20).toFixed(0)} MiB` : '?';
  t.diagnostic(`image ${archive}: archive ${(statSync(archive).size / 2 ** 20).toFixed(0)} MiB, unpacked ${unpacked}; ` +
    `${app.length} paths under /${APP}; build/cache ${buildMs} ms, check ${checkMs} ms`);
});
