/**
 * A plain (not FDE-converted) test guest with data volumes: the base image's root plus the agent,
 * cryptpilot-volumes.service (enabled, as a package would install it), volume files, a check
 * script, and one extra virtio disk per volume. Data volumes do not depend on the FDE boot path,
 * so these scenarios boot the stock initrd and spend their time on the volumes.
 * (A directory, not a .ts file, so the runner does not load it as a scenario.)
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { TEST_CMDLINE } from "../../lib/context.ts";
import { partitionByName } from "../../lib/disk.ts";
import { sh, shText } from "../../lib/proc.ts";
import type { ScenarioContext } from "../../lib/scenario.ts";

/** The base image boots its own root with the stock initrd; the test arguments as for FDE boots. */
export const PLAIN_CMDLINE = `root=LABEL=root ro ${TEST_CMDLINE}`;

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
  /**
   * Rebuild the guest's initrd with the cryptpilot dracut module (as an installed package would),
   * so volumes with open_in_initrd = true are opened by cryptpilot-volumes-initrd.service.
   */
  cryptpilotInitrd?: boolean;
}

const NETWORK = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";

export async function volumeGuest(ctx: ScenarioContext, o: VolumeGuestOptions): Promise<VolumeGuest> {
  const disk = await ctx.sourceDisk();
  if (o.cryptpilotInitrd) await growRoot(disk, 300);
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
    if (o.cryptpilotInitrd) await rebuildInitrd(ctx, mnt);
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

/** Room for an initrd with the agent in it: the base root has ~40 MiB free, the initrd takes ~80. */
async function growRoot(disk: string, addMiB: number): Promise<void> {
  const before = await partitionByName(disk, "root");
  if (!before) throw new Error(`${disk} has no root partition`);
  await sh(["sh", "-c", `echo ', +${addMiB}M' | sfdisk --quiet --no-reread -N ${before.number} "$0"`, disk]);
  const root = (await partitionByName(disk, "root"))!;
  const loop = (
    await shText([
      "losetup",
      "--find",
      "--show",
      "--offset",
      `${root.offset}`,
      "--sizelimit",
      `${root.size}`,
      disk,
    ])
  ).trim();
  try {
    await sh(["e2fsck", "-f", "-p", loop]);
    await sh(["resize2fs", loop]);
  } finally {
    await sh(["losetup", "-d", loop]);
  }
}

/** Install the dracut module and hooks into the guest root and run its dracut in a chroot. */
async function rebuildInitrd(ctx: ScenarioContext, root: string): Promise<void> {
  const moduleDir = join(root, "usr/lib/dracut/modules.d/91cryptpilot");
  mkdirSync(moduleDir, { recursive: true });
  for (const dir of ["dracut-module/91cryptpilot", "hooks"]) {
    for (const file of readdirSync(join(ctx.repo, dir)))
      cpSync(join(ctx.repo, dir, file), join(moduleDir, file));
  }
  const mounts: string[] = [];
  const mount = async (args: string[], dir: string) => {
    await sh(["mount", ...args, join(root, dir)]);
    mounts.push(join(root, dir));
  };
  try {
    for (const dir of ["proc", "sys", "dev"]) await mount(["--rbind", "--make-rslave", `/${dir}`], dir);
    // dracut stages the whole initrd (~300 MiB with the agent) in /var/tmp.
    for (const dir of ["tmp", "var/tmp"]) await mount(["-t", "tmpfs", "tmpfs"], dir);
    const started = Date.now();
    await sh(
      [
        "chroot",
        root,
        "dracut",
        "--quiet",
        "--force",
        "--no-hostonly",
        "--add",
        "cryptpilot",
        "--omit",
        " iscsi nvmf multipath ",
        `/boot/initrd.img-${ctx.base.kver}`,
        ctx.base.kver,
      ],
      { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" } },
    );
    ctx.log(`initrd with the cryptpilot module built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    for (const dir of mounts.reverse()) await sh(["umount", "-R", "-l", dir]).catch(() => undefined);
  }
}
