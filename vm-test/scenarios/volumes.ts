import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Broker, startBroker } from "../kbs/broker.ts";
import { keyOverride } from "../lib/fde.ts";
import { freePort } from "../lib/net.ts";
import { sh } from "../lib/proc.ts";
import type { BootResult } from "../lib/scenario.ts";
import { defineScenario } from "../lib/scenario.ts";
import { PLAIN_CMDLINE, volumeDev, volumeGuest } from "./volume-lib/guest.ts";

// Data volumes opened at boot by cryptpilot-volumes.service (`volume open --auto`):
//  - swap0 (otp, makefs swap, enabled as swap) and scratch (otp, ext4 on /mnt/scratch) come up on
//    every boot, formatted afresh: new LUKS UUID, new filesystem, nothing from the last boot;
//    scratch has open_in_initrd = true: the guest's initrd is rebuilt with the cryptpilot dracut
//    module, whose cryptpilot-volumes-initrd.service opens it before root, and the service in the
//    booted system only mounts it;
//  - data (exec key, dm-integrity hmac-sha256, ext4 on /mnt/data) is initialised once in boot 1 (`volume init`,
//    where the service could not open it yet: the others still came up and the unit reported the
//    failure); in boot 2 a wrong key keeps it closed and never re-formats it; in boot 3 the service
//    opens and mounts it and boot 1's file is there;
//  - kbsdata (kbs key, initialised on the host beforehand with the same key bytes, as an image
//    builder would: `volume init` on the raw disk file needs no device-mapper) is opened on every
//    boot after network-online with the resource the test key broker on the host releases after
//    attestation (sample evidence): one attestation and one resource request per boot.

const KBS_KEY = "volume-kbs-key-0123456789abcdef";
const KBS_RESOURCE = "default/key/kbsdata";

function kbsVolume(encrypt: string, dev: string): string {
  return `volume = "kbsdata"\ndev = "${dev}"\nauto_open = true\n\n${encrypt}`;
}

const VOLUMES = (kbsPort: number) => ({
  "swap0.toml": `volume = "swap0"\ndev = "${volumeDev("swap0")}"\nauto_open = true\nmakefs = "swap"\n\n[mount]\nmountpoint = "swap"\n\n[encrypt.otp]\n`,
  "scratch.toml": `volume = "scratch"\ndev = "${volumeDev("scratch")}"\nauto_open = true\nopen_in_initrd = true\nmakefs = "ext4"\n\n[mount]\nmountpoint = "/mnt/scratch"\n\n[encrypt.otp]\n`,
  "data.toml": `volume = "data"\ndev = "${volumeDev("data")}"\nauto_open = true\nmakefs = "ext4"\nintegrity = true\n\n[mount]\nmountpoint = "/mnt/data"\noptions = "nodev,nosuid"\n\n[encrypt.exec]\ncommand = "/usr/local/bin/cptest-key"\nargs = ["data"]\n`,
  "kbsdata.toml": kbsVolume(
    `[encrypt.kbs]\nkbs_url = "http://10.0.2.2:${kbsPort}"\nkey_uri = "kbs:///${KBS_RESOURCE}"\ntee = "sample"\n`,
    volumeDev("kbsdata"),
  ),
});

