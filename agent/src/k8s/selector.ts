// Which pods to trace: discovery.namespaces / excludeNamespaces and discovery.labelSelector, the
// latter in the API server's label selector syntax (kubectl -l): `k=v`, `k==v`, `k!=v`,
// `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist), comma = and.

export type LabelMatcher = (labels: Readonly<Record<string, string>>) => boolean;

type Requirement =
  | { op: 'in'; key: string; values: string[] }
  | { op: 'notin'; key: string; values: string[] }
  | { op: 'exists'; key: string }
  | { op: '!exists'; key: string };

// a qualified name with an optional DNS prefix (app.kubernetes.io/name); values may be empty
const KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE = /^(([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?)$/;

/** Splits on commas outside parentheses. */
function clauses(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw new Error('unbalanced ")"');
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (depth !== 0) throw new Error('unbalanced "("');
  out.push(cur);
  return out.map((c) => c.trim());
}

function parseClause(c: string): Requirement {
  let m = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(c);
  if (m) {
    const values = (m[3] ?? '').split(',').map((v) => v.trim());
    for (const v of values) if (!VALUE.test(v)) throw new Error(`bad value "${v}" in "${c}"`);
    return { op: m[2] as 'in' | 'notin', key: key(m[1] ?? '', c), values };
  }
  m = /^(\S+?)\s*(==|!=|=)\s*(\S*)$/.exec(c);
  if (m) {
    const v = m[3] ?? '';
    if (!VALUE.test(v)) throw new Error(`bad value "${v}" in "${c}"`);
    return { op: m[2] === '!=' ? 'notin' : 'in', key: key(m[1] ?? '', c), values: [v] };
  }
  if (c.startsWith('!')) return { op: '!exists', key: key(c.slice(1).trim(), c) };
  return { op: 'exists', key: key(c, c) };
}

function key(k: string, c: string): string {
  if (!KEY.test(k)) throw new Error(`bad label key "${k}" in "${c}"`);
  return k;
}

/** A matcher for the selector; "" matches every pod. Throws on a malformed selector (what, where). */
export function parseLabelSelector(selector: string): LabelMatcher {
  if (selector.trim() === '') return () => true;
  const reqs = clauses(selector).map((c) => {
    if (c === '') throw new Error('empty requirement');
    return parseClause(c);
  });
  return (labels) =>
    reqs.every((r) => {
      const has = Object.hasOwn(labels, r.key);
      switch (r.op) {
        case 'in':
          return has && r.values.includes(labels[r.key] as string);
        case 'notin':
          // the API server's semantics: a missing key satisfies "!=" and "notin"
          return !has || !r.values.includes(labels[r.key] as string);
        case 'exists':
          return has;
        case '!exists':
          return !has;
      }
      return false;
    });
}

export interface PodSelection {
  namespaces: readonly string[];
  excludeNamespaces: readonly string[];
  labelSelector: string;
}

/** The pods to trace by namespace and labels (discovery.namespaces, excludeNamespaces, labelSelector). */
export function podSelector(s: PodSelection): (p: { namespace: string; labels: Readonly<Record<string, string>> }) => boolean {
  const labels = parseLabelSelector(s.labelSelector);
  const only = new Set(s.namespaces);
  const not = new Set(s.excludeNamespaces);
  return (p) => (only.size === 0 || only.has(p.namespace)) && !not.has(p.namespace) && labels(p.labels);
}
