// Kubernetes manifests (manifests/): every kustomization renders with Debian's kubectl (1.20,
// kustomize v2.0.3) and, when another kubectl is on PATH, renders the same objects with it; every
// rendered object validates against the Kubernetes OpenAPI schemas offline (kubernetes-models,
// ServiceMonitor from @kubernetes-models/prometheus-operator); the DaemonSet has the security
// properties manifests/README.md promises; the ConfigMap's strata.yaml and the DaemonSet's
// environment load with the agent's own configuration loader.
// Under CI=true a missing Debian kubectl fails; elsewhere those tests are skipped with the reason.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { SCHEMA, envName, leafPaths, loadConfig, parseAgentArgs } from '../../agent/src/config/index.ts';
import { AGENT_IMAGE_COMMAND, AGENT_NODE_FLAGS } from '../../agent/src/runtime-flags.ts';

const MANIFESTS = join(import.meta.dirname, '../../manifests');
// where scripts/setup.sh unpacks Debian's kubernetes-client when another package owns /usr/bin/kubectl
const DEBIAN_KUBECTL_CACHE = '/var/cache/strata/kubernetes-client/usr/bin/kubectl';

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };

/** the offline schema of each kind the manifests may contain; any other kind fails the test */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** schema errors of one object ("" when valid) */
function schemaErrors(o: K8sObject): string {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) return `no offline schema for ${o.apiVersion} ${o.kind} (add its kubernetes-models class to MODELS)`;
  try {
    new Model(o as never).validate();
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

// ---- kubectl ----

interface Kubectl {
  path: string;
  gitVersion: string;
}

function kubectlAt(path: string): Kubectl | undefined {
  try {
    const out = execFileSync(path, ['version', '--client', '-o', 'json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    const v = JSON.parse(out) as { clientVersion?: { gitVersion?: string } };
    return { path, gitVersion: v.clientVersion?.gitVersion ?? '?' };
  } catch {
    return undefined;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = join(dir || '.', name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Debian bookworm's kubernetes-client is 1.20.x (its kustomize is v2.0.3, the oldest we support) */
const isDebian = (k: Kubectl) => /^v1\.20\./.test(k.gitVersion);

const candidates = [process.env.STRATA_KUBECTL, DEBIAN_KUBECTL_CACHE, onPath('kubectl')].filter((p): p is string => !!p && existsSync(p));
const kubectls = [...new Map(candidates.map((p) => [p, kubectlAt(p)])).values()].filter((k): k is Kubectl => k !== undefined);
const debian = kubectls.find(isDebian);
const others = kubectls.filter((k) => k !== debian && k.gitVersion !== debian?.gitVersion);
const CI = process.env.CI === 'true';
const NO_DEBIAN = `no Debian kubectl 1.20 (apt-get install kubernetes-client, or bash scripts/setup.sh; or STRATA_KUBECTL=path); found ${
  kubectls.map((k) => `${k.path} ${k.gitVersion}`).join(', ') || 'no kubectl at all'
}`;
const skipNoKubectl = debian || CI ? false : NO_DEBIAN;

/** every directory under manifests/ holding a kustomization.yaml */
function kustomizations(dir = MANIFESTS): string[] {
  const out: string[] = [];
  if (existsSync(join(dir, 'kustomization.yaml'))) out.push(relative(MANIFESTS, dir));
  for (const e of readdirSync(dir)) if (statSync(join(dir, e)).isDirectory()) out.push(...kustomizations(join(dir, e)));
  return out.sort();
}

function render(k: Kubectl, dir: string): K8sObject[] {
  const text = execFileSync(k.path, ['kustomize', join(MANIFESTS, dir)], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, KUBECONFIG: '/dev/null' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const docs = parseAllDocuments(text);
  const objects: K8sObject[] = [];
  for (const d of Array.isArray(docs) ? docs : [docs]) {
    assert.deepEqual(d.errors, [], `${dir}: kubectl kustomize printed invalid YAML`);
    const o = d.toJS() as K8sObject | null;
    if (o !== null) objects.push(o);
  }
  return objects;
}

/**
 * Objects by id, for comparing two kustomize versions: generated names lose their content hash
 * (each version hashes differently) and empty annotations (v2.0.3 adds them) go.
 */
function comparable(objs: K8sObject[]): Map<string, unknown> {
  const hashed = new Map<string, string>();
  for (const o of find(objs, 'ConfigMap')) {
    const m = /^(.+)-[a-z0-9]{10}$/.exec(o.metadata.name);
    if (m) hashed.set(o.metadata.name, `${m[1]}-<hash>`);
  }
  return new Map(
    objs.map((o) => {
      const c = JSON.parse(JSON.stringify(o), (k, v: unknown) => (typeof v === 'string' && hashed.has(v) ? hashed.get(v) : v)) as K8sObject & { metadata: { annotations?: object } };
      if (c.metadata.annotations && Object.keys(c.metadata.annotations).length === 0) delete c.metadata.annotations;
      return [id(c), c];
    }),
  );
}

const rendered = new Map<string, K8sObject[]>();
function renderedBy(dir: string): K8sObject[] {
  if (!debian) assert.fail(NO_DEBIAN);
  let r = rendered.get(dir);
  if (!r) rendered.set(dir, (r = render(debian, dir)));
  return r;
}

const id = (o: K8sObject) => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;
const find = (objs: K8sObject[], kind: string, pred: (o: K8sObject) => boolean = () => true) => objs.filter((o) => o.kind === kind && pred(o));
function one(objs: K8sObject[], kind: string, pred?: (o: K8sObject) => boolean): K8sObject {
  const found = find(objs, kind, pred);
  assert.equal(found.length, 1, `exactly one ${kind}, got ${found.map(id).join(', ') || 'none'}`);
  return found[0] as K8sObject;
}

const agentDaemonSet = (objs: K8sObject[]) => one(objs, 'DaemonSet', (o) => o.metadata.name === 'strata') as unknown as IDaemonSet & K8sObject;
function agentContainer(ds: IDaemonSet): IContainer {
  const c = ds.spec?.template.spec?.containers.find((x) => x.name === 'strata');
  assert.ok(c, 'the DaemonSet has a container named strata');
  return c;
}

/** "512Mi" -> bytes (binary and decimal suffixes) */
function bytes(q: string | number | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(String(q ?? ''));
  assert.ok(m, `a memory quantity, got ${String(q)}`);
  const mult: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  return Number(m[1]) * (mult[m[2] ?? ''] as number);
}

const dirs = kustomizations();

describe('manifests', () => {
  test('the kustomizations: base, overlays/example, overlays/kernel-before-5.11, overlays/monitoring, overlays/stitching', () => {
    assert.deepEqual(dirs, ['base', 'overlays/example', 'overlays/kernel-before-5.11', 'overlays/monitoring', 'overlays/stitching']);
  });

  test(`a Debian kubectl 1.20 is there to render them (${debian ? `${debian.path} ${debian.gitVersion}` : 'none'})`, { skip: skipNoKubectl }, () => {
    assert.ok(debian, NO_DEBIAN);
  });

  for (const dir of dirs) {
    describe(dir, { skip: skipNoKubectl }, () => {
      test('renders with Debian kubectl (kustomize v2.0.3) and every object validates against the Kubernetes OpenAPI schemas', () => {
        const objs = renderedBy(dir);
        assert.ok(objs.length > 0, 'objects rendered');
        const problems = objs.map((o) => [id(o), schemaErrors(o)]).filter(([, e]) => e);
        assert.deepEqual(problems, [], 'every object validates');
        const ids = objs.map(id);
        assert.equal(new Set(ids).size, ids.length, `no object twice: ${ids.join(', ')}`);
      });

      for (const k of others) {
        test(`renders the same objects with ${k.path} ${k.gitVersion}`, () => {
          assert.deepEqual(comparable(render(k, dir)), comparable(renderedBy(dir)));
        });
      }

      // SYS_RESOURCE only where the overlay for kernels before 5.11 adds it
      const sysResource = dir === 'overlays/kernel-before-5.11';
      test(`DaemonSet: hostPID, hostNetwork, not privileged, read-only root fs, capabilities ALL dropped then exactly ${sysResource ? 'six + SYS_RESOURCE' : 'six'} added`, () => {
        const ds = agentDaemonSet(renderedBy(dir));
        const pod = ds.spec?.template.spec;
        assert.ok(pod);
        assert.equal(pod.hostPID, true);
        assert.equal(pod.hostNetwork, true);
        assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet', 'cluster DNS (the collector\'s Service name) on the host network');
        assert.equal(pod.serviceAccountName, 'strata');
        assert.equal(pod.securityContext?.runAsNonRoot, undefined);
        for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) assert.notEqual(c.securityContext?.privileged, true, `${c.name} is not privileged`);
        const sc = agentContainer(ds).securityContext;
        assert.equal(sc?.privileged, false);
        assert.equal(sc?.readOnlyRootFilesystem, true);
        assert.deepEqual(sc?.capabilities?.drop, ['ALL']);
        const six = ['BPF', 'DAC_READ_SEARCH', 'NET_ADMIN', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE'];
        // no SYS_RESOURCE by default: kernels >= 5.11 do not need it, and some runtimes (the lab VM's runc) cannot grant it
        assert.deepEqual([...(sc?.capabilities?.add ?? [])].sort(), sysResource ? [...six, 'SYS_RESOURCE'].sort() : six);
      });

      test('DaemonSet: hostPath mounts of /sys/fs/bpf, /sys/kernel/tracing, /proc and /sys/fs/cgroup, config from the ConfigMap, nothing else writable but /tmp', () => {
        const ds = agentDaemonSet(renderedBy(dir));
        const volumes = ds.spec?.template.spec?.volumes ?? [];
        const hostPaths = Object.fromEntries(volumes.filter((v) => v.hostPath).map((v) => [v.hostPath?.path, v.name]));
        assert.deepEqual(Object.keys(hostPaths).sort(), ['/proc', '/sys/fs/bpf', '/sys/fs/cgroup', '/sys/kernel/tracing']);
        const mounts = Object.fromEntries((agentContainer(ds).volumeMounts ?? []).map((m) => [m.name, m]));
        for (const [path, name] of Object.entries(hostPaths)) assert.ok(mounts[name as string], `${path} (volume ${name}) is mounted`);
        assert.equal(mounts[hostPaths['/proc'] as string]?.readOnly, true, 'the node\'s /proc read-only');
        // where discovery looks for the node's cgroup2 mount (agent/src/k8s/proc.ts cgroupRoot)
        assert.equal(mounts[hostPaths['/sys/fs/cgroup'] as string]?.mountPath, '/host/sys/fs/cgroup');
        assert.equal(mounts[hostPaths['/sys/fs/cgroup'] as string]?.readOnly, true, 'the node\'s cgroups read-only');
        // Secret volumes are read-only (the kubelet mounts them so): the stitching overlay's shared secret
        const secrets = volumes.filter((v) => v.secret);
        assert.deepEqual(secrets.map((v) => v.secret?.secretName), dir === 'overlays/stitching' ? ['strata-stitch'] : []);
        for (const v of secrets) assert.equal(mounts[v.name]?.readOnly, true, `${v.name} mounted read-only`);
        const writable = volumes.filter((v) => !v.hostPath && !v.configMap && !v.secret).map((v) => v.name);
        assert.deepEqual(writable, ['tmp']);
        assert.equal(mounts.tmp?.mountPath, '/tmp');
      });

      test('DaemonSet: NODE_NAME from spec.nodeName; every variable is one the agent reads', () => {
        const env = agentContainer(agentDaemonSet(renderedBy(dir))).env ?? [];
        const nodeName = env.find((e) => e.name === 'NODE_NAME');
        assert.equal(nodeName?.valueFrom?.fieldRef?.fieldPath, 'spec.nodeName');
        const known = new Set(['NODE_NAME', 'STRATA_CONFIG', ...leafPaths().map(envName)]);
        for (const e of env) {
          const otel = /^OTEL_EXPORTER_OTLP_(TRACES_)?(ENDPOINT|PROTOCOL|HEADERS|TIMEOUT)$/.test(e.name);
          assert.ok(known.has(e.name) || otel, `${e.name} is not a variable the agent reads (sections: ${Object.keys(SCHEMA).join(', ')})`);
        }
      });

      test('DaemonSet: command, ConfigMap and environment load with the agent\'s configuration loader, without warnings', () => {
        const objs = renderedBy(dir);
        const ds = agentDaemonSet(objs);
        const c = agentContainer(ds);
        const cmd = c.command ?? [];
        // the image's command: node, the V8 flags, the JavaScript build (never agent/src/*.ts: the
        // image holds no TypeScript), `agent --config ...`
        assert.deepEqual(cmd, AGENT_IMAGE_COMMAND, 'the command is AGENT_IMAGE_COMMAND (agent/src/runtime-flags.ts)');
        assert.equal(c.workingDir, '/opt/strata', 'run where the image holds the agent');
        const head = ['node', ...AGENT_NODE_FLAGS, 'dist/src/cli.js', 'agent'];
        assert.deepEqual(cmd.slice(0, head.length), head, 'node, the agent\'s V8 flags (agent/src/runtime-flags.ts), the JavaScript CLI');
        const args = parseAgentArgs([...cmd.slice(head.length), ...(c.args ?? [])]);
        assert.ok(args.configFile, 'the agent is given --config');
        // the file behind --config: a mounted ConfigMap key
        const mount = (c.volumeMounts ?? []).find((m) => args.configFile?.startsWith(`${m.mountPath}/`));
        assert.ok(mount, `${args.configFile} is under a volume mount`);
        const volume = ds.spec?.template.spec?.volumes?.find((v) => v.name === mount.name);
        const cmName = volume?.configMap?.name;
        assert.ok(cmName, `${mount.name} is a ConfigMap volume`);
        const cm = one(objs, 'ConfigMap', (o) => o.metadata.name === cmName && o.metadata.namespace === ds.metadata.namespace) as K8sObject & { data?: Record<string, string> };
        const key = args.configFile.slice(mount.mountPath.length + 1);
        const text = cm.data?.[key];
        assert.ok(text, `ConfigMap ${cmName} has the key ${key}`);

        const tmp = mkdtempSync(join(tmpdir(), 'strata-manifests-'));
        after(() => rmSync(tmp, { recursive: true, force: true }));
        const file = join(tmp, key);
        writeFileSync(file, text);
        // the pod's environment: downward-API values stand in as the kubelet would fill them
        const env: Record<string, string> = {};
        for (const e of c.env ?? []) env[e.name] = e.value ?? (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName' ? 'node-7' : 'x');
        const warnings: string[] = [];
        const config = loadConfig({ file, env, flags: args.settings, hostname: 'pod-hostname', warn: (w) => warnings.push(w) });
        assert.deepEqual(warnings, []);
        assert.equal(config.node.name, 'node-7', 'node.name from NODE_NAME (the downward API), not the hostname');
        assert.equal(config.node.netns, '', 'hostNetwork: the agent\'s netns is the node\'s');
        assert.equal(config.discovery.podsFile, null);
        // pods from the API server, their processes through the node's procfs as mounted
        assert.equal(config.discovery.source, 'kubernetes');
        assert.equal(config.discovery.kubeconfig, null, 'in-cluster: the ServiceAccount\'s token');
        assert.ok(c.volumeMounts?.some((m) => m.mountPath === config.discovery.procRoot), `discovery.procRoot ${config.discovery.procRoot} is a mount`);

        // the port the probes, the Service and Prometheus use is the one the agent serves
        const port = c.ports?.find((p) => p.name === 'metrics');
        assert.equal(port?.containerPort, config.metrics.port);
        assert.equal(config.metrics.host, '0.0.0.0');
        // SIGTERM flushes within shutdown.timeoutS, before the kubelet's SIGKILL
        assert.ok(config.shutdown.timeoutS < (ds.spec?.template.spec?.terminationGracePeriodSeconds ?? 30));

        // stitching: on only in its overlay, with peers from the Nodes, the secret from the mounted
        // Secret and the peer port declared; off (no peers file, no secret) everywhere else
        if (dir === 'overlays/stitching') {
          assert.equal(config.stitch.peersFrom, 'kubernetes');
          assert.equal(config.stitch.peersFile, null);
          const secretMount = (c.volumeMounts ?? []).find((m) => config.stitch.secretFile?.startsWith(`${m.mountPath}/`));
          const secretVolume = ds.spec?.template.spec?.volumes?.find((v) => v.name === secretMount?.name);
          assert.equal(secretVolume?.secret?.secretName, 'strata-stitch', `stitch.secretFile ${config.stitch.secretFile} is in the Secret strata-stitch`);
          assert.equal(config.stitch.secretFile?.slice((secretMount?.mountPath.length ?? 0) + 1), 'secret', 'the Secret\'s key "secret"');
          assert.equal(c.ports?.find((p) => p.name === 'stitch')?.containerPort, config.stitch.port);
        } else {
          assert.equal(config.stitch.peersFrom, 'file');
          assert.equal(config.stitch.peersFile, null);
        }
      });

      test('DaemonSet: liveness on /healthz and readiness on /readyz at the metrics port; requests = limits >= 512 MiB', () => {
        const c = agentContainer(agentDaemonSet(renderedBy(dir)));
        assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
        assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
        for (const p of [c.livenessProbe, c.readinessProbe]) assert.ok(p?.httpGet?.port === 'metrics' || p?.httpGet?.port === 9464, `probe port ${String(p?.httpGet?.port)}`);
        assert.ok(c.ports?.some((p) => p.name === 'metrics' && p.containerPort === 9464));
        const mem = bytes(c.resources?.limits?.memory);
        assert.ok(mem >= 512 * 1024 ** 2, `memory limit >= 512 MiB (README "Limits"), got ${String(c.resources?.limits?.memory)}`);
        assert.equal(bytes(c.resources?.requests?.memory), mem, 'memory requested in full');
        assert.ok(c.resources?.requests?.cpu && c.resources.limits?.cpu, 'CPU request and limit');
        assert.equal(c.image, 'strata:dev');
        assert.equal(c.imagePullPolicy, 'IfNotPresent');
      });

      test('DaemonSet: tolerates every taint, system-node-critical, RollingUpdate', () => {
        const ds = agentDaemonSet(renderedBy(dir));
        assert.deepEqual(ds.spec?.template.spec?.tolerations, [{ operator: 'Exists' }]);
        assert.equal(ds.spec?.template.spec?.priorityClassName, 'system-node-critical');
        assert.equal(ds.spec?.updateStrategy?.type, 'RollingUpdate');
      });

      test('RBAC: a ClusterRole with exactly get/list/watch on pods, nodes and apps replicasets, bound to the agent\'s ServiceAccount', () => {
        const objs = renderedBy(dir);
        const role = one(objs, 'ClusterRole') as K8sObject & { rules: { apiGroups?: string[]; resources?: string[]; verbs: string[]; resourceNames?: string[]; nonResourceURLs?: string[] }[] };
        const grants = role.rules.flatMap((r) => {
          assert.equal(r.resourceNames, undefined);
          assert.equal(r.nonResourceURLs, undefined);
          return (r.apiGroups ?? []).flatMap((g) => (r.resources ?? []).map((res) => `${g || 'core'}/${res}: ${[...r.verbs].sort().join(',')}`));
        });
        assert.deepEqual(grants.sort(), ['apps/replicasets: get,list,watch', 'core/nodes: get,list,watch', 'core/pods: get,list,watch']);
        assert.equal(find(objs, 'Role').length + find(objs, 'RoleBinding').length, 0);
        const binding = one(objs, 'ClusterRoleBinding') as K8sObject & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] };
        assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name });
        const ds = agentDaemonSet(objs);
        assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: ds.spec?.template.spec?.serviceAccountName, namespace: ds.metadata.namespace }]);
        one(objs, 'ServiceAccount', (o) => o.metadata.name === 'strata' && o.metadata.namespace === ds.metadata.namespace);
        one(objs, 'Namespace', (o) => o.metadata.name === ds.metadata.namespace);
      });

      test('the metrics Service selects the agent pods on the metrics port; a ServiceMonitor, where there is one, selects that Service', () => {
        const objs = renderedBy(dir);
        const ds = agentDaemonSet(objs);
        const podLabels = ds.spec?.template.metadata?.labels ?? {};
        const svc = one(objs, 'Service', (o) => o.metadata.name === 'strata-metrics') as K8sObject & { spec: { selector: Record<string, string>; clusterIP?: string; ports: { name: string; targetPort: string | number }[] } };
        assert.notEqual(svc.metadata.name, 'strata', 'not named strata: no STRATA_* service-link variables');
        for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v, `pod label ${k}`);
        assert.equal(svc.spec.clusterIP, 'None', 'headless: one endpoint per node');
        assert.ok(svc.spec.ports.some((p) => p.name === 'metrics' && p.targetPort === 'metrics'));
        const monitors = find(objs, 'ServiceMonitor') as (K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path: string }[] } })[];
        assert.equal(monitors.length, dir === 'overlays/monitoring' ? 1 : 0, 'a ServiceMonitor only in overlays/monitoring (the base applies without the operator\'s CRDs)');
        for (const m of monitors) {
          for (const [k, v] of Object.entries(m.spec.selector.matchLabels)) assert.equal(svc.metadata.labels?.[k], v, `Service label ${k}`);
          // the agent's metrics, and the layer histogram with exemplars (OpenMetrics, its own path)
          assert.deepEqual(m.spec.endpoints.map((e) => [e.port, e.path]), [['metrics', '/metrics'], ['metrics', '/metrics/layers']]);
        }
      });
    });
  }

  describe('overlays/example', { skip: skipNoKubectl }, () => {
    test('the agent exports OTLP/HTTP to the in-cluster Jaeger all-in-one (4317, 4318, UI 16686)', () => {
      const objs = renderedBy('overlays/example');
      const cm = one(objs, 'ConfigMap', (o) => o.metadata.namespace === 'strata' && o.metadata.name.startsWith('strata')) as K8sObject & { data: Record<string, string> };
      const tmp = mkdtempSync(join(tmpdir(), 'strata-manifests-'));
      after(() => rmSync(tmp, { recursive: true, force: true }));
      const file = join(tmp, 'strata.yaml');
      writeFileSync(file, cm.data['strata.yaml'] ?? '');
      const config = loadConfig({ file, env: { NODE_NAME: 'node-7' }, warn: () => assert.fail('no warnings') });
      assert.equal(config.export.otlp.protocol, 'http/protobuf');
      const url = new URL(config.export.otlp.endpoint);
      assert.equal(url.pathname, '/v1/traces');
      const [svcName, ns] = url.hostname.split('.');
      const svc = one(objs, 'Service', (o) => o.metadata.name === svcName && o.metadata.namespace === ns) as K8sObject & { spec: { selector: Record<string, string>; ports: { name: string; port: number }[] } };
      assert.deepEqual(Object.fromEntries(svc.spec.ports.map((p) => [p.name, p.port])), { 'otlp-grpc': 4317, 'otlp-http': 4318, ui: 16686 });
      assert.equal(Number(url.port), 4318);
      const jaeger = one(objs, 'Deployment', (o) => o.metadata.namespace === ns && Object.entries(svc.spec.selector).every(([k, v]) => (o as unknown as { spec: { template: { metadata: { labels: Record<string, string> } } } }).spec.template.metadata.labels[k] === v)) as unknown as { spec: { template: { spec: { containers: IContainer[] } } } };
      assert.match(jaeger.spec.template.spec.containers[0]?.image ?? '', /^jaegertracing\/all-in-one:/);
    });

    test('NGINX proxies to the demo app\'s Service, and the agent labels nginx as the proxy layer', () => {
      const objs = renderedBy('overlays/example');
      const conf = (one(objs, 'ConfigMap', (o) => o.metadata.name === 'nginx') as K8sObject & { data: Record<string, string> }).data['default.conf'] ?? '';
      const upstream = /server\s+([\w.-]+):(\d+);/.exec(conf);
      assert.ok(upstream, 'an upstream server');
      const [svcName, ns] = (upstream[1] ?? '').split('.');
      const svc = one(objs, 'Service', (o) => o.metadata.name === svcName && o.metadata.namespace === ns) as K8sObject & { spec: { ports: { port: number }[] } };
      assert.ok(svc.spec.ports.some((p) => p.port === Number(upstream[2])));
      one(objs, 'Deployment', (o) => o.metadata.name === 'nginx');
      one(objs, 'Deployment', (o) => o.metadata.name === svcName);
      assert.ok(loadConfig({ env: {} }).correlator.proxyComms.includes('nginx'));
    });
  });

  test('the validator rejects a broken DaemonSet (a string where an integer is required, a required field missing)', { skip: skipNoKubectl }, () => {
    const ds = structuredClone(agentDaemonSet(renderedBy('base'))) as unknown as K8sObject & IDaemonSet;
    assert.equal(schemaErrors(ds), '');
    const badPort = structuredClone(ds);
    (agentContainer(badPort).ports as { containerPort: unknown }[])[0]!.containerPort = '9464';
    assert.match(schemaErrors(badPort), /containerPort must be integer/);
    const noSelector = structuredClone(ds) as unknown as { spec: Record<string, unknown> } & K8sObject;
    delete noSelector.spec.selector;
    assert.match(schemaErrors(noSelector), /must have required property '?selector'?/);
    assert.match(schemaErrors({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } }), /no offline schema for v1 Secret/);
  });

  test('the validator rejects a broken ServiceMonitor (an endpoint port that is not a name)', () => {
    const sm = { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'x' }, spec: { selector: {}, endpoints: [{ port: 9464 }] } };
    assert.match(schemaErrors(sm), /port must be string/);
  });
});

