#!/bin/sh
# PID 1 of an ironlb user-mode-linux guest (started by lab/uml.py, which copies this file into the job dir).
#
# The root filesystem is the HOST's root through hostfs, read-write: everything this script mounts is
# guest-only (tmpfs, proc, sysfs), and the only host paths it writes are inside the job dir the host made.
# The kernel passes unknown command-line words KEY=VAL as environment: IRONLB_UML_JOB names the job dir,
# which holds job.sh (cwd, env and argv, written by the host) and receives stdout, stderr and exitcode.
#
# Whatever happens, the last thing this script does is power the guest off: if PID 1 exited instead, the
# kernel would panic, and the host would report a crash rather than the command's exit code.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
job=${IRONLB_UML_JOB:-}
unset IRONLB_UML_JOB

log() { echo "ironlb-uml-init: $*" >&2; }

power_off() {
    sync
    # LINUX_REBOOT_CMD_POWER_OFF through the raw reboot(2) syscall: no init system to ask.
    /usr/bin/python3 -c 'import ctypes; ctypes.CDLL(None, use_errno=True).reboot(0x4321fedc)'
    log "power off failed; halting by exiting PID 1"
    exit 1
}

if [ -z "$job" ] || [ ! -f "$job/job.sh" ]; then
    log "no job: IRONLB_UML_JOB=${job:-<unset>}"
    power_off
fi

# Guest-private mounts. /run must be a tmpfs so `ip netns` state (and our modprobe wrapper) stay in the guest.
mount -t proc proc /proc || log "mount /proc failed"
mount -t sysfs sysfs /sys || log "mount /sys failed"
grep -q ' /dev devtmpfs ' /proc/mounts || mount -t devtmpfs devtmpfs /dev || log "mount /dev failed"
mount -t tmpfs -o mode=0755 tmpfs /run || log "mount /run failed"
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || log "mount /dev/shm failed"
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || log "mount /dev/pts failed"

# Kernel modules: the UML kernel's live in /usr/lib/uml/modules/<version>, not /lib/modules. A module root
# under /run points there, and a modprobe wrapper (used by the kernel's request_module and, first in PATH,
# by tools such as ipvsadm) passes it with -d.
kver=$(uname -r)
real_modprobe=$(command -v modprobe)
mkdir -p /run/ironlb-uml/modroot/lib/modules /run/ironlb-uml/bin
ln -s "/usr/lib/uml/modules/$kver" "/run/ironlb-uml/modroot/lib/modules/$kver"
cat >/run/ironlb-uml/bin/modprobe <<EOF
#!/bin/sh
exec $real_modprobe -d /run/ironlb-uml/modroot "\$@"
EOF
chmod 0755 /run/ironlb-uml/bin/modprobe
echo /run/ironlb-uml/bin/modprobe >/proc/sys/kernel/modprobe

ip link set lo up || log "bringing lo up failed"

# The job script replaces the environment with the caller's; it puts /run/ironlb-uml/bin first in PATH.
/bin/sh "$job/job.sh" >"$job/stdout" 2>"$job/stderr" </dev/null
status=$?
# Written then renamed, so the host never reads a half-written exit code.
echo "$status" >"$job/exitcode.tmp" && mv "$job/exitcode.tmp" "$job/exitcode"
power_off
