import { describe, expect, test } from "bun:test";
import {
  rewriteBlsEntry,
  rewriteCmdline,
  rewriteFstab,
  rewriteGrubCfg,
  rewriteGrubenv,
} from "../../src/convert/bootcfg.ts";
import { dracutArgs, listKernels } from "../../src/convert/guest.ts";
import { computeLayout, MiB, pvMinSize, sfdiskScript, sizeBytes } from "../../src/convert/layout.ts";
import {
  chooseRoot,
  type PartitionTable,
  parseSfdiskJson,
  requireShrinkableRoot,
} from "../../src/convert/source.ts";
import { ukiCmdline } from "../../src/convert/steps/initrd.ts";

describe("boot entries", () => {
  test("every root= becomes /dev/mapper/rootfs, dracut's LVM/LUKS activation is off", () => {
    expect(rewriteCmdline("root=UUID=abc ro quiet")).toBe(
      "root=/dev/mapper/rootfs ro quiet rd.lvm=0 rd.luks=0",
    );
    expect(rewriteCmdline("ro root=/dev/vda2 rd.luks.uuid=x rd.lvm=0")).toBe(
      "root=/dev/mapper/rootfs ro rd.lvm=0 rd.luks=0",
    );
    expect(rewriteCmdline("")).toBe("root=/dev/mapper/rootfs rd.lvm=0 rd.luks=0");
  });
  test("grub.cfg: linux lines and searches for the old root", () => {
    const cfg =
      "search --no-floppy --fs-uuid --set=root OLD\nmenuentry 'x' {\n\tlinux\t/boot/vmlinuz-6 root=UUID=OLD ro\n\tinitrd /boot/initrd.img-6\n}\n";
    const out = rewriteGrubCfg(cfg, { uuid: "OLD" }, { uuid: "NEW", label: "boot" });
    expect(
      rewriteGrubCfg(
        "search --no-floppy --label root --set=root\nsearch.fs_label root root",
        { label: "root" },
        { uuid: "U", label: "boot" },
      ),
    ).toBe("search --no-floppy --label boot --set=root\nsearch.fs_label boot root");
    expect(out).toContain("search --no-floppy --fs-uuid --set=root NEW");
    expect(out).toContain("\tlinux\t/boot/vmlinuz-6 root=/dev/mapper/rootfs ro rd.lvm=0 rd.luks=0");
    expect(out).not.toContain("OLD");
  });
  test("BLS options, grubenv kernelopts (kept at 1024 bytes), fstab root", () => {
    expect(rewriteBlsEntry("title x\nlinux /vmlinuz\noptions root=UUID=a ro\n")).toBe(
      "title x\nlinux /vmlinuz\noptions root=/dev/mapper/rootfs ro rd.lvm=0 rd.luks=0\n",
    );
    const env = `# GRUB Environment Block\nkernelopts=root=UUID=a ro\nsaved_entry=x\n${"#".repeat(900)}`;
    const out = rewriteGrubenv(env.padEnd(1024, "#"));
    expect(out).toHaveLength(1024);
    expect(out).toContain("kernelopts=root=/dev/mapper/rootfs ro rd.lvm=0 rd.luks=0\nsaved_entry=x\n#");
    expect(
      rewriteFstab("# c\nUUID=a / ext4 errors=remount-ro 0 1\nUUID=b /boot/efi vfat umask=0077 0 1\n"),
    ).toBe("# c\n/dev/mapper/rootfs / auto defaults 0 0\nUUID=b /boot/efi vfat umask=0077 0 1\n");
  });
});

describe("UKI command line", () => {
  test("guest /etc/kernel/cmdline, then the appended arguments; root= always ours", () => {
    expect(ukiCmdline("root=UUID=x console=ttyS0\npanic=-1\n", "console=tty0")).toBe(
      "root=/dev/mapper/rootfs ro console=ttyS0 panic=-1 console=tty0 rd.lvm=0 rd.luks=0",
    );
    expect(ukiCmdline("", "")).toBe("root=/dev/mapper/rootfs ro rd.lvm=0 rd.luks=0");
  });
});

