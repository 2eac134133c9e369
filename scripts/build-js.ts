// The agent as plain JavaScript: agent/src/**/*.ts with the types stripped (node:module's
// stripTypeScriptTypes, the same transform Node applies when it runs the .ts files) into
// <out>/src/**/*.js, relative `.ts` import specifiers rewritten to `.js`. Running the agent from
// there (`node dist/src/cli.js agent ...`) never loads Node's TypeScript stripper (amaro, a
// WebAssembly module that stays resident: ~29 MiB of RSS measured here, bench/README.md).
// <out> must sit at the repository root's depth + 1 (default `dist`): the modules find
// package.json and build/Release/strata_native.node at ../../ from src/, as they do from agent/src.
// Any other <out> must be a directory whose parent already holds a package.json with "type":
// "module" (scripts/image.sh builds into the image's /opt/strata/dist so).
//
//   node scripts/build-js.ts [--out dist]
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** relative specifiers ending in .ts (static imports/exports and import()) -> .js */
export function rewriteSpecifiers(js: string): string {
  return js
    .replace(/(\bfrom\s*['"]\.{1,2}\/[^'"\n]*?)\.ts(['"])/g, '$1.js$2')
    .replace(/(\bimport\s*\(\s*['"]\.{1,2}\/[^'"\n]*?)\.ts(['"])/g, '$1.js$2')
    .replace(/(\bimport\s*['"]\.{1,2}\/[^'"\n]*?)\.ts(['"])/g, '$1.js$2')
    .replace(/(new URL\(\s*['"]\.{1,2}\/[^'"\n]*?)\.ts(['"])/g, '$1.js$2');
}

/** strips every .ts under agent/src into <out>/src; returns the files written */
export function buildJs(out: string, src = join(ROOT, 'agent', 'src')): string[] {
  const dest = join(out, 'src');
  rmSync(dest, { recursive: true, force: true });
  const written: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) {
        walk(p);
        continue;
      }
      if (!name.endsWith('.ts') || name.endsWith('.d.ts')) continue;
      const o = join(dest, relative(src, p)).replace(/\.ts$/, '.js');
      mkdirSync(dirname(o), { recursive: true });
      // the shebang line (cli.ts) survives: stripTypeScriptTypes keeps everything that is not a type
      writeFileSync(o, rewriteSpecifiers(stripTypeScriptTypes(readFileSync(p, 'utf8'), { mode: 'strip' })));
      written.push(o);
    }
  };
  walk(src);
  return written;
}

/** a directory whose package.json makes .js files ES modules (where dist/src/*.js may go) */
function isModuleRoot(dir: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: string }).type === 'module';
  } catch {
    return false;
  }
}

if (import.meta.main) {
  // stripTypeScriptTypes is marked experimental in Node 24: its warning is not this script's output
  process.removeAllListeners('warning');
  const { values } = parseArgs({ options: { out: { type: 'string', default: 'dist' } } });
  const out = resolve(ROOT, values.out);
  const parent = resolve(out, '..');
  if (parent !== resolve(ROOT) && !isModuleRoot(parent)) {
    process.stderr.write(`strata build-js: --out must be a directory directly under the repository root (${ROOT}) or under a directory holding a package.json with "type": "module", got ${out}\n`);
    process.exit(2);
  }
  const files = buildJs(out);
  process.stderr.write(`strata build-js: ${files.length} modules -> ${relative(ROOT, out)}/src\n`);
}
