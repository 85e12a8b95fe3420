/**
 * show-reference-value on a 4 GiB qcow2 disk image: our direct reader (no root, only the blocks
 * needed) against "the usual way" on a host without nbd (test-environment.md): `qemu-img
 * convert` to raw, offset loop mounts of /boot, mtools for the ESP, then sha384sum and pesign.
 * Upstream does the same with qemu-nbd instead of the convert step.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { diskImage, ESP_GPT, ext4Image, fatImage, LINUX_GPT } from "../agent/testkit/images.ts";
import { type Benchmark, timeCommands } from "./lib.ts";

const V = "6.1.0-99-amd64";
const PE = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"; // a real PE image standing in for shim and GRUB

function sh(argv: string[]): string {
  const p = Bun.spawnSync(argv, { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

/** Incompressible bytes, so qcow2 compression cannot shrink the work. */
function random(path: string, mib: number): string {
  sh(["dd", "if=/dev/urandom", `of=${path}`, "bs=1M", `count=${mib}`, "status=none"]);
  return path;
}

const benchmark: Benchmark = {
  title: "show-reference-value on a 4 GiB qcow2 image",
  description:
    "A 4 GiB GPT disk (ESP with shim/GRUB stand-ins, 512 MiB `/boot` with a 12 MiB kernel and a 64 MiB initrd, 512 MiB of random files in the root partition) as compressed qcow2. Ours: `dist/cryptpilot-fde show-reference-value --disk IMG` (SHA-384). Baseline: `qemu-img convert -O raw`, `mount -o ro,loop,offset=` of /boot, `mcopy` from the ESP, `sha384sum` of kernel and initrd, `pesign -h` of shim and GRUB (run as root; upstream needs root too).",
  async run(ctx) {
    const t = (name: string) => join(ctx.tmp, name);
    ctx.log("building the 4 GiB image (a minute)");
    const pe = readFileSync(PE);
    const esp = fatImage(t("esp.img"), 64, {
      "EFI/debian/shimx64.efi": pe,
      "EFI/debian/grubx64.efi": pe,
      "EFI/debian/grub.cfg": "configfile ($root)/grub/grub.cfg\n",
    });
    const grubCfg = `set default="0"\nmenuentry 'Debian' --id simple {\n\tlinux /vmlinuz-${V} root=/dev/mapper/rootfs ro console=ttyS0\n\tinitrd /initrd.img-${V}\n}\n`;
    const boot = ext4Image(t("boot.img"), 512, {
      [`vmlinuz-${V}`]: readFileSync(random(t("k"), 12)),
      [`initrd.img-${V}`]: readFileSync(random(t("i"), 64)),
      "grub/grub.cfg": grubCfg,
    });
    const rootFiles: Record<string, Uint8Array> = {};
    for (let i = 0; i < 8; i++) rootFiles[`usr/share/blob${i}`] = readFileSync(random(t("r"), 64));
    const root = ext4Image(t("root.img"), 3500, rootFiles);
    const raw = diskImage(t("disk.img"), "gpt", [
      { sizeMiB: 64, type: ESP_GPT, name: "EFI System Partition", image: esp },
      { sizeMiB: 512, type: LINUX_GPT, name: "boot", image: boot },
      { sizeMiB: 3500, type: LINUX_GPT, name: "root", image: root },
    ]);
    const table = JSON.parse(sh(["sfdisk", "-J", raw])).partitiontable.partitions as { start: number }[];
    const qcow = t("disk.qcow2");
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", raw, qcow]);
    sh(["rm", "-rf", raw, esp, boot, root, `${esp}.d`, `${boot}.d`, `${root}.d`]);
    const size = JSON.parse(sh(["qemu-img", "info", "--output=json", qcow]))["virtual-size"] as number;
    const script = t("baseline.sh");
    writeFileSync(
      script,
      `set -e
raw=${t("baseline.raw")}; mnt=${t("mnt")}
mkdir -p "$mnt"
qemu-img convert -O raw ${qcow} "$raw"
mount -o ro,loop,offset=$((${table[1]!.start} * 512)) "$raw" "$mnt"
trap 'umount "$mnt"; rm -f "$raw"' EXIT
grep -m1 linux "$mnt/grub/grub.cfg" >/dev/null
sha384sum "$mnt/vmlinuz-${V}" "$mnt/initrd.img-${V}" >/dev/null
mcopy -o -i "$raw@@$((${table[0]!.start} * 512))" ::/EFI/debian/shimx64.efi ::/EFI/debian/grubx64.efi ${ctx.tmp}/
pesign -h -i ${ctx.tmp}/shimx64.efi >/dev/null
pesign -h -i ${ctx.tmp}/grubx64.efi >/dev/null
`,
    );
    // The baseline rewrites 4 GiB each run: keep the repetitions few.
    const runs = Math.min(ctx.runs, 3);
    ctx.log(`timing ${runs} runs each (virtual size ${size} bytes)`);
    const [ours, baseline] = timeCommands(
      [
        [ctx.binary, "show-reference-value", "--disk", qcow],
        ["sh", script],
      ],
      runs,
    );
    return [
      {
        name: `4 GiB compressed qcow2, GRUB layout (median of ${runs})`,
        value: ours!,
        unit: "ms",
        baseline: { name: "qemu-img convert + loop mount + mtools + sha384sum/pesign", value: baseline! },
        note: "ours reads only the partition table, directory blocks and the five boot files; no root, no mount",
      },
    ];
  },
};

export default benchmark;