test('the image (Dockerfile CMD, scripts/image.sh) runs AGENT_IMAGE_COMMAND, the JavaScript build with the agent\'s V8 flags; the strata command starts node with those flags', () => {
  const root = join(import.meta.dirname, '../..');
  assert.deepEqual(AGENT_IMAGE_COMMAND.slice(0, 2 + AGENT_NODE_FLAGS.length), ['node', ...AGENT_NODE_FLAGS, 'dist/src/cli.js']);
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
  assert.ok(cmd, 'the Dockerfile has a CMD in exec form');
  assert.deepEqual(JSON.parse(cmd) as string[], AGENT_IMAGE_COMMAND);
  // the runtime stage takes dist/ (built by build:js in the builder) and none of agent/'s sources
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  assert.match(dockerfile, /npm run build:js/);
  assert.match(runtime, /^COPY --from=builder \/opt\/strata\/dist dist$/m);
  assert.doesNotMatch(runtime, /^COPY .*\bagent\//m, 'the runtime stage copies no agent/ sources');
  // scripts/image.sh takes the cmd from AGENT_IMAGE_COMMAND, no literal of its own (the built
  // image's config is checked in test/integration/image.test.ts)
  const imageSh = readFileSync(join(root, 'scripts/image.sh'), 'utf8');
  const buildAgent = /^build_agent\(\) \{\n[^]*?\n\}$/m.exec(imageSh)?.[0] ?? '';
  assert.deepEqual([...buildAgent.matchAll(/--config\.cmd ([^\s)]+)/g)].map((m) => m[1]), ['"$w"'], 'build_agent: one --config.cmd, fed by agent_cmd');
  assert.match(imageSh, /m\.AGENT_IMAGE_COMMAND/);
  const shebang = readFileSync(join(root, 'agent/src/cli.ts'), 'utf8').split('\n')[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
});
