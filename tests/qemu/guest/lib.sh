# Helpers for the guest step scripts (busybox sh). Sourced by /init and by
# each step: `. /qemu/lib.sh`. /qemu/config holds what the host passed in.
[ -f /qemu/config ] && . /qemu/config

say() { echo "-- $*"; }
fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
# Echo a command, then run it.
x() { echo "+ $*"; "$@"; }
# Run a command; fail the step with a message if it fails.
must() { echo "+ $*"; "$@" || fail "command failed (status $?): $*"; }

# wait_until SECONDS COMMAND...: poll every 0.2s until COMMAND succeeds.
wait_until() {
  _t=$(($1 * 5)); shift
  while [ $_t -gt 0 ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2; _t=$((_t - 1))
  done
  return 1
}

# PCI addresses of NVMe controllers (class 0x010802).
nvme_pci_ctrls() {
  for _d in /sys/bus/pci/devices/*; do
    [ "$(cat "$_d/class")" = 0x010802 ] && echo "${_d##*/}"
  done
}

module_loaded() { [ -d "/sys/module/$(echo "$1" | tr - _)" ]; }

# Fabrics controller (nvmeN) connected to subsystem NQN, newest first; optional
# second argument: traddr to match.
nvmf_ctrl_by_nqn() {
  for _c in $(ls -d /sys/class/nvme/nvme* 2>/dev/null | sort -t e -k3 -n -r); do
    [ "$(cat "$_c/subsysnqn" 2>/dev/null)" = "$1" ] || continue
    [ "$(cat "$_c/transport" 2>/dev/null)" = pcie ] && continue
    if [ -n "$2" ] && ! grep -q "traddr=$2," "$_c/address" 2>/dev/null; then continue; fi
    echo "${_c##*/}"; return 0
  done
  return 1
}

# Block device (/dev/nvmeXnY) of namespace NSID (default 1) of controller nvmeN.
# With native multipath the controller has a path node nvmeXcNnY and the block
# device is the head nvmeXnY.
nvme_ns_blk() {
  _ns=${2:-1}
  for _p in /sys/class/nvme/"$1"/nvme*n"$_ns"; do
    [ -e "$_p" ] || continue
    _b=$(echo "${_p##*/}" | sed 's/c[0-9]*n/n/')
    [ -b "/dev/$_b" ] && { echo "/dev/$_b"; return 0; }
  done
  return 1
}

# wait_ns_blk CTRL [NSID] [SECONDS]: wait for the namespace block device, print it.
wait_ns_blk() {
  wait_until "${3:-20}" nvme_ns_blk "$1" "${2:-1}" || return 1
  nvme_ns_blk "$1" "${2:-1}"
}

# fio_verify DEV SIZE [extra fio args]: random writes of 4k..256k with crc32c
# checksums, then read back and verify everything written.
fio_verify() {
  _dev=$1 _size=$2; shift 2
  x fio --name=verify --filename="$_dev" --direct=1 --ioengine=libaio --iodepth=8 \
    --rw=randwrite --bsrange=4k-256k --size="$_size" --verify=crc32c --verify_fatal=1 \
    --do_verify=1 --verify_state_save=0 --group_reporting "$@" || fail "fio verify on $_dev"
}

# dd_verify DEV MIB: write MIB MiB of random data at offset 0 with O_DIRECT,
# read it back with O_DIRECT and compare.
dd_verify() {
  _dev=$1 _mib=$2
  head -c $((_mib * 1048576)) /dev/urandom >/tmp/dd-pattern
  x dd if=/tmp/dd-pattern of="$_dev" bs=1M count="$_mib" oflag=direct conv=fsync 2>&1 || fail "dd write to $_dev"
  x dd if="$_dev" of=/tmp/dd-readback bs=1M count="$_mib" iflag=direct 2>&1 || fail "dd read from $_dev"
  cmp /tmp/dd-pattern /tmp/dd-readback || fail "data read back from $_dev differs from what was written"
  echo "dd: ${_mib} MiB written and read back identical"
  rm -f /tmp/dd-pattern /tmp/dd-readback
}

