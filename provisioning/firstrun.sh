#!/bin/bash
# xephy-device firstrun (Bookworm-style images; written by `xephy-device provision`).
# Started once by `systemd.run=/boot/firstrun.sh` in cmdline.txt, as Raspberry Pi Imager does.
# It only schedules the install: firstboot.sh --hook moves the keys off the FAT partition and
# enables xephy-firstboot.service, which installs the agent once the network is up (and retries).
# Only when that succeeded does this script remove itself and the cmdline hook; either way
# systemd.run_success_action=reboot reboots (a failed hook runs again on the next boot).
set +e
BOOT=/boot/firmware
[ -f "$BOOT/cmdline.txt" ] || BOOT=/boot
# A firstrun.sh written by Raspberry Pi Imager (user, Wi-Fi, ssh) was kept; run it first, once.
if [ -f "$BOOT/xephy/imager-firstrun.sh" ]; then
    bash "$BOOT/xephy/imager-firstrun.sh"
    rm -f "$BOOT/xephy/imager-firstrun.sh"
fi
if bash "$BOOT/xephy/firstboot.sh" "$BOOT/xephy" --hook; then
    rm -f "$BOOT/firstrun.sh"
    sed -i 's| systemd.run.*||g' "$BOOT/cmdline.txt"
fi
sync
exit 0
