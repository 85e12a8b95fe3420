/**
 * `tpm2 enroll`: seal a volume's existing key to this machine's TPM and store it as a
 * cryptpilot-tpm2 token in the volume's LUKS2 header, for the tpm2 key provider to unseal at
 * boot. Run it on the machine itself (the seal is bound to its TPM and current PCR values).
 */
import { readFileSync } from "node:fs";
import { isatty } from "node:tty";
import { loadConfig, type Tpm2Config } from "../config/index.ts";
import { lvMapperPath } from "../disk/names.ts";
import { FdeError, type UsageError } from "../errors.ts";
import { log } from "../log.ts";
import { withTpm } from "../tpm/esys.ts";
import type { PcrBank } from "../tpm/marshal.ts";
import { sealKey } from "../tpm/seal.ts";
import { resolveTcti } from "../tpm/tcti.ts";
import { keyslotForKey, storeToken, tokenFromSealed } from "../tpm/token.ts";
import { defineCommand } from "./command.ts";

const DESCRIPTION = `Seals the volume's current key (read from stdin or --key-file, byte for byte) to this machine's
TPM under a PCR policy, and stores the sealed object as a "cryptpilot-tpm2" token in the
volume's LUKS2 header (replacing an older one). The key is first checked against the header.
The policy comes from the volume's [<volume>.encrypt.tpm2] table in fde.toml when it has one,
else PCR 7 of the sha256 bank; the options below override it.

Keep another keyslot with a recovery passphrase: a firmware, Secure Boot or bootloader update
changes the PCRs, and then only that passphrase (and a new enroll) opens the volume.

Example: cryptpilot-fde fetch-key --volume rootfs | cryptpilot-fde tpm2 enroll --volume rootfs`;

const BANKS: PcrBank[] = ["sha1", "sha256", "sha384", "sha512"];

function parsePcrs(text: string, usageError: (message: string) => UsageError): number[] {
  const pcrs = text.split(",").map((s) => s.trim());
  if (pcrs.some((p) => !/^\d+$/.test(p) || Number(p) > 23)) {
    throw usageError(`--pcrs must list PCR numbers 0-23 separated by commas, got "${text}"`);
  }
  return pcrs.map(Number);
}

function readSecretFile(file: string, what: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (cause) {
    throw new FdeError(`cannot read the ${what} from ${file}: ${(cause as Error).message}`, { cause });
  }
}

async function readKey(
  file: string | undefined,
  usageError: (message: string) => UsageError,
): Promise<Uint8Array> {
  if (file !== undefined && file !== "-") return readSecretFile(file, "key");
  if (isatty(0)) throw usageError("pipe the volume key into stdin or give --key-file FILE");
  return new Uint8Array(await Bun.stdin.arrayBuffer());
}

/** The volume's tpm2 table from fde.toml, when the config directory has one. */
async function configuredPolicy(
  configDir: string,
  volume: "rootfs" | "delta",
): Promise<Tpm2Config | undefined> {
  const { fde } = await loadConfig(configDir);
  const encrypt = volume === "rootfs" ? fde?.rootfs.encrypt : fde?.delta.encrypt;
  return encrypt?.type === "tpm2" ? encrypt : undefined;
}

export default defineCommand({
  usage: "--volume rootfs|delta [OPTIONS] < KEY",
  description: DESCRIPTION,
  flags: {
    volume: { type: "string", value: "rootfs|delta", help: "which volume" },
    device: {
      type: "string",
      value: "PATH",
      help: "its LUKS2 device or image file (default /dev/mapper/cryptpilot-<volume>)",
    },
    "key-file": { type: "string", value: "FILE", help: "read the key from FILE instead of stdin" },
    pcrs: { type: "string", value: "LIST", help: "PCRs to bind, e.g. 0,2,4,7" },
    "pcr-bank": { type: "string", value: "BANK", help: "sha1, sha256 (default), sha384 or sha512" },
    "pin-file": {
      type: "string",
      value: "FILE",
      help: "also require this PIN (PolicyAuthValue); default: pin from fde.toml",
    },
    tcti: {
      type: "string",
      value: "TCTI",
      help: "TPM to use (default tcti from fde.toml, TPM2TOOLS_TCTI, device:/dev/tpmrm0)",
    },
  },
  async run({ values, globals, usageError }) {
    const volume = values.volume;
    if (volume !== "rootfs" && volume !== "delta") {
      throw usageError("--volume rootfs or --volume delta is required");
    }
    const bank = values["pcr-bank"];
    if (bank !== undefined && !BANKS.includes(bank as PcrBank)) {
      throw usageError(`--pcr-bank must be one of ${BANKS.join(", ")}`);
    }
    const configured = await configuredPolicy(globals.configDir, volume);
    const device = values.device ?? lvMapperPath(volume);
    const pcrs = values.pcrs !== undefined ? parsePcrs(values.pcrs, usageError) : (configured?.pcrs ?? [7]);
    const pcrBank = (bank as PcrBank | undefined) ?? configured?.pcrBank ?? "sha256";
    const pin =
      values["pin-file"] !== undefined
        ? new TextDecoder().decode(readSecretFile(values["pin-file"], "PIN")).replace(/\r?\n$/, "")
        : configured?.pin;
    if (pin === "") throw usageError("the PIN file is empty");
    const tcti = resolveTcti(values.tcti ?? configured?.tcti);

    const key = await readKey(values["key-file"], usageError);
    try {
      if (key.length === 0) throw usageError("the key is empty");
      const keyslot = await keyslotForKey(device, key);
      const sealed = await withTpm(tcti, (esys) => sealKey(esys, key, { bank: pcrBank, pcrs, pin }));
      const id = await storeToken(device, tokenFromSealed(sealed, keyslot));
      log.info(
        `${volume}: sealed the key of keyslot ${keyslot} to PCRs ${pcrBank}:${sealed.pcrs.join(",")}` +
          `${pin === undefined ? "" : " and a PIN"} and stored it as LUKS2 token ${id} of ${device}`,
      );
      return 0;
    } finally {
      key.fill(0);
    }
  },
});
