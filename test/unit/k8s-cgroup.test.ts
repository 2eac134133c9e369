// The /proc/<pid>/cgroup parser on path samples of each style found on real nodes: cgroup v1
// (one line per hierarchy) and v2 (one "0::" line) and hybrid hosts (both, this machine's layout);
// containerd, CRI-O and Docker; the cgroupfs and systemd drivers; every QoS class; static pods;
// kind's nested kubelet; paths seen from inside a cgroup namespace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { containerIdFromStatus, parseCgroupPath, parseProcCgroup } from '../../agent/src/k8s/cgroup.ts';

const UID = '3f5c9b1e-8d2a-4c1b-9e7f-0a1b2c3d4e5f';
const UID_ = UID.replace(/-/g, '_');
const CID = '34dc0b5e626f2c5c4c5170e34b10e7654ce36f0fcd532739f4445baabea03376';
const SANDBOX = '9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d';

test('cgroup v1, cgroupfs driver, containerd (kubelet 1.20 on this VM): every hierarchy names the pod', () => {
  const text = [
    `12:pids:/kubepods/besteffort/pod${UID}/${CID}`,
    `11:cpu,cpuacct:/kubepods/besteffort/pod${UID}/${CID}`,
    `4:memory:/kubepods/besteffort/pod${UID}/${CID}`,
    `1:name=systemd:/kubepods/besteffort/pod${UID}/${CID}`,
    // hybrid host whose runtime left the v2 hierarchy alone
    '0::/',
    '',
  ].join('\n');
  assert.deepEqual(parseProcCgroup(text), { podUid: UID, containerId: CID, qos: 'besteffort', v2Path: '/' });
});

test('cgroup v2, systemd driver, containerd', () => {
  const p = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/cri-containerd-${CID}.scope`;
  assert.deepEqual(parseProcCgroup(`0::${p}\n`), { podUid: UID, containerId: CID, qos: 'burstable', runtime: 'containerd', v2Path: p });
});

test('CRI-O: systemd (crio-<id>.scope; crio-conmon is the monitor, not the container) and cgroupfs (crio-<id>)', () => {
  const base = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`;
  assert.deepEqual(parseCgroupPath(`${base}/crio-${CID}.scope`), { podUid: UID, containerId: CID, qos: 'besteffort', runtime: 'crio' });
  assert.deepEqual(parseCgroupPath(`${base}/crio-conmon-${CID}.scope`), { podUid: UID, qos: 'besteffort' });
  assert.deepEqual(parseCgroupPath(`/kubepods/burstable/pod${UID}/crio-${CID}`), { podUid: UID, containerId: CID, qos: 'burstable', runtime: 'crio' });
});

test('Docker (dockershim): systemd driver on cgroup v1; plain Docker containers are no pod', () => {
  const text = [
    `10:devices:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/docker-${CID}.scope`,
    `1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice/docker-${CID}.scope`,
  ].join('\n');
  assert.deepEqual(parseProcCgroup(text), { podUid: UID, containerId: CID, qos: 'burstable', runtime: 'docker' });
  assert.deepEqual(parseProcCgroup(`4:memory:/docker/${CID}\n2:cpu:/system.slice/docker-${CID}.scope\n`), {});
});

test('Guaranteed pods have no QoS level (cgroupfs and systemd)', () => {
  assert.deepEqual(parseCgroupPath(`/kubepods/pod${UID}/${CID}`), { podUid: UID, containerId: CID, qos: 'guaranteed' });
  assert.deepEqual(parseCgroupPath(`/kubepods.slice/kubepods-pod${UID_}.slice/cri-containerd-${CID}.scope`),
    { podUid: UID, containerId: CID, qos: 'guaranteed', runtime: 'containerd' });
});

test('kind (kubelet nested under kubelet.slice), k3s, a --cgroup-root, the lab under its own parent', () => {
  const kind = `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice/cri-containerd-${CID}.scope`;
  assert.deepEqual(parseCgroupPath(kind), { podUid: UID, containerId: CID, qos: 'besteffort', runtime: 'containerd' });
  assert.deepEqual(parseCgroupPath(`/k8s.io/kubepods/burstable/pod${UID}/${CID}`), { podUid: UID, containerId: CID, qos: 'burstable' });
  assert.deepEqual(parseCgroupPath(`/sdi1a2b.lab/kubepods/besteffort/pod${UID}/${CID}`), { podUid: UID, containerId: CID, qos: 'besteffort' });
});

test('a static pod: its UID is the 32-hex config hash', () => {
  const hash = '6a5cbb0f1c7de3b2a9d8e7f6a5b4c3d2';
  assert.deepEqual(parseCgroupPath(`/kubepods/burstable/pod${hash}/${CID}`), { podUid: hash, containerId: CID, qos: 'burstable' });
});

test('seen from inside a cgroup namespace: relative paths still name pod and container', () => {
  assert.deepEqual(parseProcCgroup(`0::/../../pod${UID}/${CID}\n`), { podUid: UID, containerId: CID, qos: 'guaranteed', v2Path: `/../../pod${UID}/${CID}` });
  assert.equal(parseCgroupPath(`/../../../burstable/pod${UID}/${CID}`).qos, 'burstable');
});

test('the pod cgroup itself, the sandbox, and a container\'s own sub-cgroups', () => {
  assert.deepEqual(parseCgroupPath(`/kubepods/besteffort/pod${UID}`), { podUid: UID, qos: 'besteffort' });
  assert.deepEqual(parseCgroupPath(`/kubepods/besteffort/pod${UID}/${SANDBOX}`).containerId, SANDBOX);
  assert.equal(parseCgroupPath(`/kubepods/besteffort/pod${UID}/${CID}/init.scope`).containerId, CID);
});

test('not a pod: host services, the root, look-alikes', () => {
  assert.deepEqual(parseProcCgroup('0::/system.slice/ssh.service\n'), { v2Path: '/system.slice/ssh.service' });
  assert.deepEqual(parseProcCgroup('0::/\n'), { v2Path: '/' });
  assert.deepEqual(parseCgroupPath('/user.slice/podman-pod1234.scope'), {});
  assert.deepEqual(parseCgroupPath(`/kubepods/besteffort/notpod${UID}/${CID}`), {});
  assert.deepEqual(parseCgroupPath(`/kubepods/besteffort/pod${UID}x/${CID}`), {});
  assert.deepEqual(parseProcCgroup('garbage\n\n:\n'), {});
});

test('v2 is preferred when both name the pod, and a line naming the container wins over one that does not', () => {
  const text = [
    `5:cpuset:/kubepods/besteffort/pod${UID}`, // v1 cpuset left at the pod level
    `0::/kubepods/besteffort/pod${UID}/${CID}`,
  ].join('\n');
  assert.deepEqual(parseProcCgroup(text), { podUid: UID, containerId: CID, qos: 'besteffort', v2Path: `/kubepods/besteffort/pod${UID}/${CID}` });
});

test('container IDs in pod status lose their runtime prefix', () => {
  assert.equal(containerIdFromStatus(`containerd://${CID}`), CID);
  assert.equal(containerIdFromStatus(`cri-o://${CID}`), CID);
  assert.equal(containerIdFromStatus(`docker://${CID}`), CID);
  assert.equal(containerIdFromStatus(undefined), undefined);
});
