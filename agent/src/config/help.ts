// `strata agent --help`: every key with its default, what is allowed and its variable.
import { FLAG_ALIASES } from './flags.ts';
import { type Field, defaultConfig, envName, leafPaths, schemaAt } from './schema.ts';

export function configHelp(): string {
  const defaults = defaultConfig({}, '<hostname>') as unknown as Record<string, unknown>;
  const aliasOf = new Map(Object.entries(FLAG_ALIASES).map(([flag, key]) => [key, `--${flag}`]));
  const lines: string[] = [];
  for (const key of leafPaths()) {
    const f = schemaAt(key) as Field;
    const def = key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], defaults);
    const alias = aliasOf.get(key);
    lines.push(`  ${key} = ${key === 'node.name' ? 'NODE_NAME or the hostname' : JSON.stringify(def)}`);
    lines.push(`      ${f.help}`);
    lines.push(`      ${f.allowed}; ${envName(key)}${alias ? `, ${alias}` : ''}`);
  }
  return lines.join('\n');
}