# Kernel NVMe target (nvmet) through configfs.
NVMET=/sys/kernel/config/nvmet
# nvmet_setup NQN TRADDR TRSVCID BLOCKDEV [PORTID]
nvmet_setup() {
  _nqn=$1 _addr=$2 _svc=$3 _dev=$4 _pid=${5:-1}
  modprobe nvmet || return 1
  modprobe nvmet-tcp || return 1
  _s=$NVMET/subsystems/$_nqn
  mkdir "$_s" || return 1
  echo 1 >"$_s/attr_allow_any_host"
  echo nvmf-rs-testbed >"$_s/attr_model" 2>/dev/null
  mkdir "$_s/namespaces/1"
  echo "$_dev" >"$_s/namespaces/1/device_path"
  echo 1 >"$_s/namespaces/1/enable" || return 1
  _p=$NVMET/ports/$_pid
  mkdir "$_p"
  echo tcp >"$_p/addr_trtype"
  echo ipv4 >"$_p/addr_adrfam"
  echo "$_addr" >"$_p/addr_traddr"
  echo "$_svc" >"$_p/addr_trsvcid"
  ln -s "$_s" "$_p/subsystems/$_nqn" || return 1
  echo "nvmet: $_nqn on tcp $_addr:$_svc, namespace 1 = $_dev"
}
# nvmet_teardown NQN [PORTID]
nvmet_teardown() {
  _nqn=$1 _pid=${2:-1}
  rm -f "$NVMET/ports/$_pid/subsystems/$_nqn" 2>/dev/null
  rmdir "$NVMET/ports/$_pid" 2>/dev/null
  [ -d "$NVMET/subsystems/$_nqn/namespaces/1" ] && echo 0 >"$NVMET/subsystems/$_nqn/namespaces/1/enable" 2>/dev/null
  rmdir "$NVMET/subsystems/$_nqn/namespaces/1" 2>/dev/null
  rmdir "$NVMET/subsystems/$_nqn" 2>/dev/null
  return 0
}

# Memory-backed null_blk device (writes are kept, so data can be verified).
null_blk_setup() {
  module_loaded null_blk || modprobe null_blk nr_devices=1 gb="${1:-1}" memory_backed=1 || return 1
  wait_until 5 test -b /dev/nullb0
}

# Driver bound to PCI device BDF (empty when none).
pci_driver() {
  [ -e "/sys/bus/pci/devices/$1/driver" ] && basename "$(readlink "/sys/bus/pci/devices/$1/driver")"
}
# IOMMU group number of PCI device BDF (also set up in no-IOMMU mode once vfio-pci bound it).
pci_group() {
  [ -e "/sys/bus/pci/devices/$1/iommu_group" ] && basename "$(readlink "/sys/bus/pci/devices/$1/iommu_group")"
}
# The VFIO group node of BDF: /dev/vfio/N (IOMMU) or /dev/vfio/noiommu-N.
vfio_node() {
  _g=$(pci_group "$1") || return 1
  for _n in /dev/vfio/$_g /dev/vfio/noiommu-$_g; do [ -e "$_n" ] && { echo "$_n"; return 0; }; done
  return 1
}
# The block devices (nvmeXnY) of the PCIe controller at BDF bound to nvme.
pci_nvme_blk() {
  for _p in /sys/bus/pci/devices/"$1"/nvme/nvme*/nvme*n*; do
    [ -e "$_p" ] || continue
    _b=$(echo "${_p##*/}" | sed 's/c[0-9]*n/n/')
    [ -b "/dev/$_b" ] && { echo "/dev/$_b"; return 0; }
  done
  return 1
}
# vfio_bind BDF [HUGEMEM_MB]: hugepage-setup config for BDF only (with --noiommu in the
# no-IOMMU profile), then check the binding and the group node.
vfio_bind() {
  _extra=
  [ "$IOMMU_PROFILE" = noiommu ] && _extra=--noiommu
  must hugepage-setup config --hugemem "${2:-256}" --pci-allowed "$1" $_extra
  [ "$(pci_driver "$1")" = vfio-pci ] || fail "$1 is on '$(pci_driver "$1")', not vfio-pci"
  wait_until 5 vfio_node "$1" || fail "no /dev/vfio node for $1 (group $(pci_group "$1"))"
  echo "$1: driver vfio-pci, group node $(vfio_node "$1")"
}
# nvme_rebind BDF: give BDF back to the kernel nvme driver (hugepages kept), wait for its disk.
nvme_rebind() {
  must hugepage-setup reset --pci-allowed "$1" --keep-hugepages
  wait_until 20 pci_nvme_blk "$1" || fail "no block device for $1 after re-binding to nvme"
  echo "$1: driver $(pci_driver "$1"), disk $(pci_nvme_blk "$1")"
}
# The first emulated NVMe controller (the one the test bed gives the guest).
test_ctrl() {
  _c=$(nvme_pci_ctrls | head -1)
  [ -n "$_c" ] || fail "no PCI NVMe controller (class 0x010802)"
  echo "$_c"
}
# Our binaries the step needs: skip when one is missing (not built on the host).
need_bins() {
  for _b in "$@"; do command -v "$_b" >/dev/null 2>&1 || skip "$_b is not in the guest (build it with cargo build --release first)"; done
}

