/**
 * A plain (not FDE-converted) test guest with data volumes: the base image's root plus the agent,
 * cryptpilot-volumes.service (enabled, as a package would install it), volume files, a check
 * script, and one extra virtio disk per volume. Data volumes do not depend on the FDE boot path,
 * so these scenarios boot the stock initrd and spend their time on the volumes.
 * (A directory, not a .ts file, so the runner does not load it as a scenario.)
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { partitionByName } from "../../lib/disk.ts";
import { sh } from "../../lib/proc.ts";
import type { ScenarioContext } from "../../lib/scenario.ts";

/** The base image boots its own root with the stock initrd; the test arguments as for FDE boots. */
export const PLAIN_CMDLINE = "root=LABEL=root ro console=ttyS0 panic=-1 rd.shell=0 rd.emergency=poweroff";

/** Guest path of the volume disk with QEMU serial `cpvol-NAME` (udev's by-id link). */
export const volumeDev = (name: string) => `/dev/disk/by-id/virtio-cpvol-${name}`;

export interface VolumeGuest {
  disk: string;
  /** QEMU arguments attaching the volume disks. */
  qemuArgs: string[];
  /** Host paths of the volume disks, by name. */
  volumeDisks: Record<string, string>;
}

export interface VolumeGuestOptions {
  /** File name (in /etc/cryptpilot/volumes) -> content. */
  volumes: Record<string, string>;
  /** Disk name -> size in MiB; each is attached with serial cpvol-NAME. */
  disks: Record<string, number>;
  /** /etc/cptest/checks.d/volumes.sh: prints key=value lines (markers check:key=value). */
  check: string;
  /** Bring the guest's network up (systemd-networkd, DHCP from QEMU's user network). */
  network?: boolean;
}

const NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";

export async function volumeGuest(ctx: ScenarioContext, o: VolumeGuestOptions): Promise<VolumeGuest> {
  const disk = await ctx.sourceDisk();
  const root = await partitionByName(disk, "root");
  if (!root) throw new Error(`${disk} has no root partition`);
  const mnt = mkdtempSync(join(tmpdir(), "cptest-vol-root-"));
  await sh(["mount", "-o", `loop,offset=${root.offset},sizelimit=${root.size}`, disk, mnt]);
  try {
    const put = (path: string, content: string, mode = 0o644) => {
      mkdirSync(dirname(join(mnt, path)), { recursive: true });
      writeFileSync(join(mnt, path), content, { mode });
    };
    const enable = (unit: string, target: string) => {
      const link = join(mnt, "etc/systemd/system", `${target}.wants`, unit);
      mkdirSync(dirname(link), { recursive: true });
      rmSync(link, { force: true });
      symlinkSync(`/lib/systemd/system/${unit}`, link);
    };
    cpSync(ctx.agent, join(mnt, "usr/bin/cryptpilot-fde"));
    cpSync(
      join(ctx.repo, "hooks/cryptpilot-volumes.service"),
      join(mnt, "lib/systemd/system/cryptpilot-volumes.service"),
    );
    enable("cryptpilot-volumes.service", "multi-user.target");
    for (const [file, content] of Object.entries(o.volumes)) put(`etc/cryptpilot/volumes/${file}`, content);
    put("etc/cptest/checks.d/volumes.sh", o.check, 0o755);
    if (o.network) {
      put("etc/systemd/network/80-cptest.network", NETWORK);
      enable("systemd-networkd.service", "multi-user.target");
      enable("systemd-networkd.socket", "sockets.target");
      enable("systemd-networkd-wait-online.service", "network-online.target");
    }
  } finally {
    await sh(["umount", mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
  const qemuArgs: string[] = [];
  const volumeDisks: Record<string, string> = {};
  for (const [name, mib] of Object.entries(o.disks)) {
    const file = join(ctx.outDir, `volume-${name}.raw`);
    rmSync(file, { force: true });
    await sh(["truncate", "-s", `${mib}M`, file]);
    volumeDisks[name] = file;
    qemuArgs.push(
      "-drive",
      `file=${file},format=raw,if=none,id=vol-${name},cache=unsafe`,
      "-device",
      `virtio-blk-pci,drive=vol-${name},serial=cpvol-${name}`,
    );
  }
  return { disk, qemuArgs, volumeDisks };
}
