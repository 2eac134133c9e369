// Loads the configuration: defaults -> YAML file (--config or STRATA_CONFIG; a ConfigMap in a
// cluster) -> standard OTEL_EXPORTER_OTLP_* variables -> STRATA_<SECTION>_<KEY> variables ->
// command-line flags. Every source becomes a list of settings (dotted key, raw value, where it
// came from); the last setting of a key wins, and only then is its value checked, once. All
// problems are reported together, each naming the key, the bad value, its source and what is
// allowed. The result is deeply frozen.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseDocument } from 'yaml';
import { EXIT_CONFIG, STRATA_ERR_CONFIG, StrataError } from '../errors.ts';
import {
  type ConfigShape,
  DEFAULT_OTLP_GRPC_ENDPOINT,
  type Field,
  type Section,
  SCHEMA,
  type StrataConfig,
  defaultConfig,
  envName,
  isField,
  leafPaths,
  schemaAt,
} from './schema.ts';

type Env = Record<string, string | undefined>;

/** One value for one key from one source. */
export interface Setting {
  /** dotted key, e.g. sampling.ratio */
  key: string;
  /** a string (variable, flag) is parsed by the field; anything else is a typed (YAML) value */
  value: unknown;
  /** where it came from, for messages: "file /etc/strata/config.yaml", "STRATA_SAMPLING_RATIO" */
  source: string;
  /** OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: the signal path depends on the final protocol */
  otlpBase?: boolean;
}

export interface ConfigIssue {
  /** dotted key (or the file) the problem is about */
  key: string;
  value?: unknown;
  source: string;
  /** what is allowed, in words */
  allowed?: string;
  message: string;
}

export interface LoadOptions {
  /** the config file (--config); else env.STRATA_CONFIG; else none */
  file?: string;
  /** default process.env */
  env?: Env;
  /** flag settings in command-line order (parseAgentArgs) */
  flags?: Setting[];
  /** default os.hostname() */
  hostname?: string;
  /** where warnings go (default: one line on stderr each) */
  warn?: (message: string) => void;
}

/** Variables that start with STRATA_ but are not settings. */
const STRATA_NON_SETTINGS = new Set(['STRATA_CONFIG']);
// Kubernetes service links: a Service named "strata" puts STRATA_SERVICE_HOST, STRATA_PORT,
// STRATA_PORT_9464_TCP... into every pod of its namespace (enableServiceLinks defaults to true).
const SERVICE_LINK = /^STRATA_(SERVICE_HOST|SERVICE_PORT(_.*)?|PORT(_\d+_(TCP|UDP|SCTP)(_.*)?)?)$/;

export function loadConfig(opts: LoadOptions = {}): StrataConfig {
  const env = opts.env ?? process.env;
  const issues: ConfigIssue[] = [];
  const settings: Setting[] = [];
  const file = opts.file ?? (env.STRATA_CONFIG?.trim() || undefined);
  if (file !== undefined) settings.push(...fileSettings(file, issues));
  settings.push(...otelSettings(env));
  settings.push(...strataEnvSettings(env, issues, opts.warn ?? defaultWarn));
  for (const s of opts.flags ?? []) {
    const node = schemaAt(s.key);
    if (isField(node)) settings.push(s);
    else if (node) issues.push({ key: s.key, source: s.source, message: `${s.key} (${s.source}) is a section: set one of its keys: ${leafPaths(node, s.key).join(', ')}` });
    else issues.push(unknownKey(s.key, s.source, leafPaths()));
  }
  const config = resolve(settings, defaultConfig(env, opts.hostname ?? hostname()), issues);
  if (issues.length) throw configError(issues);
  return deepFreeze(config);
}

export function configError(issues: ConfigIssue[]): StrataError {
  const lines = issues.map((i) => `  ${i.message}`).join('\n');
  const head = issues.length === 1 ? 'invalid configuration:' : `invalid configuration (${issues.length} problems):`;
  return new StrataError(STRATA_ERR_CONFIG, `${head}\n${lines}`, EXIT_CONFIG, { issues });
}

// ---- sources ----