# nvmf_tgt in the guest. tgt_start ARGS...: start it in the background (RPC socket $TGT_SOCK,
# output in $TGT_LOG) and wait until its RPC socket answers. tgt_stop: SIGTERM, wait, and fail
# unless it exited with status 0. rpc METHOD ARGS...: the built-in JSON-RPC client.
TGT_SOCK=/tmp/nvmf_tgt.sock
TGT_LOG=/tmp/nvmf_tgt.log
TGT_PID=
rpc() { nvmf_tgt rpc -s "$TGT_SOCK" "$@"; }
tgt_start() {
  rm -f "$TGT_SOCK"
  echo "+ nvmf_tgt -r $TGT_SOCK $* &"
  RUST_LOG=${RUST_LOG:-info} nvmf_tgt -r "$TGT_SOCK" "$@" >"$TGT_LOG" 2>&1 &
  TGT_PID=$!
  _i=0
  while [ $_i -lt 300 ]; do
    if ! kill -0 "$TGT_PID" 2>/dev/null; then cat "$TGT_LOG"; TGT_PID=; fail "nvmf_tgt exited at start"; fi
    [ -S "$TGT_SOCK" ] && rpc spdk_get_version >/dev/null 2>&1 && break
    sleep 0.1; _i=$((_i + 1))
  done
  [ $_i -lt 300 ] || { cat "$TGT_LOG"; fail "nvmf_tgt RPC socket not up after 30 s"; }
  echo "nvmf_tgt (pid $TGT_PID) up after $((_i / 10)).$((_i % 10))s"
}
tgt_stop() {
  [ -n "$TGT_PID" ] || return 0
  kill -TERM "$TGT_PID" 2>/dev/null
  _i=0
  while kill -0 "$TGT_PID" 2>/dev/null && [ $_i -lt 150 ]; do sleep 0.1; _i=$((_i + 1)); done
  if kill -0 "$TGT_PID" 2>/dev/null; then
    kill -KILL "$TGT_PID"; wait "$TGT_PID" 2>/dev/null; TGT_PID=
    echo "---- nvmf_tgt log ----"; tail -n 40 "$TGT_LOG"
    fail "nvmf_tgt did not exit within 15 s of SIGTERM"
  fi
  wait "$TGT_PID"; _rc=$?; TGT_PID=
  echo "---- nvmf_tgt log (last 30 lines) ----"; tail -n 30 "$TGT_LOG"; echo "----"
  [ $_rc = 0 ] || fail "nvmf_tgt exited with status $_rc"
  echo "nvmf_tgt stopped cleanly"
}
# tgt_attach_pcie BDF: attach the VFIO-bound controller at BDF to the running nvmf_tgt as
# Nvme0 (direct mode) and check that bdev Nvme0n1 exists; skips when this nvmf_tgt has no
# direct mode.
tgt_attach_pcie() {
  _out=$(x rpc bdev_nvme_attach_controller --name Nvme0 --trtype PCIe --traddr "$1" 2>&1); _rc=$?
  echo "$_out"
  if [ $_rc != 0 ]; then
    if echo "$_out" | grep -q 'not available\|-95'; then skip "this nvmf_tgt has no direct mode: $_out"; fi
    tail -n 20 "$TGT_LOG"; fail "bdev_nvme_attach_controller -t PCIe -a $1"
  fi
  echo "$_out" | grep -q Nvme0n1 || fail "attach did not create bdev Nvme0n1"
  _out=$(x rpc bdev_get_bdevs --name Nvme0n1 2>&1) || { echo "$_out"; fail "bdev_get_bdevs Nvme0n1"; }
  echo "$_out" | grep -E '"(name|block_size|num_blocks|product_name|pci_address)"'
}
# tgt_copied_bytes BDEV: bytes the NVMe bdev copied through bounce buffers instead of moving
# them in DMA buffers lent to the transport (bdev_get_bdevs data_copied_bytes).
tgt_copied_bytes() {
  rpc bdev_get_bdevs --name "$1" | sed -n 's/.*"data_copied_bytes": *\([0-9]*\).*/\1/p'
}
# tgt_direct_export BDF TRTYPE NQN SERIAL ADDR PORT: bind BDF to vfio-pci (256 hugepages), start
# nvmf_tgt with two reactors, attach the controller (tgt_attach_pcie) and export Nvme0n1 as NQN
# on a TRTYPE (TCP or RDMA) listener at ADDR:PORT.
tgt_direct_export() {
  [ "$(pci_driver "$1")" = vfio-pci ] && vfio_node "$1" >/dev/null || vfio_bind "$1" 256
  echo "hugepages free: $(awk '/HugePages_Free/{print $2}' /proc/meminfo)"
  tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default
  tgt_attach_pcie "$1"
  must rpc nvmf_create_transport --trtype "$2"
  must rpc nvmf_create_subsystem --nqn "$3" --allow_any_host true --str serial_number "$4"
  must rpc nvmf_subsystem_add_ns --nqn "$3" --namespace '{"bdev_name":"Nvme0n1"}'
  must rpc nvmf_subsystem_add_listener --nqn "$3" --json "{\"listen_address\":{\"trtype\":\"$2\",\"adrfam\":\"IPv4\",\"traddr\":\"$5\",\"trsvcid\":\"$6\"}}"
  [ "$(rpc framework_get_reactors | grep -c '"lcore"')" = 2 ] || fail "expected 2 reactors (one per guest CPU)"
}
# nvme_disconnect_one NQN: nvme disconnect must disconnect exactly one controller.
nvme_disconnect_one() {
  _out=$(x nvme disconnect -n "$1" 2>&1); _rc=$?
  echo "$_out"
  [ $_rc = 0 ] || fail "nvme disconnect -n $1"
  echo "$_out" | grep -q 'disconnected 1 controller' || fail "nvme disconnect -n $1 did not disconnect 1 controller"
}

