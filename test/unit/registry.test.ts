// The probe registry against what was built: every program of every agent object is declared by
// exactly one family (with an attach kind matching its section), every declared program exists,
// every event type has one emitting family and a decoder, and the objects are the layout's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { Decoder, type EventHandler } from '../../agent/src/events/decode.ts';
import { BPF_OBJECTS, CONSTS, EVENT_TYPE, HDR, STAT_NAMES } from '../../agent/src/events/layout.generated.ts';
import { loadNative } from '../../agent/src/probes/native.ts';
import { type AttachKind, FAMILIES, NON_AGENT_OBJECTS, type ProbeFamily, SOCK_SYSCALLS } from '../../agent/src/probes/registry.ts';
import type { ObjectListing } from '../../native/index.d.ts';

const ADDON = new URL('../../build/Release/strata_native.node', import.meta.url);

/** the attach kind a section means (libbpf's section names) */
function kindOf(section: string): AttachKind | undefined {
  const s = section.replace(/^\?/, '');
  if (s.startsWith('tracepoint/') || s.startsWith('tp/')) return 'tracepoint';
  if (s.startsWith('raw_tp/') || s.startsWith('raw_tracepoint/')) return 'raw_tp';
  if (s === 'tc' || s.startsWith('classifier')) return 'tc';
  if (s.startsWith('uprobe') || s.startsWith('uretprobe')) return 'uprobe';
  if (s.startsWith('kprobe') || s.startsWith('kretprobe')) return 'kprobe';
  if (s.startsWith('fentry') || s.startsWith('fexit')) return 'fentry';
  return undefined;
}

/** what differs between the families' declarations and the objects' programs, in words */
function mismatches(objects: ObjectListing[], families: readonly ProbeFamily[], nonAgent: readonly string[]): string[] {
  const problems: string[] = [];
  const agentObjects = objects.filter((o) => !nonAgent.includes(o.name));
  for (const o of agentObjects) {
    const fams = families.filter((f) => f.object === o.name);
    if (fams.length === 0) problems.push(`${o.name}.bpf.o belongs to no family (nor is it a named non-agent object)`);
    for (const p of o.programs) {
      const decl = fams.flatMap((f) => f.programs.filter((d) => d.name === p.name).map((d) => ({ f, d })));
      if (decl.length === 0) problems.push(`${o.name}/${p.name} (${p.section}) is declared by no family`);
      else if (decl.length > 1) problems.push(`${o.name}/${p.name} is declared ${decl.length} times`);
      else if (decl[0]?.d.kind !== kindOf(p.section)) problems.push(`${o.name}/${p.name}: declared ${decl[0]?.d.kind}, section ${p.section}`);
    }
    // the shared maps every family's events go through
    for (const m of ['events', 'stats']) if (!o.maps.includes(m)) problems.push(`${o.name}.bpf.o has no ${m} map`);
  }
  for (const f of families) {
    const o = agentObjects.find((x) => x.name === f.object);
    if (!o) problems.push(`${f.name}: no object ${f.object}.bpf.o`);
    else for (const d of f.programs) if (!o.programs.some((p) => p.name === d.name)) problems.push(`${f.name} declares ${d.name}, missing from ${o.name}.bpf.o`);
  }
  return problems;
}

test('the comparison itself: an undeclared program and a declared one missing are both reported', () => {
  const objects: ObjectListing[] = [
    { name: 'sock', programs: [...SOCK_SYSCALLS.programs.map((p) => ({ name: p.name, section: p.kind === 'raw_tp' ? 'raw_tp/x' : 'tracepoint/x/y' })), { name: 'enter_splice', section: 'tracepoint/syscalls/sys_enter_splice' }], maps: ['events', 'stats'] },
  ];
  const missing = { ...SOCK_SYSCALLS, programs: [...SOCK_SYSCALLS.programs, { name: 'enter_recvmmsg', kind: 'tracepoint' as const }] };
  assert.deepEqual(mismatches(objects, [missing], []), [
    'sock/enter_splice (tracepoint/syscalls/sys_enter_splice) is declared by no family',
    'sock_syscalls declares enter_recvmmsg, missing from sock.bpf.o',
  ]);
  assert.deepEqual(mismatches([...objects, { name: 'ovs', programs: [], maps: [] }], [SOCK_SYSCALLS], []).filter((m) => m.startsWith('ovs')),
    ['ovs.bpf.o belongs to no family (nor is it a named non-agent object)', 'ovs.bpf.o has no events map', 'ovs.bpf.o has no stats map']);
});