function fileSettings(path: string, issues: ConfigIssue[]): Setting[] {
  const source = `file ${path}`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // "ENOENT: no such file or directory, open '/x'" -> "ENOENT: no such file or directory"
    issues.push({ key: path, source, message: `config file ${path}: cannot read it: ${err.message.replace(/, \w+ '.*'$/, '')}` });
    return [];
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    const first = doc.errors[0];
    const where = first?.linePos ? ` (line ${first.linePos[0].line}, column ${first.linePos[0].col})` : '';
    const msg = (first?.message ?? 'parse error').split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '');
    issues.push({ key: path, source, message: `config file ${path}: not valid YAML${where}: ${msg}` });
    return [];
  }
  const root: unknown = doc.toJS();
  if (root === null || root === undefined) return []; // an empty file (or only comments)
  if (typeof root !== 'object' || Array.isArray(root)) {
    issues.push({
      key: path,
      source,
      message: `config file ${path}: expected a mapping of sections (${Object.keys(SCHEMA).join(', ')}), got ${describe(root)}`,
    });
    return [];
  }
  const out: Setting[] = [];
  walk(root as Record<string, unknown>, SCHEMA, '');
  return out;

  function walk(obj: Record<string, unknown>, schema: Section, prefix: string): void {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix ? `${prefix}.${k}` : k;
      const node = Object.hasOwn(schema, k) ? schema[k] : undefined;
      if (node === undefined) {
        issues.push(unknownKey(key, source, Object.keys(schema).map((s) => (prefix ? `${prefix}.${s}` : s))));
      } else if (isField(node)) {
        out.push({ key, value: v, source });
      } else if (v === null) {
        // "sampling:" with nothing under it: nothing set
      } else if (typeof v === 'object' && !Array.isArray(v)) {
        walk(v as Record<string, unknown>, node, key);
      } else {
        issues.push({
          key,
          value: v,
          source,
          allowed: `a mapping with keys ${Object.keys(node).join(', ')}`,
          message: `${key} = ${show(v)} (${source}): ${key} is a section: expected a mapping with keys ${Object.keys(node).join(', ')}`,
        });
      }
    }
  }
}

/** The standard OpenTelemetry exporter variables; the signal-specific ones win. */
function otelSettings(env: Env): Setting[] {
  const out: Setting[] = [];
  const get = (name: string) => {
    const v = env[name]?.trim();
    return v ? v : undefined;
  };
  const pick = (generic: string, specific: string) => {
    const s = get(specific);
    if (s !== undefined) return { name: specific, value: s };
    const g = get(generic);
    return g !== undefined ? { name: generic, value: g } : undefined;
  };
  const endpoint = get('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  if (endpoint !== undefined) out.push({ key: 'export.otlp.endpoint', value: endpoint, source: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' });
  else {
    const base = get('OTEL_EXPORTER_OTLP_ENDPOINT');
    if (base !== undefined) out.push({ key: 'export.otlp.endpoint', value: base, source: 'OTEL_EXPORTER_OTLP_ENDPOINT', otlpBase: true });
  }
  const protocol = pick('OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL');
  if (protocol) out.push({ key: 'export.otlp.protocol', value: protocol.value, source: protocol.name });
  const headers = pick('OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS');
  if (headers) out.push({ key: 'export.otlp.headers', value: headers.value, source: headers.name });
  const timeout = pick('OTEL_EXPORTER_OTLP_TIMEOUT', 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT');
  if (timeout) out.push({ key: 'export.otlp.timeoutMs', value: timeout.value, source: timeout.name });
  return out;
}

const defaultWarn = (message: string) => process.stderr.write(`strata: warning: ${message}\n`);

/**
 * STRATA_<SECTION>_<KEY> variables. One whose section is not in the schema (STRATA_AGENT_CMD, set
 * by whatever launches the agent) is not meant for it: all of those are named in one warning and
 * ignored. An unknown key in a known section is a mistake, reported with the closest name.
 */
function strataEnvSettings(env: Env, issues: ConfigIssue[], warn: (message: string) => void): Setting[] {
  const byName = new Map(leafPaths().map((p) => [envName(p), p]));
  const sectionPrefixes = Object.keys(SCHEMA).map((s) => `${envName(s)}_`);
  const out: Setting[] = [];
  const ignored: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('STRATA_') || value === undefined) continue;
    if (STRATA_NON_SETTINGS.has(name) || SERVICE_LINK.test(name)) continue;
    const key = byName.get(name);
    if (key) out.push({ key, value, source: name });
    else if (!sectionPrefixes.some((p) => name.startsWith(p))) ignored.push(name);
    else {
      const hint = suggest(name, [...byName.keys()]);
      issues.push({
        key: name,
        source: name,
        message: `unknown variable ${name}${hint ? `; did you mean ${hint}?` : ''} (settings are STRATA_<SECTION>_<KEY>, e.g. STRATA_SAMPLING_RATIO)`,
      });
    }
  }
  if (ignored.length) {
    ignored.sort();
    const hints = ignored.flatMap((n) => {
      const h = suggest(n, [...byName.keys()]);
      return h ? [`${n}: did you mean ${h}?`] : [];
    });
    warn(
      `ignoring ${ignored.join(', ')}: not a setting (no section ${[...new Set(ignored.map((n) => n.slice('STRATA_'.length).split('_')[0]))].join(', ')}; ` +
        `settings are STRATA_<SECTION>_<KEY> with SECTION one of ${sectionPrefixes.map((p) => p.slice('STRATA_'.length, -1)).join(', ')})` +
        (hints.length ? `; ${hints.join('; ')}` : ''),
    );
  }
  return out;
}

// ---- resolution ----

