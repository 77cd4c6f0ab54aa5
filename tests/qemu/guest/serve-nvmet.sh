#!/bin/sh
# Guest side of `run --serve-nvmet` (used by `run --fake-target`): serve the
# Linux kernel target with a memory-backed null_blk namespace under $TARGET_NQN
# on 10.0.2.15:4420, which QEMU forwards from the host's 127.0.0.1:$TARGET_PORT.
. /qemu/lib.sh
null_blk_setup 1 || { echo "null_blk failed"; exit 1; }
nvmet_setup "$TARGET_NQN" 10.0.2.15 4420 /dev/nullb0 1 || { echo "nvmet setup failed"; exit 1; }
echo "QEMU-NVMET-READY $TARGET_NQN host port $TARGET_PORT"
while :; do sleep 3600; done
