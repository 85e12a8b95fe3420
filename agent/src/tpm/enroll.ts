/**
 * Enrollment with a new key (convert --tpm2-enroll): a random key is sealed to the TPM and added
 * to the volume as a keyslot of its own, with a cryptpilot-tpm2 token naming that keyslot. The
 * key the volume was made with stays in its keyslot as the recovery key, and the sealed key, being
 * random, gets the fast PBKDF2 keyslot (no argon2id run at every boot). Works on a LUKS2 file.
 */
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../command.ts";
import { pbkdfFor, readHeaderJson } from "../disk/luks.ts";
import { FdeError } from "../errors.ts";
import { withTpm } from "./esys.ts";
import { type SealedKey, type SealPolicy, sealKey } from "./seal.ts";
import { storeToken, tokenFromSealed } from "./token.ts";

/** Size of the random key sealed for a volume. */
const KEY_BYTES = 32;

export interface NewSealedKey {
  key: Uint8Array;
  sealed: SealedKey;
}

/** A new random key sealed under POLICY to the TPM at TCTI (its current PCR values). */
export async function sealNewKey(tcti: string, policy: SealPolicy): Promise<NewSealedKey> {
  const key = crypto.getRandomValues(new Uint8Array(KEY_BYTES));
  try {
    return { key, sealed: await withTpm(tcti, (esys) => sealKey(esys, key, policy)) };
  } catch (err) {
    key.fill(0);
    throw err;
  }
}

/**
 * `cryptsetup luksAddKey` with both secrets in pipes, neither in argv nor in a file: the existing
 * key on stdin, the new one through a FIFO in a private directory (cryptsetup opens the new key
 * file by path; Bun's extra stdio descriptors are sockets, which /dev/fd/N cannot open). The FIFO
 * is opened read-write and non-blocking here, so writing never waits for cryptsetup, and
 * --new-keyfile-size lets cryptsetup stop reading without an end of file.
 */
async function addKey(device: string, existing: Uint8Array, added: Uint8Array): Promise<void> {
  const dir = await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), "cryptpilot-addkey-"));
  try {
    const fifo = join(dir, "new-key");
    await run("mkfifo", ["-m", "600", fifo]);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      // A pipe holds 64 KiB: the key fits without a reader.
      writeSync(fd, added);
      await run(
        "cryptsetup",
        [
          "luksAddKey",
          "--batch-mode",
          ...pbkdfFor(added.length, true).args,
          "--key-file=-",
          `--new-keyfile=${fifo}`,
          `--new-keyfile-size=${added.length}`,
          device,
        ],
        { stdin: existing, hint: `the given key must open ${device} to add the TPM-sealed keyslot` },
      );
    } finally {
      closeSync(fd);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Add FRESH's key to DEVICE (authorised by EXISTING) and store its sealed copy as the token.
 * Returns the new keyslot and the token id.
 */
export async function addSealedKeyslot(
  device: string,
  existing: Uint8Array,
  fresh: NewSealedKey,
): Promise<{ keyslot: number; token: number }> {
  const before = await keyslots(device);
  await addKey(device, existing, fresh.key);
  const added = (await keyslots(device)).filter((k) => !before.includes(k));
  if (added.length !== 1) throw new FdeError(`cryptsetup did not add one keyslot to ${device}`);
  const keyslot = added[0]!;
  // Proves the new keyslot takes the sealed key before the token points at it; --key-slot: no KDF
  // run for the (argon2id) keyslot of the recovery passphrase in front.
  await run(
    "cryptsetup",
    ["open", "--test-passphrase", "--key-slot", String(keyslot), "--key-file=-", device],
    {
      stdin: fresh.key,
      hint: `the new keyslot ${keyslot} of ${device} does not take the sealed key`,
    },
  );
  const token = await storeToken(device, tokenFromSealed(fresh.sealed, keyslot));
  return { keyslot, token };
}

/** The keyslot numbers in the LUKS2 header. */
async function keyslots(device: string): Promise<number[]> {
  const meta = (await readHeaderJson(device)) as { keyslots?: Record<string, unknown> };
  return Object.keys(meta.keyslots ?? {}).map(Number);
}