function resolve(settings: Setting[], defaults: ConfigShape, issues: ConfigIssue[]): ConfigShape {
  const last = new Map<string, Setting>();
  for (const s of settings) last.set(s.key, s);
  const cfg = defaults as unknown as Record<string, unknown>;
  const parsed = new Map<string, unknown>();
  for (const [key, s] of last) {
    const field = schemaAt(key) as Field;
    const r = typeof s.value === 'string' ? field.fromString(s.value) : field.fromValue(s.value);
    if (r) parsed.set(key, r.value);
    else issues.push(badValue(key, s.value, s.source, field.allowed));
  }
  for (const [key, v] of parsed) setPath(cfg, key, v);
  const c = defaults;
  // endpoints that depend on the final protocol
  const ep = last.get('export.otlp.endpoint');
  if (ep?.otlpBase && parsed.has('export.otlp.endpoint') && c.export.otlp.protocol === 'http/protobuf' && c.export.otlp.endpoint !== 'none') {
    c.export.otlp.endpoint = `${c.export.otlp.endpoint.replace(/\/+$/, '')}/v1/traces`;
  }
  if (!ep && c.export.otlp.protocol === 'grpc') c.export.otlp.endpoint = DEFAULT_OTLP_GRPC_ENDPOINT;
  // rules across keys
  const src = (key: string) => last.get(key)?.source ?? 'default';
  if (parsed.has('probes.wakeupBytes') || parsed.has('probes.ringBufferBytes')) {
    if (c.probes.wakeupBytes > c.probes.ringBufferBytes) {
      issues.push(badValue('probes.wakeupBytes', c.probes.wakeupBytes, src('probes.wakeupBytes'), `an integer in 0..${c.probes.ringBufferBytes} (at most probes.ringBufferBytes)`));
    }
  }
  if (c.export.queue.batchSize > c.export.queue.maxSpans) {
    issues.push(badValue('export.queue.batchSize', c.export.queue.batchSize, src('export.queue.batchSize'), `an integer in 1..${c.export.queue.maxSpans} (at most export.queue.maxSpans)`));
  }
  if (c.discovery.backoff.maxMs < c.discovery.backoff.initialMs) {
    issues.push(badValue('discovery.backoff.maxMs', c.discovery.backoff.maxMs, src('discovery.backoff.maxMs'), `an integer in ${c.discovery.backoff.initialMs}..3600000 (at least discovery.backoff.initialMs)`));
  }
  if (c.discovery.source === 'file' && c.discovery.podsFile === null) {
    issues.push({
      key: 'discovery.source', value: 'file', source: src('discovery.source'), allowed: 'file only with discovery.podsFile set',
      message: `discovery.source = "file" (${src('discovery.source')}) needs discovery.podsFile (--pods-file)`,
    });
  }
  if (c.export.otlp.endpoint === 'none' && c.export.jaeger.endpoint === null && c.export.files.dir === null && !issues.some((i) => i.key.startsWith('export.'))) {
    issues.push({
      key: 'export.otlp.endpoint',
      value: 'none',
      source: src('export.otlp.endpoint'),
      allowed: 'a URL, unless export.jaeger.endpoint or export.files.dir is set',
      message: `export.otlp.endpoint = "none" (${src('export.otlp.endpoint')}): spans must go somewhere: set an OTLP endpoint, export.jaeger.endpoint or export.files.dir (--traces-dir)`,
    });
  }
  return c;
}

function setPath(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) o = o[p] as Record<string, unknown>;
  o[parts[parts.length - 1] as string] = value;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

// ---- messages ----

export function badValue(key: string, value: unknown, source: string, allowed: string): ConfigIssue {
  // header values are credentials (authorization, api keys): never echo them
  const shown = key === 'export.otlp.headers' ? redactHeaders(value) : value;
  return { key, value: shown, source, allowed, message: `${key} = ${show(shown)} (${source}): expected ${allowed}` };
}

export function redactHeaders(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(/=[^,]*/g, '=***');
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) return Object.fromEntries(Object.keys(v).map((k) => [k, '***']));
  return v;
}

export function unknownKey(key: string, source: string, siblings: string[]): ConfigIssue {
  const hint = suggestKey(key, siblings);
  return { key, source, message: `unknown key ${key} (${source})${hint ? `; did you mean ${hint}?` : ''}` };
}

function show(v: unknown): string {
  // user:password@ in an endpoint (Jaeger basic auth) stays out of messages
  if (typeof v === 'string') return JSON.stringify(v.replace(/\/\/[^/@\s]+@/, '//***@'));
  if (v === undefined) return 'nothing';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

function describe(v: unknown): string {
  return Array.isArray(v) ? 'a list' : `${typeof v} ${show(v)}`;
}

/** A close key among the siblings, else a key elsewhere with the same last name. */
function suggestKey(key: string, siblings: string[]): string | undefined {
  const near = suggest(key, siblings);
  if (near) return near;
  const last = norm(key.split('.').pop() ?? key);
  const paths = leafPaths();
  const same = paths.find((p) => norm(p.split('.').pop() ?? '') === last);
  if (same) return same;
  return suggest(key, paths);
}

const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');

/** The candidate closest to name (case, "-" and "_" ignored), if it is close enough to be a typo. */
export function suggest(name: string, candidates: string[]): string | undefined {
  const n = norm(name);
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = levenshtein(n, norm(c));
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(2, Math.floor(n.length / 4)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}