// Runs after the service, from cptest-report; prints key=value lines (markers check:key=value).
const CHECK = `#!/bin/bash
B=/usr/bin/cryptpilot-fde
boot=$(ls /var/lib/cptest/boots | wc -l)
echo "service=$(systemctl show -p Result --value cryptpilot-volumes.service)"
$B volume show | awk 'NR > 1 && NF == 0 { exit } NR > 1 { print "status-" $1 "=" $4 }'
echo "swaps=$(swapon --show=NAME --noheadings | paste -sd, -)"
echo "swap0-dm=$(realpath /dev/mapper/swap0 2>/dev/null)"
echo "swap0-uuid=$(blkid -s UUID -o value /dev/mapper/swap0 2>/dev/null)"
echo "swap0-luks=$(cryptsetup luksUUID ${volumeDev("swap0")})"
echo "scratch-source=$(findmnt -no SOURCE /mnt/scratch)"
echo "scratch-uuid=$(blkid -s UUID -o value /dev/mapper/scratch 2>/dev/null)"
echo "scratch-luks=$(cryptsetup luksUUID ${volumeDev("scratch")})"
echo "scratch-initrd=$(journalctl -b -o cat -u cryptpilot-volumes-initrd.service | grep -m1 '^scratch:')"
echo "scratch-service=$(journalctl -b -o cat -u cryptpilot-volumes.service | grep -m1 '^scratch:')"
echo "scratch-files=$(ls -A /mnt/scratch 2>/dev/null | paste -sd, -)"
[ -d /mnt/scratch ] && echo "scratch from boot $boot" >/mnt/scratch/marker
echo "data-source=$(findmnt -no SOURCE,OPTIONS /mnt/data | tr ' ' '_')"
echo "data-subsystem=$(blkid -p -s SUBSYSTEM -o value ${volumeDev("data")})"
echo "data-integrity=$(cryptsetup luksDump ${volumeDev("data")} 2>/dev/null | sed -n 's/^[[:space:]]*integrity:[[:space:]]*//p' | head -1)"
echo "data-dm-integrity=$(dmsetup table --target integrity 2>/dev/null | wc -l)"
if [ "$boot" = 1 ]; then
  $B volume init data >/tmp/init.log 2>&1; echo "data-init=$? $(tr '\\n' ' ' </tmp/init.log | tail -c 800)"
  $B volume open data >/tmp/open.log 2>&1; echo "data-open=$? $(tail -1 /tmp/open.log)"
  echo "written in boot 1" >/mnt/data/keep && sync
  echo "data-after-init=$(findmnt -no SOURCE /mnt/data)"
fi
echo "data-content=$(cat /mnt/data/keep 2>/dev/null)"
echo "journal-data=$(journalctl -b -u cryptpilot-volumes.service --no-pager -o cat | grep -m1 'volume data' | tr '\\n' ' ')"
echo "kbsdata-type=$(cryptsetup status kbsdata | awk '$1 == "type:" { print $2 }')"
echo "journal-kbsdata=$(journalctl -b -u cryptpilot-volumes.service --no-pager -o cat | grep -m1 'kbsdata:' | tr '\\n' ' ')"
`;