test('every program of the built objects is declared by one family, and every declared one exists', (t) => {
  if (!existsSync(ADDON)) {
    if (process.env.CI === 'true') assert.fail('native addon not built');
    t.skip('native addon not built (npm run build)');
    return;
  }
  // opens the embedded objects without loading them: no privilege needed
  const objects = loadNative().listObjects();
  assert.deepEqual(objects.map((o) => o.name).sort(), [...BPF_OBJECTS].sort(), 'the addon embeds the objects the layout was generated from');
  for (const n of NON_AGENT_OBJECTS) assert.ok(objects.some((o) => o.name === n), `${n}.bpf.o is built (named as a non-agent object)`);
  assert.deepEqual(mismatches(objects, FAMILIES, NON_AGENT_OBJECTS), []);
  // bpftool and the kernel know programs by 15 characters: names must stay unique there
  const short = FAMILIES.flatMap((f) => f.programs.map((p) => p.name.slice(0, 15)));
  assert.equal(new Set(short).size, short.length, 'program names unique within 15 characters');
});

test('every event type is emitted by one family and reaches the handler it names', () => {
  const declared = FAMILIES.flatMap((f) => f.events.map((e) => ({ f: f.name, ...e })));
  assert.deepEqual(declared.map((e) => e.type).sort((a, b) => a - b), Object.values(EVENT_TYPE).sort((a, b) => a - b));
  for (const e of declared) {
    const calls: string[] = [];
    const h: Required<EventHandler> = { onSock: () => calls.push('onSock'), onState: () => calls.push('onState'), onPkt: () => calls.push('onPkt'), onNetDev: () => calls.push('onNetDev'), onTail: () => calls.push('onTail'), onOvsUpcall: () => calls.push('onOvsUpcall') };
    const d = new Decoder(h);
    // a zero record of that type, as long as its struct (the decoder checks the minimum length)
    const rec = Buffer.alloc(1024);
    rec.writeUInt16LE(e.type, HDR.type);
    rec[HDR.version] = CONSTS.EVENTS_VERSION;
    rec.writeUInt32LE(rec.length, HDR.len);
    d.decode(rec);
    assert.deepEqual(calls, [e.handler], `${e.f}: ${e.name}`);
  }
  // the kernel datapath's upcall records share the userspace datapath's layout, told apart by type
  for (const [type, kernel] of [[EVENT_TYPE.EV_OVS_UPCALL, false], [EVENT_TYPE.EV_OVS_KUPCALL, true]] as const) {
    const seen: boolean[] = [];
    const rec = Buffer.alloc(1024);
    rec.writeUInt16LE(type, HDR.type);
    rec[HDR.version] = CONSTS.EVENTS_VERSION;
    rec.writeUInt32LE(rec.length, HDR.len);
    new Decoder({ onSock: () => {}, onState: () => {}, onPkt: () => {}, onNetDev: () => {}, onOvsUpcall: (x) => seen.push(x.kernel) }).decode(rec);
    assert.deepEqual(seen, [kernel], `type ${type}`);
  }
});

test('families declare only generated kernel counters, each owned once', () => {
  const owned = FAMILIES.flatMap((f) => f.stats);
  for (const s of owned) assert.ok((STAT_NAMES as readonly string[]).includes(s), s);
  assert.equal(new Set(owned).size, owned.length);
  assert.equal(FAMILIES.filter((f) => f.required).map((f) => f.name).join(), 'sock_syscalls', 'the socket syscalls are the one required family');
});

test('listObjects needs no privilege: an unprivileged user lists the same objects and programs', (t) => {
  if (!existsSync(ADDON) || process.getuid?.() !== 0) {
    t.skip('needs the addon built and root to drop privileges from');
    return;
  }
  const code = `const n = require(${JSON.stringify(ADDON.pathname)}); process.stdout.write(JSON.stringify(n.listObjects()));`;
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, '-e', code], { encoding: 'utf8' });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    t.skip('setpriv (util-linux) not installed');
    return;
  }
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), loadNative().listObjects());
});
