// Generates agent/src/events/layout.generated.ts from the BTF of the compiled BPF objects:
// struct offsets/sizes and enum values of bpf/include/events.h. The decoder never hand-keeps an
// offset; test/unit/layout.test.ts fails when the checked-in file drifts from the objects.
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface BtfMember { name: string; type_id: number; bits_offset: number }
interface BtfType {
  id: number; kind: string; name?: string; size?: number; type_id?: number;
  members?: BtfMember[]; values?: { name: string; val: number }[];
  nr_elems?: number;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUILD = resolve(root, 'build/bpf');
/** every object bpf/build.sh compiled from bpf/*.bpf.c (features.bpf.o: `strata check`'s own, no events) */
export const OBJECT_NAMES = (() => {
  try {
    return readdirSync(BUILD).filter((f) => f.endsWith('.bpf.o')).map((f) => basename(f, '.bpf.o')).sort();
  } catch {
    return [];
  }
})();
export const OBJECTS = OBJECT_NAMES.filter((n) => n !== 'features').map((n) => resolve(BUILD, `${n}.bpf.o`));
export const OUTPUT = resolve(root, 'agent/src/events/layout.generated.ts');
/**
 * Every struct and enum of events.h is named strata_*: all of them found in the objects' BTF are
 * generated (a new family's event struct needs no edit here), in this order first, then by name.
 */
const FIRST = ['strata_hdr', 'strata_tuple', 'strata_sock_event', 'strata_state_event', 'strata_pkt_event',
  'strata_consts', 'strata_event_type', 'strata_sock_op', 'strata_dir', 'strata_flags'];
/** enums whose values keep their prefix (DIR.DIR_IN), as the decoder and correlator read them */
const KEEP_PREFIX = ['strata_dir'];
const ordered = (names: Iterable<string>) =>
  [...names].sort((a, b) => (FIRST.includes(a) ? FIRST.indexOf(a) : 1e3) - (FIRST.includes(b) ? FIRST.indexOf(b) : 1e3) || a.localeCompare(b));

function loadTypes(obj: string): Map<number, BtfType> {
  const bpftool = process.env.BPFTOOL ?? 'bpftool';
  const out = execFileSync(bpftool, ['-j', 'btf', 'dump', 'file', obj, 'format', 'raw'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const types = (JSON.parse(out) as { types: BtfType[] }).types;
  return new Map(types.map((t) => [t.id, t]));
}

function sizeOf(types: Map<number, BtfType>, id: number): number {
  const t = types.get(id);
  if (!t) throw new Error(`BTF type ${id} missing`);
  switch (t.kind) {
    case 'INT': case 'STRUCT': case 'UNION': case 'ENUM': case 'ENUM64': return t.size ?? 0;
    case 'TYPEDEF': case 'VOLATILE': case 'CONST': case 'RESTRICT': return sizeOf(types, t.type_id ?? 0);
    case 'ARRAY': return (t.nr_elems ?? 0) * sizeOf(types, t.type_id ?? 0);
    case 'PTR': return 8;
    default: throw new Error(`unsupported BTF kind ${t.kind}`);
  }
}

const constName = (s: string) => s.replace(/^strata_/, '').toUpperCase();
/** STRATA_STAT_RB_DROPS -> rbDrops */
const camel = (s: string) => s.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

export function generateLayout(objects: string[] = OBJECTS): string {
  const structs = new Map<string, string>();
  const enums = new Map<string, string>();
  for (const obj of objects) {
    const types = loadTypes(obj);
    for (const t of types.values()) {
      if (!t.name) continue;
      if (t.kind === 'STRUCT' && t.name.startsWith('strata_') && !structs.has(t.name)) {
        const offs = (t.members ?? []).map((m) => `${m.name}: ${m.bits_offset / 8}`).join(', ');
        const sizes = (t.members ?? []).map((m) => `${m.name}: ${sizeOf(types, m.type_id)}`).join(', ');
        structs.set(t.name, `export const ${constName(t.name)} = { SIZE: ${t.size}, ${offs} } as const;\n` +
          `export const ${constName(t.name)}_SIZES = { ${sizes} } as const;\n`);
      }
      if (t.kind === 'ENUM' && t.name.startsWith('strata_') && !enums.has(t.name)) {
        // values named after their enum lose that prefix (STRATA_STAT_EVENTS: STAT.EVENTS)
        const own = `STRATA_${constName(t.name)}_`;
        const values = t.values ?? [];
        const strip = !KEEP_PREFIX.includes(t.name) && values.every((v) => v.name.startsWith(own)) ? own : 'STRATA_';
        const vals = values.map((v) => `${v.name.slice(strip.length)}: ${v.val}`).join(', ');
        let out = `export const ${constName(t.name)} = { ${vals} } as const;\n`;
        if (t.name === 'strata_stat') {
          // the kernel counters by index (Probes.stats() order), MAX excluded
          const names = values.filter((v) => v.name !== `${own}MAX`).sort((a, b) => a.val - b.val).map((v) => `'${camel(v.name.slice(own.length))}'`);
          out += `export const STAT_NAMES = [${names.join(', ')}] as const;\n`;
        }
        enums.set(t.name, out);
      }
    }
  }
  const missing = [...FIRST.filter((n) => !structs.has(n) && !enums.has(n)), ...['strata_stat'].filter((e) => !enums.has(e))];
  if (missing.length) throw new Error(`not in BTF of ${objects.join(', ')}: ${missing.join(', ')}`);
  return '// GENERATED by scripts/gen-layout.ts from the BTF of build/bpf/*.bpf.o: do not edit.\n' +
    '// Offsets and sizes in bytes of bpf/include/events.h.\n\n' +
    ordered(structs.keys()).map((s) => structs.get(s)).join('\n') + '\n' + ordered(enums.keys()).map((e) => enums.get(e)).join('') +
    `\n// the BPF objects built from bpf/*.bpf.c (native listObjects() opens the same set)\n` +
    `export const BPF_OBJECTS = [${OBJECT_NAMES.map((n) => `'${n}'`).join(', ')}] as const;\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(OUTPUT, generateLayout());
  console.log(`wrote ${OUTPUT}`);
}
