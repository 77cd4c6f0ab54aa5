#!/bin/sh
# STEP: DH-HMAC-CHAP in-band authentication: nvmf_tgt in the guest with per-host keys (nvmf_subsystem_add_host dhchap_key/dhchap_ctrlr_key); the Linux host connects with nvme connect --dhchap-secret (unidirectional, SHA-256 + ffdhe2048), with --dhchap-ctrl-secret too (bidirectional, SHA-512 + null and SHA-384 + ffdhe2048), fio verify on each; every I/O queue authenticates; re-authentication of a live controller via sysfs; refused with a wrong host key, without a key, and when the controller key it expects is wrong. Runs in the auth profile (Debian 6.12 kernel; 6.1 has no CONFIG_NVME_AUTH)
# PROFILES: auth
. /qemu/lib.sh
need_bins nvmf_tgt
ADDR=127.0.0.1
PORT=4420
UNI=nqn.2016-06.io.nvmf-rs:auth-uni
BI=nqn.2016-06.io.nvmf-rs:auth-bi
BIDH=nqn.2016-06.io.nvmf-rs:auth-bi-dh
HOSTNQN=$(cat /etc/nvme/hostnqn 2>/dev/null) || fail "no /etc/nvme/hostnqn"
HOSTID=$(cat /etc/nvme/hostid 2>/dev/null)
# Test secrets in the nvme gen-dhchap-key format (not used anywhere else).
KEY='DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:'
CKEY='DHHC-1:03:tkXtMoNWCwhGPNWNxW7R0kwPwqq/ypzgrPEdcqdebbLegiJAaMmOI/I1MbHqpBrYYpac1LoXEvTGxOAl/f2AeXYCW+E=:'
WRONG='DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:'

# The kernel's host side of in-band authentication: nvme_auth_negotiate exists only with
# CONFIG_NVME_AUTH (6.1) / CONFIG_NVME_HOST_AUTH (6.7+).
modprobe nvme-fabrics 2>/dev/null
for m in nvme-auth hmac sha256_generic sha512_generic dh_generic; do modprobe "$m" 2>/dev/null; done
grep -q ' nvme_auth_negotiate' /proc/kallsyms 2>/dev/null ||
  skip "guest kernel $(uname -r) has no NVMe in-band authentication (CONFIG_NVME_AUTH / NVME_HOST_AUTH); run it in the auth profile (tests/qemu/run --profile auth), or set QEMU_AUTH_KERNEL_PKG to a kernel that has it"

# nvme-cli with --dhchap-secret (2.0+), or the fabrics options string written directly.
if nvme connect --help 2>&1 | grep -q dhchap-secret; then CLI=1; else CLI=0; fi
echo "nvme-cli: $(nvme version 2>&1 | head -1); --dhchap-secret supported: $CLI"
# connect NQN [HOST_SECRET [CTRL_SECRET]]
connect() {
  if [ $CLI = 1 ]; then
    set -- "$1" ${2:+--dhchap-secret=$2} ${3:+--dhchap-ctrl-secret=$3}
    _n=$1; shift
    x nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$_n" "$@"
  else
    _o="transport=tcp,traddr=$ADDR,trsvcid=$PORT,nqn=$1,hostnqn=$HOSTNQN${HOSTID:+,hostid=$HOSTID}"
    _o="$_o${2:+,dhchap_secret=$2}${3:+,dhchap_ctrl_secret=$3}"
    echo "+ echo <options with secrets> > /dev/nvme-fabrics"
    echo "$_o" >/dev/nvme-fabrics
  fi
}
cleanup() {
  for n in $UNI $BI $BIDH; do nvme disconnect -n "$n" >/dev/null 2>&1; done
  tgt_stop >/dev/null 2>&1
}
trap cleanup EXIT

