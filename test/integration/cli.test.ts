// The `strata` command line as a user runs it: exit codes and messages of configuration
// mistakes, help and version, and `strata check` against what this machine really has.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { type CheckReport, FEATURES, readCapabilities, readTracefs } from '../../agent/src/check.ts';
import { requireKernel } from '../helpers/kernel.ts';

const CLI = fileURLToPath(new URL('../../agent/src/cli.ts', import.meta.url));
const PKG = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

/** the environment without any STRATA_* / OTEL_* of the caller's */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STRATA_') && !k.startsWith('OTEL_')));

function strata(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...cleanEnv, ...env }, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const dir = mkdtempSync(join(tmpdir(), 'strata-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
function yamlFile(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

describe('strata: configuration errors exit 3 and name the problem', () => {
  test('an unknown key in the YAML file', () => {
    const f = yamlFile('unknown.yaml', 'sampling:\n  ratoi: 0.5\n');
    const r = strata(['agent', '--config', f]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /STRATA_ERR_CONFIG/);
    assert.match(r.stderr, /unknown key sampling\.ratoi/);
    assert.match(r.stderr, /did you mean sampling\.ratio\?/);
    assert.ok(r.stderr.includes(f), 'names the file');
    assert.equal(r.stdout, '', 'no ready line');
  });

  test('a bad value: sampling.ratio: 2', () => {
    const f = yamlFile('ratio.yaml', 'sampling:\n  ratio: 2\n');
    const r = strata(['agent', '--config', f]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /sampling\.ratio = 2 \(file [^)]*ratio\.yaml\): expected a number in 0\.\.1/);
  });

  test('the same through STRATA_CONFIG and a STRATA_* variable', () => {
    const f = yamlFile('ok.yaml', 'metrics:\n  port: 0\n');
    const r = strata(['agent'], { STRATA_CONFIG: f, STRATA_METRICS_PORT: '65536' });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /metrics\.port = "65536" \(STRATA_METRICS_PORT\): expected an integer in 0\.\.65535/);
  });

  test('a STRATA_* variable of no section (set by a launcher) is ignored with one warning; an unknown key of a section exits 3', () => {
    const ok = strata(['agent', '--print-config'], { STRATA_AGENT_CMD: 'strata agent', STRATA_RUNNER_ID: '1', STRATA_SAMPLING_RATIO: '0.5' });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ratio: 0\.5/);
    const lines = ok.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, ok.stderr);
    assert.match(lines[0] as string, /^strata: warning: ignoring STRATA_AGENT_CMD, STRATA_RUNNER_ID: not a setting/);

    const bad = strata(['agent', '--print-config'], { STRATA_AGENT_CMD: 'strata agent', STRATA_SAMPLING_RATE: '0.5' });
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /STRATA_ERR_CONFIG/);
    assert.match(bad.stderr, /unknown variable STRATA_SAMPLING_RATE; did you mean STRATA_SAMPLING_RATIO\?/);
  });

  test('a missing config file', () => {
    const f = join(dir, 'absent.yaml');
    const r = strata(['agent', '--config', f]);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(r.stderr.includes(`config file ${f}: cannot read it`), r.stderr);
    assert.match(r.stderr, /ENOENT/);
  });

  test('an unparsable config file', () => {
    const f = yamlFile('broken.yaml', 'sampling:\n  ratio: [1,\n');
    const r = strata(['agent', '--config', f]);
    assert.equal(r.code, 3, r.stderr);
    assert.ok(r.stderr.includes(`config file ${f}: not valid YAML (line`), r.stderr);
  });

  test('a missing pods file is a configuration error too', () => {
    const r = strata(['agent', '--pods-file', join(dir, 'no-pods.json'), '--metrics-port', '0']);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /STRATA_ERR_PODS_FILE/);
  });
});

