/**
 * `show-reference-value [--disk PATH] [--hash-algo ALG]...`: the boot measurements an attestation
 * service should expect, as upstream cryptpilot prints them, read directly from the image
 * (raw or qcow2, unprivileged, only the blocks needed) or from the running system's /boot.
 */
import { ARCHES, efiBootPath, grubName, shimName } from "../arch.ts";
import { FdeError } from "../errors.ts";
import { escapeText } from "../escape.ts";
import { defineCommand } from "./command.ts";

/** One help line per architecture, from arch.ts: "  amd64: UKI EFI/BOOT/BOOTX64.EFI, shimx64.efi, grubx64.efi". */
const ARCH_FILES = ARCHES.map(
  (a) => `  ${a.debian}: UKI ${efiBootPath(a).slice(1)}, ${shimName(a)} and ${grubName(a)}`,
).join("\n");

export default defineCommand({
  usage: "[--disk PATH] [--hash-algo ALG]...",
  configDir: false,
  description: `Prints, as JSON on stdout, the reference values of a disk's boot chain as the firmware, shim
and GRUB measure them: for GRUB boot the kernel command line (and its digests), the kernel,
initrd, GRUB and shim digests; for a unified kernel image (a UKI: a .linux section) its
Authenticode digest. The files of every architecture are looked for on the ESP:
${ARCH_FILES}
Keys and order are those of upstream cryptpilot.`,
  flags: {
    disk: {
      type: "string",
      value: "PATH",
      help: "a disk image (raw or qcow2, with backing files) or a block device; read directly, no root needed. Without it: the running system's /boot and /boot/efi",
    },
    "hash-algo": {
      type: "string",
      multiple: true,
      value: "ALG",
      help: 'sha1, sha256, sha384 or sm3; repeat for several (default sha384).\nSM3 keys are spelled "SM3" as upstream does (some trustee policies use "SM-3").',
    },
  },
  async run({ values }) {
    const { parseHashAlgo } = await import("../refvalue/hash.ts");
    const algos = (values["hash-algo"] ?? ["sha384"]).map(parseHashAlgo);
    const { computeReferenceValues } = await import("../refvalue/reference.ts");
    const disk = values.disk;
    let json: string;
    if (disk === undefined) {
      const { hostLayout } = await import("../refvalue/host-layout.ts");
      json = guard("the running system", () =>
        JSON.stringify(computeReferenceValues(hostLayout(), algos), null, 2),
      );
    } else {
      const { openImage } = await import("../disk/image/open.ts");
      const { diskLayout } = await import("../refvalue/disk-layout.ts");
      json = guard(disk, () => {
        const source = openImage(disk);
        try {
          return JSON.stringify(computeReferenceValues(diskLayout(source), algos), null, 2);
        } finally {
          source.close();
        }
      });
    }
    process.stdout.write(`${json}\n`);
    return 0;
  },
});

/** Unexpected reader failures (a corrupt image tripping a bounds check) still get one clear paragraph. */
function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof FdeError) {
      // Messages quote names read from the image: whatever a reader left unescaped is escaped here.
      err.message = err.message.split("\n").map(escapeText).join("\n");
      throw err;
    }
    throw new FdeError(
      `cannot read the boot files of ${what}: the image is corrupt or laid out in a way this tool does not understand`,
      {
        cause: err,
      },
    );
  }
}
