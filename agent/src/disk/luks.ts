/**
 * LUKS2 through the cryptsetup CLI. Keys always travel on stdin (`--key-file=-`), never in argv.
 * The subsystem label is cryptpilot's init marker: "cryptpilot-initializing" while a volume is
 * being formatted, "cryptpilot" once it is usable.
 */
import { open as openFile } from "node:fs/promises";
import { run } from "../command.ts";

export const SUBSYSTEM_READY = "cryptpilot";
export const SUBSYSTEM_INITIALIZING = "cryptpilot-initializing";

const LUKS2_MAGIC = [0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]; // "LUKS\xba\xbe"
/** Offset and length of the subsystem field in the LUKS2 binary header (cryptsetup luks2.h). */
const SUBSYSTEM_OFFSET = 208;
const SUBSYSTEM_LENGTH = 48;

export interface LuksFormatOptions {
  /** dm-integrity with hmac(sha256) tags (768-bit volume key: 512 for XTS plus 256 for the HMAC). */
  integrity?: boolean;
  /** Skip the full-device integrity wipe (the caller only reads what it wrote first). */
  integrityNoWipe?: boolean;
  subsystem?: string;
  /**
   * The key is random and lives only in memory (otp): PBKDF2 with the minimum iterations instead
   * of a benchmarked Argon2 (seconds and up to 1 GiB of memory per format and per open).
   */
  randomKey?: boolean;
}

/** Header parse result: undefined = no LUKS2 header at all; "" = LUKS2 without a subsystem. */
export function parseLuks2Subsystem(header: Uint8Array): string | undefined {
  if (header.length < SUBSYSTEM_OFFSET + SUBSYSTEM_LENGTH) return undefined;
  if (!LUKS2_MAGIC.every((b, i) => header[i] === b)) return undefined;
  if (header[6] !== 0 || header[7] !== 2) return undefined; // big-endian version 2
  const field = header.subarray(SUBSYSTEM_OFFSET, SUBSYSTEM_OFFSET + SUBSYSTEM_LENGTH);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

/** Read the subsystem label straight from the primary binary header (no dm, no cryptsetup). */
export async function readSubsystem(device: string): Promise<string | undefined> {
  const fh = await openFile(device, "r");
  try {
    const buf = new Uint8Array(512);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return parseLuks2Subsystem(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}

export function formatArgs(device: string, options: LuksFormatOptions): string[] {
  const args = [
    "luksFormat",
    "--batch-mode",
    "--type",
    "luks2",
    "--cipher",
    "aes-xts-plain64",
    "--sector-size",
    "4096",
    "--key-size",
    // The XTS part only: cryptsetup adds the HMAC key's 256 bits itself when --integrity is given.
    "512",
  ];
  if (options.integrity) {
    args.push("--integrity", "hmac-sha256");
    if (options.integrityNoWipe) args.push("--integrity-no-wipe");
  }
  if (options.subsystem) args.push("--subsystem", options.subsystem);
  if (options.randomKey) args.push("--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000");
  args.push("--key-file=-", device);
  return args;
}

export async function format(
  device: string,
  key: Uint8Array,
  options: LuksFormatOptions = {},
): Promise<void> {
  await run("cryptsetup", formatArgs(device, options), {
    stdin: key,
    hint: `check that ${device} exists, is not in use and is large enough for a LUKS2 header`,
  });
}

/** Open DEVICE as /dev/mapper/NAME. A wrong key fails with cryptsetup's exit code 2. */
export async function open(device: string, name: string, key: Uint8Array): Promise<void> {
  await run("cryptsetup", ["open", "--type", "luks2", "--key-file=-", device, name], {
    stdin: key,
    hint: `the key did not open ${device}, or dm-crypt is missing`,
  });
}

export async function close(name: string): Promise<void> {
  await run("cryptsetup", ["close", name]);
}

export async function setSubsystem(device: string, subsystem: string): Promise<void> {
  await run("cryptsetup", ["config", "--batch-mode", "--subsystem", subsystem, device]);
}

/**
 * Encrypt a plaintext image file in place, offline, in userspace (works without device-mapper).
 * The file must already have `reduceBytes` of spare room at its end; the LUKS2 header goes in front.
 */
export async function encryptOffline(
  file: string,
  key: Uint8Array,
  reduceBytes: number,
  subsystem = SUBSYSTEM_READY,
): Promise<void> {
  await run(
    "cryptsetup",
    [
      "reencrypt",
      "--batch-mode",
      "--encrypt",
      "--type",
      "luks2",
      "--cipher",
      "aes-xts-plain64",
      "--key-size",
      "512",
      "--sector-size",
      "4096",
      "--subsystem",
      subsystem,
      "--reduce-device-size",
      `${reduceBytes / 1024 / 1024}M`,
      "--key-file=-",
      file,
    ],
    { stdin: key },
  );
}
