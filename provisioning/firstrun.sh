#!/bin/bash
# xephy-device firstrun (Bookworm-style images; written by `xephy-device provision`).
# Started once by `systemd.run=/boot/firstrun.sh` in cmdline.txt, as Raspberry Pi Imager does;
# removes itself and the cmdline hook, then systemd.run_success_action=reboot reboots.
set +e
BOOT=/boot/firmware
[ -f "$BOOT/cmdline.txt" ] || BOOT=/boot
# A firstrun.sh written by Raspberry Pi Imager (user, Wi-Fi, ssh) was kept; run it first.
if [ -f "$BOOT/xephy/imager-firstrun.sh" ]; then
    bash "$BOOT/xephy/imager-firstrun.sh"
    rm -f "$BOOT/xephy/imager-firstrun.sh"
fi
bash "$BOOT/xephy/firstboot.sh" "$BOOT/xephy"
rm -f "$BOOT/firstrun.sh"
sed -i 's| systemd.run.*||g' "$BOOT/cmdline.txt"
exit 0
