# The kernel-datapath OVS job in the guest (test/vm/ovs-kernel.test.ts; by hand:
# bash scripts/vm.sh run 6.1 --script test/vm/ovs-kernel-job.sh --out DIR). Runs as root in this
# checkout; what it finds goes to $STRATA_VM_OUT:
#   modprobe.rc, kallsyms.txt   modprobe openvswitch's exit code; which of the module's functions
#                               the kprobe variant needs the kernel has
#   ovs-tracepoints.txt         tracefs events/openvswitch/ after the modprobe
#   report.json, report.rc      test/vm/ovs-kernel-guest.ts (its stderr: report.err)
#   times                       guest uptime at each step
node=./node_modules/.bin/node
out=$STRATA_VM_OUT
stamp() { echo "$1 $(cut -d' ' -f1 /proc/uptime)" >>"$out/times"; }
stamp start
modprobe openvswitch 2>"$out/modprobe.err"
echo $? >"$out/modprobe.rc"
ls /sys/kernel/tracing/events/openvswitch >"$out/ovs-tracepoints.txt" 2>/dev/null
grep -wE 'ovs_dp_upcall|ovs_execute_actions|ovs_packet_cmd_execute' /proc/kallsyms | awk '{print $3}' | sort -u >"$out/kallsyms.txt"
stamp modprobe
"$node" test/vm/ovs-kernel-guest.ts >"$out/report.json" 2>"$out/report.err"
echo $? >"$out/report.rc"
stamp guest
