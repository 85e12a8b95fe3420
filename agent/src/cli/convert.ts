import { existsSync, readFileSync } from "node:fs";
import type { SealPolicy } from "../tpm/seal.ts";
import { defineCommand } from "./command.ts";

/** /boot partition size when -b is not given. */
export const DEFAULT_BOOT_PART_SIZE = "512M";
/** Kernel arguments of the UKI when --uki-append-cmdline is not given. */
export const DEFAULT_UKI_CMDLINE = "console=tty0 console=ttyS0,115200n8";

export default defineCommand({
  usage: ["--in SRC --out DST [OPTIONS]", "-d DEV [OPTIONS]"],
  description: `Convert a disk image with a Linux root filesystem into the FDE layout: a GPT disk with an ESP,
a /boot partition (or a UKI on the ESP with --uki) and the LVM volume group "cryptpilot" holding
the verity-protected (and optionally LUKS2-encrypted) rootfs. The guest's initrds are rebuilt
with the cryptpilot dracut module and every boot entry gets root=/dev/mapper/rootfs.
Works without device-mapper on the host. Must run as root.`,
  flags: {
    in: { type: "string", value: "SRC", help: "source image (raw or qcow2)" },
    out: {
      type: "string",
      value: "DST",
      help: "output image (qcow2 when DST ends in .qcow2, else raw); written as DST.partial and renamed when complete",
    },
    device: {
      type: "string",
      short: "d",
      value: "DEV",
      help: "convert the block device DEV in place instead",
    },
    "config-dir": {
      type: "string",
      short: "c",
      value: "DIR",
      help: "directory with fde.toml (and global.toml) to put in the initrd",
    },
    "rootfs-key-file": {
      type: "string",
      value: "FILE",
      help: "encrypt the rootfs with the key in FILE (raw bytes)",
    },
    "rootfs-passphrase": {
      type: "string",
      value: "P",
      help: "encrypt the rootfs with passphrase P (visible in ps; prefer the key file)",
    },
    "rootfs-no-encryption": {
      type: "boolean",
      help: "keep the rootfs unencrypted (still dm-verity protected)",
    },
    "rootfs-part-num": {
      type: "string",
      value: "N",
      help: 'root filesystem partition (default: label "root", else largest ext4)',
    },
    boot_part_size: {
      type: "string",
      short: "b",
      value: "SIZE",
      help: `/boot partition size (default ${DEFAULT_BOOT_PART_SIZE})`,
    },
    "boot-part-size": { type: "string", value: "SIZE", help: "the same as --boot_part_size" },
    "wipe-freed-space": {
      type: "boolean",
      help: "-d: also zero the space the shrunk root freed (the future delta); without it that space keeps the old bytes, which may include plaintext of the old root, until the delta overwrites them. --in/--out: nothing to do, DST is a new file with no old data",
    },
    uki: { type: "boolean", help: "boot a unified kernel image from the ESP instead of GRUB" },
    "uki-append-cmdline": {
      type: "string",
      value: "ARGS",
      help: `extra kernel arguments for the UKI\n(default "${DEFAULT_UKI_CMDLINE}")`,
    },
    "tpm2-enroll": {
      type: "boolean",
      help: "with [rootfs.encrypt.tpm2] in fde.toml: seal a new random rootfs key to the TPM under that table's PCR policy (and PIN), add it as a keyslot and store the cryptpilot-tpm2 token in the rootfs LUKS2 header; the key from --rootfs-key-file/--rootfs-passphrase stays in its keyslot for recovery. The PCRs are sealed at the TPM's CURRENT values: use the target's own TPM (-d on the target) or its vTPM, and bind PCRs that read the same when the converted disk boots",
    },
    "tpm2-tcti": {
      type: "string",
      value: "TCTI",
      help: "the TPM for --tpm2-enroll (default: tcti from fde.toml, TPM2TOOLS_TCTI, device:/dev/tpmrm0), e.g. swtpm:host=H,port=P",
    },
  },
  async run({ values, globals, usageError }) {
    // Flag values first: a mistyped size is a usage error naming the flag, before any file is read.
    const { SIZE_EXAMPLES, sizeBytes } = await import("../convert/layout.ts");
    const sizeFlag = values.boot_part_size !== undefined ? "--boot_part_size" : "--boot-part-size";
    const sizeText = values.boot_part_size ?? values["boot-part-size"] ?? DEFAULT_BOOT_PART_SIZE;
    const bootPartSize = sizeBytes(sizeText);
    if (bootPartSize === undefined)
      throw usageError(`${sizeFlag} takes a size (examples: ${SIZE_EXAMPLES}), not '${sizeText}'`);
    if (values.device && (values.in || values.out))
      throw usageError("use either -d/--device or --in/--out, not both");
    if (!values.device && !(values.in && values.out))
      throw usageError("need --in SRC --out DST, or -d/--device DEV");
    const keyChoices = [
      values["rootfs-key-file"],
      values["rootfs-passphrase"],
      values["rootfs-no-encryption"],
    ].filter(Boolean);
    if (keyChoices.length !== 1) {
      throw usageError("give exactly one of --rootfs-key-file, --rootfs-passphrase, --rootfs-no-encryption");
    }
    if (values["tpm2-enroll"] && values["rootfs-no-encryption"])
      throw usageError("--tpm2-enroll seals the rootfs key, but --rootfs-no-encryption has none");
    if (values["tpm2-tcti"] !== undefined && !values["tpm2-enroll"])
      throw usageError("--tpm2-tcti only goes with --tpm2-enroll");
    const configDir = values["config-dir"] ?? globals.configDir;
    if (!existsSync(`${configDir}/fde.toml`))
      throw usageError(`${configDir}/fde.toml does not exist (pass -c DIR)`);
    const partNum = values["rootfs-part-num"];
    if (partNum !== undefined && !/^\d+$/.test(partNum))
      throw usageError("--rootfs-part-num needs a partition number");
    const { convert } = await import("../convert/index.ts");
    const { checkConfig } = await import("../convert/config.ts");
    const { loadAssets } = await import("../convert/assets.ts");
    const rootfsKey = values["rootfs-key-file"]
      ? new Uint8Array(readFileSync(values["rootfs-key-file"]))
      : values["rootfs-passphrase"] !== undefined
        ? new TextEncoder().encode(values["rootfs-passphrase"])
        : undefined;
    await checkConfig(configDir, rootfsKey !== undefined);
    let tpm2Enroll: { tcti: string; policy: SealPolicy } | undefined;
    if (values["tpm2-enroll"]) {
      const { rootfsTpm2Config } = await import("../convert/config.ts");
      const { resolveTcti } = await import("../tpm/tcti.ts");
      const tpm2 = await rootfsTpm2Config(configDir);
      tpm2Enroll = {
        tcti: values["tpm2-tcti"] ?? resolveTcti(tpm2.tcti),
        policy: { bank: tpm2.pcrBank, pcrs: tpm2.pcrs, pin: tpm2.pin },
      };
    }
    const device = values.device;
    // The key leaves this process only on cryptsetup's stdin; this copy is zeroed however convert ends.
    try {
      await convert({
        input: device ?? values.in!,
        output: device ?? values.out!,
        device: device !== undefined,
        configDir,
        rootfsKey,
        rootPartNum: partNum === undefined ? undefined : Number(partNum),
        bootPartSize,
        uki: values.uki ?? false,
        ukiAppendCmdline: values["uki-append-cmdline"] ?? DEFAULT_UKI_CMDLINE,
        assets: loadAssets(),
        wipeFreedSpace: values["wipe-freed-space"] ?? false,
        tpm2Enroll,
      });
    } finally {
      rootfsKey?.fill(0);
    }
    return 0;
  },
});