describe("kernels and dracut", () => {
  test("every kernel with modules gets its initrd rebuilt under the name its entry uses", () => {
    const { kernels, skipped } = listKernels(
      [
        "vmlinuz-6.1.0-1-amd64",
        "initrd.img-6.1.0-1-amd64",
        "vmlinuz-5.14.el9",
        "initramfs-5.14.el9.img",
        "vmlinuz-old",
        "config-6.1.0-1-amd64",
      ],
      (v) => v !== "old",
    );
    expect(kernels).toEqual([
      { version: "5.14.el9", image: "vmlinuz-5.14.el9", initrd: "initramfs-5.14.el9.img" },
      { version: "6.1.0-1-amd64", image: "vmlinuz-6.1.0-1-amd64", initrd: "initrd.img-6.1.0-1-amd64" },
    ]);
    expect(skipped).toEqual(["old"]);
  });
  test("dracut never strips (a stripped Bun binary is plain bun) and adds our module", () => {
    const k = { version: "6.1", image: "vmlinuz-6.1", initrd: "initrd.img-6.1" };
    const args = dracutArgs({ kernel: k, output: "/boot/initrd.img-6.1" });
    expect(args).toContain("--nostrip");
    expect(args.slice(args.indexOf("--add"), args.indexOf("--add") + 2)).toEqual(["--add", "cryptpilot"]);
    expect(args.at(-1)).toBe("/boot/initrd.img-6.1");
    const uki = dracutArgs({
      kernel: k,
      output: "/o.efi",
      uki: { stub: "/s.stub", cmdline: "root=/dev/mapper/rootfs" },
    });
    expect(uki.join(" ")).toContain(
      "--uefi --uefi-stub /s.stub --kernel-image /boot/vmlinuz-6.1 --kernel-cmdline root=/dev/mapper/rootfs",
    );
  });
});

describe("layout", () => {
  test("GRUB: ESP, boot, PV to the end; the disk grows only when needed", () => {
    const l = computeLayout({
      sourceDiskSize: 4096 * MiB,
      espSize: 100 * MiB,
      bootSize: 512 * MiB,
      pvMin: pvMinSize(1000 * MiB, 9 * MiB),
    });
    expect(l.esp).toEqual({ offset: MiB, size: 100 * MiB });
    expect(l.boot).toEqual({ offset: 101 * MiB, size: 512 * MiB });
    expect(l.pv).toEqual({ offset: 613 * MiB, size: 4096 * MiB - 614 * MiB });
    const small = computeLayout({
      sourceDiskSize: 100 * MiB,
      espSize: 32 * MiB,
      pvMin: pvMinSize(10 * MiB, MiB),
    });
    expect(small.boot).toBeUndefined();
    expect(small.pv.size).toBeGreaterThanOrEqual(pvMinSize(10 * MiB, MiB));
    expect(small.diskSize).toBe(small.pv.offset + small.pv.size + MiB);
    expect(sfdiskScript(l)).toContain(
      `start=${(101 * MiB) / 512}, size=${(512 * MiB) / 512}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="boot"`,
    );
  });
  test("sizes", () => {
    expect(sizeBytes("512M")).toBe(512 * MiB);
    expect(sizeBytes("1G")).toBe(1024 * MiB);
    expect(sizeBytes("300MiB")).toBe(300 * MiB);
    expect(sizeBytes("big")).toBeUndefined();
    expect(sizeBytes("")).toBeUndefined();
  });
  test("root: requested number, else label root, else largest ext4", () => {
    const t: PartitionTable = parseSfdiskJson(
      JSON.stringify({
        partitiontable: {
          label: "gpt",
          sectorsize: 512,
          partitions: [
            { node: "d1", start: 2048, size: 100, type: "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" },
            { node: "d2", start: 4096, size: 1000, type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4" },
            { node: "d3", start: 8192, size: 500, type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4" },
          ],
        },
      }),
    );
    t.partitions[1]!.fsType = "ext4";
    t.partitions[2]!.fsType = "ext4";
    expect(chooseRoot(t).number).toBe(2);
    t.partitions[2]!.label = "root";
    expect(chooseRoot(t).number).toBe(3);
    expect(chooseRoot(t, 2).number).toBe(2);
    expect(() => chooseRoot(t, 1)).toThrow(/not ext4/);
    expect(t.partitions[1]!.offset).toBe(4096 * 512);
  });
  test("an xfs root is found and refused in one paragraph: xfs cannot shrink", () => {
    const t: PartitionTable = parseSfdiskJson(
      JSON.stringify({
        partitiontable: {
          label: "gpt",
          sectorsize: 512,
          partitions: [{ node: "d1", start: 2048, size: 1000, type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4" }],
        },
      }),
    );
    t.partitions[0]!.fsType = "xfs";
    const root = chooseRoot(t);
    expect(root.number).toBe(1);
    let message = "";
    try {
      requireShrinkableRoot(root);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("partition 1) is xfs; convert supports only ext4 roots");
    expect(message).toContain("xfs filesystems can grow but never shrink");
    expect(message).not.toContain("\n");
    t.partitions[0]!.fsType = "ext4";
    expect(() => requireShrinkableRoot(root)).not.toThrow();
  });
});