export default defineScenario({
  description:
    "data volumes at boot: otp swap and otp scratch (opened in the initrd) fresh on every boot; exec integrity data volume initialised once, kept across reboots, never re-formatted for a wrong key; kbs volume opened after network-online",
  timeoutSec: 2400,
  async run(ctx) {
    const kbsPort = await freePort();
    const guest = await volumeGuest(ctx, {
      volumes: VOLUMES(kbsPort),
      disks: { swap0: 128, scratch: 128, data: 128, kbsdata: 64 },
      check: CHECK,
      cryptpilotInitrd: true,
      network: true,
    });
    await initKbsVolumeOnHost(ctx.agent, ctx.outDir, guest.volumeDisks.kbsdata!);
    let broker: Broker | undefined;
    const boot = async (label: string, append: string[] = []) => {
      await broker?.stop();
      broker = await startBroker({
        port: kbsPort,
        resources: { [KBS_RESOURCE]: new TextEncoder().encode(KBS_KEY) },
      });
      const b = await ctx.boot(guest.disk, {
        label,
        cmdline: [PLAIN_CMDLINE, ...append].join(" "),
        extraQemuArgs: guest.qemuArgs,
        network: true,
        timeoutSec: 900,
      });
      kbsOpened(b, broker);
      return b;
    };
    const get = (b: BootResult, key: string) => b.markers.get(`check:${key}`) ?? "";
    const kbsOpened = (b: BootResult, seen: Broker) => {
      ctx.expectReported(b);
      ctx.check(
        get(b, "status-kbsdata") === "Opened",
        `kbsdata is ${get(b, "status-kbsdata")}: ${get(b, "journal-kbsdata")}`,
        b,
      );
      ctx.check(
        get(b, "kbsdata-type") === "LUKS2",
        `kbsdata is not a LUKS2 mapping (${get(b, "kbsdata-type")})`,
        b,
      );
      ctx.check(
        seen.stats.attestations === 1 && seen.stats.resource === 1,
        `one attestation and one resource request per boot expected, the broker saw ${JSON.stringify(seen.stats)}`,
        b,
      );
    };

    // boot() has checked that the guest reported (kbsOpened).
    const otpFresh = (b: BootResult) => {
      ctx.check(get(b, "status-swap0") === "Opened", `swap0 is ${get(b, "status-swap0")}, not Opened`, b);
      ctx.check(get(b, "status-scratch") === "Opened", `scratch is ${get(b, "status-scratch")}`, b);
      ctx.check(
        get(b, "swap0-dm") !== "" && get(b, "swaps").split(",").includes(get(b, "swap0-dm")),
        `swap0 (${get(b, "swap0-dm")}) is not enabled as swap (swaps: ${get(b, "swaps")})`,
        b,
      );
      ctx.check(
        get(b, "scratch-source") === "/dev/mapper/scratch",
        "scratch is not mounted on /mnt/scratch",
        b,
      );
      ctx.check(
        get(b, "scratch-initrd") === "scratch: opened with a fresh otp key and a new ext4",
        `scratch was not opened by the initrd unit: "${get(b, "scratch-initrd")}"`,
        b,
      );
      ctx.check(
        get(b, "scratch-service") === "scratch: already open, mounted on /mnt/scratch",
        `the booted system's service did not just mount scratch: "${get(b, "scratch-service")}"`,
        b,
      );
      ctx.check(
        get(b, "scratch-files") === "lost+found",
        `scratch is not a fresh filesystem: ${get(b, "scratch-files")}`,
        b,
      );
    };

    try {
      const first = await boot("first");
      otpFresh(first);
      ctx.check(
        get(first, "service") === "exit-code",
        "the service should fail: data is not initialised",
        first,
      );
      ctx.check(get(first, "status-data") === "RequiresInit", `data is ${get(first, "status-data")}`, first);
      ctx.check(
        /not an initialised cryptpilot volume/.test(get(first, "journal-data")),
        "the journal does not say why data was not opened",
        first,
      );
      ctx.check(
        get(first, "data-init").startsWith("0 "),
        `volume init failed: ${get(first, "data-init")}`,
        first,
      );
      ctx.check(
        get(first, "data-open").startsWith("0 "),
        `volume open failed: ${get(first, "data-open")}`,
        first,
      );
      ctx.check(
        get(first, "data-after-init") === "/dev/mapper/data",
        "data was not mounted by volume open",
        first,
      );

      const wrong = await boot("wrong-data-key", [keyOverride("data", "not-the-data-key")]);
      otpFresh(wrong);
      ctx.check(get(wrong, "service") === "exit-code", "a wrong data key should fail the service", wrong);
      ctx.check(get(wrong, "status-data") === "ReadyToOpen", `data is ${get(wrong, "status-data")}`, wrong);
      ctx.check(get(wrong, "data-subsystem") === "cryptpilot", "the data volume's marker changed", wrong);
      ctx.check(get(wrong, "data-source") === "", "data is mounted with a wrong key", wrong);
      ctx.check(
        /\(wrong key\)/.test(get(wrong, "journal-data")),
        "the journal does not name the wrong key",
        wrong,
      );

      const third = await boot("third");
      otpFresh(third);
      ctx.check(get(third, "service") === "success", `the service result is ${get(third, "service")}`, third);
      const dataMount = get(third, "data-source");
      ctx.check(
        dataMount.startsWith("/dev/mapper/data_") && /nodev/.test(dataMount) && /nosuid/.test(dataMount),
        `data is not mounted by the service with its options: ${dataMount}`,
        third,
      );
      ctx.check(get(third, "data-content") === "written in boot 1", "boot 1's file on data is gone", third);
      ctx.check(
        get(third, "data-integrity") === "hmac(sha256)" && get(third, "data-dm-integrity") !== "0",
        `data is not an integrity volume: luksDump integrity "${get(third, "data-integrity")}", ${get(third, "data-dm-integrity")} dm-integrity target(s)`,
        third,
      );

      const boots = [first, wrong, third];
      for (const key of ["swap0-uuid", "swap0-luks", "scratch-uuid", "scratch-luks"]) {
        const values = boots.map((b) => get(b, key));
        ctx.check(
          values.every((x) => x !== "") && new Set(values).size === boots.length,
          `${key} is not new on every boot: ${values.join(", ")}`,
        );
      }
    } finally {
      await broker?.stop();
    }
  },
});

/** Host-side init of kbsdata with an exec provider printing the bytes the broker will release. */
async function initKbsVolumeOnHost(agent: string, outDir: string, disk: string): Promise<void> {
  const cfg = mkdtempSync(join(outDir, "host-config-"));
  try {
    mkdirSync(join(cfg, "volumes"));
    writeFileSync(
      join(cfg, "volumes", "kbsdata.toml"),
      kbsVolume(`[encrypt.exec]\ncommand = "printf"\nargs = ["%s", "${KBS_KEY}"]\n`, disk),
    );
    await sh([agent, "-c", cfg, "volume", "init", "kbsdata"]);
  } finally {
    rmSync(cfg, { recursive: true, force: true });
  }
}
