import { existsSync, readFileSync } from "node:fs";
import { UsageError } from "../errors.ts";
import type { SealPolicy } from "../tpm/seal.ts";
import type { Command } from "./command.ts";
import { parseCommandArgs } from "./index.ts";

const usage = `cryptpilot-fde convert --in SRC --out DST | -d DEV  [options]

Convert a disk image with a Linux root filesystem into the FDE layout: a GPT disk with an ESP,
a /boot partition (or a UKI on the ESP with --uki) and the LVM volume group "cryptpilot" holding
the verity-protected (and optionally LUKS2-encrypted) rootfs. The guest's initrds are rebuilt
with the cryptpilot dracut module and every boot entry gets root=/dev/mapper/rootfs.
Works without device-mapper on the host. Must run as root.

  --in SRC                      source image (raw or qcow2)
  --out DST                     output image (qcow2 when DST ends in .qcow2, else raw);
                                written as DST.partial and renamed when complete
  -d, --device DEV              convert the block device DEV in place instead
  -c, --config-dir DIR          directory with fde.toml (and global.toml) to put in the initrd
  --rootfs-key-file FILE        encrypt the rootfs with the key in FILE (raw bytes)
  --rootfs-passphrase P         encrypt the rootfs with passphrase P (visible in ps; prefer the key file)
  --rootfs-no-encryption        keep the rootfs unencrypted (still dm-verity protected)
  --rootfs-part-num N           root filesystem partition (default: label "root", else largest ext4)
  -b, --boot_part_size SIZE     /boot partition size (default 512M)
  --wipe-freed-space            -d: also zero the space the shrunk root freed (the future
                                delta); without it that space keeps the old bytes, which may
                                include plaintext of the old root, until the delta overwrites
                                them. --in/--out: nothing to do, DST is a new file with no old data
  --uki                         boot a unified kernel image from the ESP instead of GRUB
  --uki-append-cmdline ARGS     extra kernel arguments for the UKI
                                (default "console=tty0 console=ttyS0,115200n8")
  --tpm2-enroll                 with [rootfs.encrypt.tpm2] in fde.toml: seal a new random rootfs
                                key to the TPM under that table's PCR policy (and PIN), add it as
                                a keyslot and store the cryptpilot-tpm2 token in the rootfs LUKS2
                                header; the key from --rootfs-key-file/--rootfs-passphrase stays in
                                its keyslot for recovery. The PCRs are sealed at the TPM's CURRENT
                                values: use the target's own TPM (-d on the target) or its vTPM,
                                and bind PCRs that read the same when the converted disk boots
  --tpm2-tcti TCTI              the TPM for --tpm2-enroll (default: tcti from fde.toml,
                                TPM2TOOLS_TCTI, device:/dev/tpmrm0), e.g. swtpm:host=H,port=P`;

const command: Command = {
  name: ["convert"],
  summary: "Convert a plain disk image into the encrypted, verity-protected FDE layout",
  usage,
  async run(args, globals) {
    const { values } = parseCommandArgs("convert", args, {
      in: { type: "string" },
      out: { type: "string" },
      device: { type: "string", short: "d" },
      "config-dir": { type: "string", short: "c" },
      "rootfs-key-file": { type: "string" },
      "rootfs-passphrase": { type: "string" },
      "rootfs-no-encryption": { type: "boolean" },
      "rootfs-part-num": { type: "string" },
      boot_part_size: { type: "string", short: "b" },
      "boot-part-size": { type: "string" },
      "wipe-freed-space": { type: "boolean" },
      uki: { type: "boolean" },
      "uki-append-cmdline": { type: "string" },
      "tpm2-enroll": { type: "boolean" },
      "tpm2-tcti": { type: "string" },
    });
    if (values.device && (values.in || values.out))
      throw new UsageError("convert: use either -d/--device or --in/--out, not both");
    if (!values.device && !(values.in && values.out))
      throw new UsageError("convert: need --in SRC --out DST, or -d/--device DEV");
    const keyChoices = [
      values["rootfs-key-file"],
      values["rootfs-passphrase"],
      values["rootfs-no-encryption"],
    ].filter(Boolean);
    if (keyChoices.length !== 1) {
      throw new UsageError(
        "convert: give exactly one of --rootfs-key-file, --rootfs-passphrase, --rootfs-no-encryption",
      );
    }
    if (values["tpm2-enroll"] && values["rootfs-no-encryption"])
      throw new UsageError(
        "convert: --tpm2-enroll seals the rootfs key, but --rootfs-no-encryption has none",
      );
    if (values["tpm2-tcti"] !== undefined && !values["tpm2-enroll"])
      throw new UsageError("convert: --tpm2-tcti only goes with --tpm2-enroll");
    const configDir = values["config-dir"] ?? globals.configDir;
    if (!existsSync(`${configDir}/fde.toml`))
      throw new UsageError(`convert: ${configDir}/fde.toml does not exist (pass -c DIR)`);
    const partNum = values["rootfs-part-num"];
    if (partNum !== undefined && !/^\d+$/.test(partNum))
      throw new UsageError("convert: --rootfs-part-num needs a partition number");
    const { convert } = await import("../convert/index.ts");
    const { checkConfig } = await import("../convert/config.ts");
    const { parseSize } = await import("../convert/layout.ts");
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
    await convert({
      input: device ?? values.in!,
      output: device ?? values.out!,
      device: device !== undefined,
      configDir,
      rootfsKey,
      rootPartNum: partNum === undefined ? undefined : Number(partNum),
      bootPartSize: parseSize(values.boot_part_size ?? values["boot-part-size"] ?? "512M"),
      uki: values.uki ?? false,
      ukiAppendCmdline: values["uki-append-cmdline"] ?? "console=tty0 console=ttyS0,115200n8",
      assets: loadAssets(),
      wipeFreedSpace: values["wipe-freed-space"] ?? false,
      tpm2Enroll,
    });
    return 0;
  },
};

export default command;
