# The kernel matrix's job in the guest (test/vm/kernel-matrix.test.ts; by hand:
# bash scripts/vm.sh run 6.1 --script test/vm/matrix-job.sh --out DIR). Runs as root in this
# checkout; what it finds goes to $STRATA_VM_OUT:
#   ovs-before.txt, ovs-after.txt   tracefs events/openvswitch/ before and after modprobe openvswitch
#   modprobe.rc                     modprobe openvswitch's exit code
#   check.json, check.rc            `strata check --json` (after the modprobe: the OVS rows are real)
#   families.json, families.rc      test/vm/guest-families.ts: each family loaded, attached, fired
#   times                           guest uptime at each step
node=./node_modules/.bin/node
out=$STRATA_VM_OUT
stamp() { echo "$1 $(cut -d' ' -f1 /proc/uptime)" >>"$out/times"; }
stamp start
ls /sys/kernel/tracing/events/openvswitch >"$out/ovs-before.txt" 2>/dev/null
modprobe openvswitch 2>"$out/modprobe.err"
echo $? >"$out/modprobe.rc"
ls /sys/kernel/tracing/events/openvswitch >"$out/ovs-after.txt" 2>/dev/null
stamp modprobe
"$node" agent/src/cli.ts check --json >"$out/check.json" 2>"$out/check.err"
echo $? >"$out/check.rc"
stamp check
"$node" test/vm/guest-families.ts >"$out/families.json" 2>"$out/families.err"
echo $? >"$out/families.rc"
stamp families