# NVMe/RDMA over soft-RoCE (steps 20-rdma, 21-rdma-direct).
# rdma_need: skip unless nvmf_tgt was built with the rdma feature (it then links librdmacm),
# host_check and nvmf-perf too (cargo build ... --features nvmf-tgt/rdma,nvmf-tests/rdma), and
# the image has the rxe provider (ibverbs-providers) and the rdma tool (iproute2).
rdma_need() {
  grep -q rdma_create_id /usr/local/bin/nvmf_tgt 2>/dev/null || skip "nvmf_tgt was built without --features rdma"
  for _b in host_check nvmf-perf; do
    grep -q rdma_connect "/usr/local/bin/$_b" 2>/dev/null || skip "$_b was built without the nvmf/rdma feature"
  done
  [ -e /etc/libibverbs.d/rxe.driver ] || skip "the rxe provider (ibverbs-providers) is not in the guest image"
  command -v rdma >/dev/null 2>&1 || skip "the rdma tool (iproute2) is not in the guest image"
}
# host_check_rdma ADDR PORT NQN: our host client over RDMA (discovery, identify, 512 B..2 MiB
# split by MDTS, pipelined I/O, shutdown) must PASS, with a 2 MiB transfer among its checks.
host_check_rdma() {
  say "host_check over RDMA"
  x host_check "$1:$2" "$3" --trtype rdma >/tmp/host_check.out 2>&1
  _rc=$?
  cat /tmp/host_check.out
  [ $_rc = 0 ] || { tail -n 30 "$TGT_LOG"; fail "host_check --trtype rdma failed (status $_rc)"; }
  grep -q '^host_check: PASS' /tmp/host_check.out || fail "host_check --trtype rdma did not report PASS"
  grep -q 'CHECK rw-2097152 ok' /tmp/host_check.out || fail "no 2 MiB transfer over RDMA"
  grep -q 'CHECK compare-and-write ok: LBA' /tmp/host_check.out || fail "no fused Compare and Write over RDMA"
}
# rxe_setup ADDR: soft-RoCE device rxe0 on eth0 with ADDR/24 (crc32_generic first for rxe's
# ICRC, then the RDMA core, rxe and the nvme-rdma host); waits for /dev/infiniband/rdma_cm.
# Idempotent: a second step in the same boot finds everything in place.
rxe_setup() {
  for _m in crc32_generic ib_core ib_uverbs rdma_cm rdma_ucm rdma_rxe nvme-rdma; do
    module_loaded "$_m" || modprobe "$_m" || fail "modprobe $_m"
  done
  ip link set eth0 up
  ip addr show dev eth0 | grep -q "inet $1/" || ip addr add "$1/24" dev eth0 2>/dev/null
  wait_until 20 grep -q up /sys/class/net/eth0/operstate || fail "eth0 did not come up"
  rdma link show 2>/dev/null | grep -q rxe0 || must rdma link add rxe0 type rxe netdev eth0
  x rdma link show
  wait_until 20 test -e /dev/infiniband/rdma_cm || fail "/dev/infiniband/rdma_cm did not appear"
}
