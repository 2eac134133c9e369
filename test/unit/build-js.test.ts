// scripts/build-js.ts: the agent as plain JavaScript, run without Node's TypeScript stripper
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildJs, rewriteSpecifiers } from '../../scripts/build-js.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('rewriteSpecifiers: relative .ts specifiers become .js, packages and other text do not', () => {
  const src = [
    "import { a } from './a.ts';",
    "export { b } from '../x/b.ts';",
    "export * from './c.ts';",
    "import './side.ts';",
    "const m = await import('./lazy.ts');",
    "const u = new URL('./cli.ts', import.meta.url);",
    "import x from 'some-package/file.ts';",
    "const s = 'see agent/src/cli.ts';",
  ].join('\n');
  assert.deepEqual(rewriteSpecifiers(src).split('\n'), [
    "import { a } from './a.js';",
    "export { b } from '../x/b.js';",
    "export * from './c.js';",
    "import './side.js';",
    "const m = await import('./lazy.js');",
    "const u = new URL('./cli.js', import.meta.url);",
    "import x from 'some-package/file.ts';",
    "const s = 'see agent/src/cli.ts';",
  ]);
});

test('the built agent loads every module and runs its CLI with type stripping turned off', (t) => {
  // the layout the build expects: <root>/<out>/src next to package.json, node_modules and build/
  const root = mkdtempSync(join(tmpdir(), 'strata-build-js-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  copyFileSync(join(ROOT, 'package.json'), join(root, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'));
  symlinkSync(join(ROOT, 'build'), join(root, 'build'));
  const files = buildJs(join(root, 'dist'));
  const want = execFileSync('git', ['-C', ROOT, 'ls-files', 'agent/src/*.ts', 'agent/src/**/*.ts'], { encoding: 'utf8' }).split('\n').filter((f) => f && !f.endsWith('.d.ts'));
  assert.equal(files.length, want.length, 'one module per .ts file');
  for (const f of files) assert.doesNotMatch(readFileSync(f, 'utf8'), /from\s*['"]\.{1,2}\/[^'"]*\.ts['"]/, `${f}: a .ts import left`);
  // with --no-experimental-strip-types any .ts reached from these modules fails to load
  const node = (args: string[]) => execFileSync(process.execPath, ['--no-experimental-strip-types', ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });
  // the demo (`strata demo`, loaded by the CLI only for that command) brings up the lab from
  // lab/*.ts: a development tool, run from the sources
  const mods = files.filter((f) => !f.endsWith('/cli.js') && !/\/src\/demo(\.js|\/)/.test(f)).map((f) => `./${relative(root, f)}`);
  assert.ok(mods.some((m) => m.endsWith('/src/agent.js')) && mods.length > 50, 'the agent modules are imported');
  const out = node(['--input-type=module', '-e', `for (const m of ${JSON.stringify(mods)}) await import(${JSON.stringify(`${root}/`)} + m.slice(2)); console.log('loaded', ${mods.length});`]);
  assert.equal(out.trim(), `loaded ${mods.length}`);
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(node([join(root, 'dist', 'src', 'cli.js'), '--version']).trim(), `strata ${version}`);
});

test('build-js --out: outside the repository only under a directory whose package.json says "type": "module" (scripts/image.sh builds into the image\'s /opt/strata/dist)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-build-js-out-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (out: string) => spawnSync(process.execPath, [join(ROOT, 'scripts/build-js.ts'), '--out', out], { encoding: 'utf8', timeout: 60_000 });
  const refused = run(join(dir, 'dist'));
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /--out must be a directory directly under the repository root .* or under a directory holding a package\.json with "type": "module"/);
  assert.equal(existsSync(join(dir, 'dist')), false, 'nothing written');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'commonjs' }));
  assert.equal(run(join(dir, 'dist')).status, 2, 'a CommonJS package.json is refused too (dist/src/*.js are ES modules)');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  const built = run(join(dir, 'dist'));
  assert.equal(built.status, 0, built.stderr);
  assert.ok(existsSync(join(dir, 'dist/src/cli.js')), 'dist/src/cli.js written');
});