describe('strata: usage, help, version', () => {
  test('version prints the package version', () => {
    const r = strata(['version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), `strata ${PKG.version}`);
  });

  test('--help of every command exits 0', () => {
    for (const cmd of ['agent', 'check', 'demo', 'version']) {
      const r = strata([cmd, '--help']);
      assert.equal(r.code, 0, `${cmd} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`usage: strata ${cmd}`));
    }
    const a = strata(['agent', '--help']);
    assert.match(a.stdout, /sampling\.ratio = 1/, 'lists the keys with their defaults');
    assert.match(a.stdout, /STRATA_EXPORT_OTLP_ENDPOINT, --otlp-endpoint/);
    assert.equal(strata(['--help']).code, 0);
  });

  test('an unknown command or flag exits 2', () => {
    assert.equal(strata(['frobnicate']).code, 2);
    const r = strata(['agent', '--no-such-flag']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /STRATA_ERR_USAGE.*--no-such-flag/);
    assert.equal(strata(['agent', '--set', 'sampling.ratio']).code, 2, '--set without =');
  });

  test('--print-config shows the effective configuration, header values hidden', () => {
    const r = strata(['agent', '--print-config', '--set', 'sampling.ratio=0.5'], { OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20tok-x7q9' });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ratio: 0\.5/);
    assert.match(r.stdout, /authorization: "\*\*\*"/);
    assert.ok(!r.stdout.includes('tok-x7q9'), 'the header value never printed');
  });
});

describe('strata check', () => {
  test('--json reports this machine as it is, and exits 0', (t) => {
    if (!requireKernel(t)) return;
    const r = strata(['check', '--json']);
    assert.equal(r.code, 0, `check failed:\n${r.stdout}\n${r.stderr}`);
    const rep = JSON.parse(r.stdout) as CheckReport;
    assert.equal(rep.ok, true);
    assert.deepEqual(rep.missing, []);
    assert.equal(rep.kernel.release, readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim());
    assert.equal(rep.btf.present, existsSync('/sys/kernel/btf/vmlinux'));

    // tracefs, as /proc/mounts says
    const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' '));
    const tracefsAt = mounts.filter((m) => m[2] === 'tracefs').map((m) => m[1]);
    assert.equal(rep.tracefs.mounted, tracefsAt.includes('/sys/kernel/tracing'));
    assert.deepEqual(rep.tracefs.mountPoints, tracefsAt);
    assert.equal(rep.tracefs.rawTracepointFallbackNeeded, false, 'tracepoints attached, so tracefs is reachable');
    assert.equal(rep.tracefs.accessible, true);

    // capabilities, as /proc/self/status says (the child inherits ours)
    const capEff = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
    assert.equal(rep.capabilities.effective, capEff);
    const bits: Record<string, number> = { CAP_BPF: 39, CAP_PERFMON: 38, CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_SYS_PTRACE: 19, CAP_DAC_READ_SEARCH: 2, CAP_SYS_RESOURCE: 24 };
    assert.deepEqual(rep.capabilities.list.map((c) => c.name).sort(), Object.keys(bits).sort());
    for (const c of rep.capabilities.list) {
      assert.equal(c.have, ((BigInt(`0x${capEff}`) >> BigInt(bits[c.name] as number)) & 1n) === 1n, c.name);
    }
    assert.equal(rep.capabilities.sufficient, true);

    const probe = (name: string) => {
      const p = rep.probes.find((x) => x.name === name);
      assert.ok(p, `probe ${name} reported`);
      return p;
    };
    // required: the agent's own objects and the socket tracepoints
    for (const name of ['sock_syscalls', 'tracepoint', 'tracepoint_sock']) {
      const p = probe(name);
      assert.equal(p.required, true, name);
      assert.equal(p.ok, true, `${name}: ${p.reason}`);
      assert.equal(p.attached, true, name);
    }
    const tc = probe('tc');
    assert.equal(tc.ok, true, tc.reason);
    assert.equal(tc.required, false);
    // kprobe: there iff the kernel offers a kprobe PMU or kprobe_events (CONFIG_KPROBES)
    const kprobes = existsSync('/sys/bus/event_source/devices/kprobe') || existsSync('/sys/kernel/tracing/kprobe_events');
    const kp = probe('kprobe');
    assert.equal(kp.ok, kprobes, `kprobe: ${kp.reason}`);
    if (!kprobes) {
      assert.equal(kp.stage, 'attach');
      assert.ok(kp.code.startsWith('E'), kp.code);
      assert.match(kp.reason, /CONFIG_KPROBES/);
    }
    // fentry needs function tracing; where the kernel locks it down (this machine: reading
    // available_filter_functions is EPERM even for root) the program is refused
    let ftrace = true;
    try {
      accessSync('/sys/kernel/tracing/available_filter_functions', constants.R_OK);
      readFileSync('/sys/kernel/tracing/available_filter_functions', { encoding: 'utf8', flag: 'r' }).slice(0, 1);
    } catch {
      ftrace = false;
    }
    const fe = probe('fentry');
    if (!ftrace) {
      assert.equal(fe.ok, false, 'fentry reported missing');
      assert.ok(fe.code && fe.stage && fe.reason, JSON.stringify(fe));
      assert.match(fe.reason, /fentry|trampoline/);
    }
    for (const p of rep.probes) {
      if (!p.ok) assert.ok(p.reason.length > 0, `${p.name} says why it is missing`);
      else assert.equal(p.reason, '');
    }
    // every feature probe of the addon, under the names check declares
    assert.deepEqual(rep.probes.filter((p) => p.kind === 'feature').map((p) => p.name), [...FEATURES]);
    // the receive side as the send side: one kprobe/trampoline mechanism for both functions
    assert.equal(probe('kprobe_recvmsg').ok, kp.ok, probe('kprobe_recvmsg').reason);
    if (!ftrace) assert.equal(probe('fentry_recvmsg').ok, false);
    // socket data attach points: exactly the kinds whose probes attached
    const ok = (n: string) => probe(n).ok;
    assert.equal(rep.attachOptions.sockData.includes('tracepoint'), ok('tracepoint') && ok('tracepoint_sock'));
    assert.equal(rep.attachOptions.sockData.includes('kprobe'), ok('kprobe') && ok('kprobe_recvmsg'));
    assert.equal(rep.attachOptions.sockData.includes('fentry'), ok('fentry') && ok('fentry_recvmsg'));
    // the kernel OVS datapath, as sysfs and tracefs show it (this host has no modules: not loaded)
    const ovsEvents = existsSync('/sys/kernel/tracing/events/openvswitch');
    assert.equal(rep.attachOptions.ovs.module, existsSync('/sys/module/openvswitch') || ovsEvents);
    if (!rep.attachOptions.ovs.module) {
      for (const n of ['ovs_dp_upcall', 'ovs_do_execute_action']) {
        assert.equal(probe(n).ok, false);
        assert.match(probe(n).reason, /openvswitch kernel module is not loaded/);
      }
    }
    // plain words: the same verdict
    const plain = strata(['check']);
    assert.equal(plain.code, 0);
    assert.match(plain.stdout, /The agent can run here\./);
    if (!kprobes) assert.match(plain.stdout, /kprobe .*CONFIG_KPROBES/);
    assert.match(plain.stdout, new RegExp(`attach points for socket data: ${rep.attachOptions.sockData.join(', ')}`));
    assert.match(plain.stdout, /kernel openvswitch datapath: (module loaded|module not loaded)/);
  });
});

describe('strata check: reading tracefs and capabilities', () => {
  const none = () => false;
  test('tracefs: mounted, through debugfs, or absent', () => {
    const mounted = readTracefs('sysfs /sys sysfs rw 0 0\ntracefs /sys/kernel/tracing tracefs rw 0 0\n', (p) => p === '/sys/kernel/tracing/events');
    assert.deepEqual(mounted, { mounted: true, mountPoints: ['/sys/kernel/tracing'], debugfsFallback: false, path: '/sys/kernel/tracing', accessible: true, rawTracepointFallbackNeeded: false });
    const viaDebugfs = readTracefs('debugfs /sys/kernel/debug debugfs rw 0 0\n', none);
    assert.equal(viaDebugfs.mounted, false);
    assert.equal(viaDebugfs.debugfsFallback, true);
    assert.equal(viaDebugfs.path, '/sys/kernel/debug/tracing');
    assert.equal(viaDebugfs.rawTracepointFallbackNeeded, false);
    const absent = readTracefs('proc /proc proc rw 0 0\n', none);
    assert.equal(absent.path, null);
    assert.equal(absent.rawTracepointFallbackNeeded, true);
  });

  test('capabilities: CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN, or (before 5.8) CAP_SYS_ADMIN only', () => {
    const status = (bits: number[]) => `Name:\tnode\nCapEff:\t${bits.reduce((a, b) => a | (1n << BigInt(b)), 0n).toString(16).padStart(16, '0')}\n`;
    const dsPod = readCapabilities(status([39, 38, 12]), '6.8.0');
    assert.equal(dsPod.sufficient, true);
    assert.deepEqual(dsPod.list.filter((c) => c.have).map((c) => c.name).sort(), ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON']);
    assert.equal(readCapabilities(status([21]), '6.8.0').sufficient, true);
    const nothing = readCapabilities(status([]), '6.8.0');
    assert.deepEqual(nothing.missing, ['CAP_BPF', 'CAP_PERFMON']);
    const old = readCapabilities(status([39, 38]), '5.4.0');
    assert.deepEqual(old.missing, ['CAP_SYS_ADMIN', 'CAP_SYS_RESOURCE'], 'before 5.8 only CAP_SYS_ADMIN, before 5.11 memlock');
  });
});