host() {
  # host NQN SUBSYSTEM-NQN EXTRA-JSON
  echo "{\"method\": \"nvmf_subsystem_add_host\", \"params\": {\"nqn\": \"$1\", \"host\": \"$HOSTNQN\", $2}}"
}
sub() {
  # sub NQN BDEV
  echo "{\"method\": \"nvmf_create_subsystem\", \"params\": {\"nqn\": \"$1\", \"allow_any_host\": false}},
    {\"method\": \"nvmf_subsystem_add_ns\", \"params\": {\"nqn\": \"$1\", \"namespace\": {\"bdev_name\": \"$2\"}}},
    {\"method\": \"nvmf_subsystem_add_listener\", \"params\": {\"nqn\": \"$1\", \"listen_address\": {\"trtype\": \"TCP\", \"adrfam\": \"IPv4\", \"traddr\": \"$ADDR\", \"trsvcid\": \"$PORT\"}}}"
}
cat >/tmp/tgt-auth.json <<JSON
{"subsystems": [
  {"subsystem": "bdev", "config": [
    {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 16384, "block_size": 512}},
    {"method": "bdev_malloc_create", "params": {"name": "Malloc1", "num_blocks": 16384, "block_size": 512}},
    {"method": "bdev_malloc_create", "params": {"name": "Malloc2", "num_blocks": 16384, "block_size": 512}}]},
  {"subsystem": "nvmf", "config": [
    {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
    $(sub "$UNI" Malloc0),
    $(host "$UNI" "\"dhchap_key\": \"$KEY\""),
    $(sub "$BI" Malloc1),
    $(host "$BI" "\"dhchap_key\": \"$KEY\", \"dhchap_ctrlr_key\": \"$CKEY\", \"dhchap_digests\": [\"sha512\"], \"dhchap_dhgroups\": [\"null\"]"),
    $(sub "$BIDH" Malloc2),
    $(host "$BIDH" "\"dhchap_key\": \"$KEY\", \"dhchap_ctrlr_key\": \"$CKEY\", \"dhchap_digests\": [\"sha384\"], \"dhchap_dhgroups\": [\"ffdhe2048\"]")]}
]}
JSON
chmod 600 /tmp/tgt-auth.json
tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default --json /tmp/tgt-auth.json
grep -q 'FXxHMF\|tkXtMo' "$TGT_LOG" && fail "a secret appears in the nvmf_tgt log"
rpc save_config | grep -q 'FXxHMF\|tkXtMo' && fail "save_config writes a secret in clear"

# ok NQN HOST_SECRET CTRL_SECRET EXPECTED_DMESG: authenticated connect, I/O, disconnect
ok() {
  say "$1: authenticate (${3:+bidirectional, }expect '$4')"
  dmesg -c >/dev/null 2>&1
  connect "$1" "$2" "$3" || { dmesg | tail -20; tail -20 "$TGT_LOG"; fail "authenticated connect to $1"; }
  ctrl=$(nvmf_ctrl_by_nqn "$1" "$ADDR") || fail "no controller for $1 after connect"
  dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
  echo "connected: $ctrl, state $(cat /sys/class/nvme/$ctrl/state), $dev"
  dmesg | grep -i 'authenticat' | head -5
  dmesg | grep -q "$4" || fail "dmesg does not show '$4'"
  fio_verify "$dev" 4M
  nvme_disconnect_one "$1"
  wait_until 10 sh -c "! test -e /sys/class/nvme/$ctrl" || fail "$ctrl still present after disconnect"
}
# refused NQN HOST_SECRET CTRL_SECRET WHY
refused() {
  say "$1: must be refused ($4)"
  dmesg -c >/dev/null 2>&1
  out=$(connect "$1" "$2" "$3" 2>&1); rc=$?
  echo "$out"
  dmesg | grep -i 'auth\|nvme' | tail -5
  [ $rc != 0 ] || fail "connect to $1 succeeded ($4)"
  nvmf_ctrl_by_nqn "$1" >/dev/null && fail "a controller for $1 exists after the refused connect ($4)"
  echo "refused as expected (status $rc)"
}

ok "$UNI" "$KEY" "" "authenticated with hash hmac(sha256) dhgroup ffdhe2048"
grep -q "qid 0 host $HOSTNQN: authenticated (sha256, ffdhe2048)" "$TGT_LOG" || fail "target log: no successful authentication for $UNI"
# Linux 6.x authenticates every I/O queue after its Connect too.
grep -q "qid 1 host $HOSTNQN: authenticated (sha256, ffdhe2048)" "$TGT_LOG" || fail "target log: the I/O queues of $UNI did not authenticate"
ok "$BI" "$KEY" "$CKEY" "controller authenticated"
ok "$BIDH" "$KEY" "$CKEY" "authenticated with hash hmac(sha384) dhgroup ffdhe2048"
grep -q "auth-bi qid 0 host $HOSTNQN: authenticated (sha512, null, bidirectional)" "$TGT_LOG" || fail "target log: no bidirectional authentication for $BI"
grep -q "auth-bi-dh qid 0 host $HOSTNQN: authenticated (sha384, ffdhe2048, bidirectional)" "$TGT_LOG" || fail "target log: no bidirectional authentication for $BIDH"

# Re-authentication: writing the host secret to the controller's sysfs attribute makes Linux run
# a new transaction (AUTH_Negotiate on the authenticated queues) on the admin and I/O queues.
say "$BIDH: re-authentication of a live controller"
dmesg -c >/dev/null 2>&1
connect "$BIDH" "$KEY" "$CKEY" || fail "authenticated connect to $BIDH"
ctrl=$(nvmf_ctrl_by_nqn "$BIDH" "$ADDR") || fail "no controller for $BIDH after connect"
dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
[ -e "/sys/class/nvme/$ctrl/dhchap_secret" ] || fail "no /sys/class/nvme/$ctrl/dhchap_secret"
cntlid=$(cat "/sys/class/nvme/$ctrl/cntlid")
pat="controller $cntlid of $BIDH qid [0-9]* host $HOSTNQN: authenticated (sha384, ffdhe2048, bidirectional)"
n0=$(grep -c "$pat" "$TGT_LOG")
echo "target log: $n0 authenticated queue(s) of controller $cntlid before"
[ "$n0" -ge 2 ] || fail "expected the admin queue and at least one I/O queue of controller $cntlid to be authenticated"
x sh -c "printf '%s' '$KEY' > /sys/class/nvme/$ctrl/dhchap_secret" || fail "writing dhchap_secret"
wait_until 30 sh -c "[ \$(grep -c '$pat' $TGT_LOG) -ge $((n0 * 2)) ]" ||
  { dmesg | tail -20; tail -20 "$TGT_LOG"; fail "the queues of controller $cntlid did not all re-authenticate"; }
echo "target log: $(grep -c "$pat" "$TGT_LOG") authenticated queue(s) of controller $cntlid after"
dmesg | grep -i 'authenticat' | head -8
dmesg | grep -qi 'authentication failed' && fail "dmesg reports a failed re-authentication"
[ "$(cat /sys/class/nvme/$ctrl/state)" = live ] || fail "$ctrl is $(cat /sys/class/nvme/$ctrl/state) after re-authentication"
fio_verify "$dev" 4M
nvme_disconnect_one "$BIDH"
wait_until 10 sh -c "! test -e /sys/class/nvme/$ctrl" || fail "$ctrl still present after disconnect"

refused "$UNI" "$WRONG" "" "wrong host key"
grep -q "DH-HMAC-CHAP authentication failed: authentication failed" "$TGT_LOG" || fail "target log: wrong key not reported"
refused "$UNI" "" "" "no host key"
refused "$BI" "$KEY" "$WRONG" "wrong controller key"
grep -q "auth-bi qid 0 host $HOSTNQN: host aborted authentication" "$TGT_LOG" || fail "target log: the host's AUTH_Failure2 (wrong controller key) not reported"

# The right key still works after the refusals.
ok "$UNI" "$KEY" "" "authenticated with hash hmac(sha256)"
grep -q 'FXxHMF\|tkXtMo\|AAECAw' "$TGT_LOG" && fail "a secret appears in the nvmf_tgt log"
trap - EXIT
tgt_stop
exit 0
