/**
 * tpm2: the volume key sealed to this machine's TPM under a PCR policy (optionally with a PIN),
 * kept as a "cryptpilot-tpm2" token in the volume's own LUKS2 header.
 *
 * - Enrolled volumes (rootfs, or any volume after `cryptpilot-fde tpm2 enroll`): read the token
 *   and unseal through a salted, encrypted policy session. Without one, a systemd-tpm2 token
 *   (systemd-cryptenroll --tpm2-pcrs, no PIN) is unsealed the same way.
 * - A volume the caller is about to format (ctx.freshKey "allowed": delta on first boot,
 *   `volume init`) that has no LUKS header, or a "cryptpilot-initializing" header without a
 *   token: generate a random key and seal it to the current PCRs. After every format the caller
 *   calls afterFormat, which writes the sealed key into the new header (a re-format wipes the old
 *   token). With freshKey "never" (rootfs, `volume open`, `config check`, `fetch-key`) such a
 *   volume is an error: a key nothing stores would open nothing.
 */
import { existsSync } from "node:fs";
import type { Tpm2Config } from "../config/providers/tpm2.ts";
import { readSubsystem, SUBSYSTEM_INITIALIZING } from "../disk/luks.ts";
import { lvMapperPath } from "../disk/names.ts";
import { FdeError, KeyProviderError } from "../errors.ts";
import { log } from "../log.ts";
import { withTpm } from "../tpm/esys.ts";
import { type SealedKey, sealKey, unsealKey } from "../tpm/seal.ts";
import { resolveTcti } from "../tpm/tcti.ts";
import {
  findTokens,
  SYSTEMD_TOKEN_TYPE,
  sealedFromSystemdToken,
  sealedFromToken,
  storeToken,
  systemdPassphrase,
  TOKEN_TYPE,
  tokenFromSealed,
  tokenKeySlot,
} from "../tpm/token.ts";
import type { KeyProvider, ProviderContext } from "./provider.ts";

/** Size of a key generated for a fresh volume. */
const NEW_KEY_BYTES = 32;
/** luksFormat puts the first key into keyslot 0: the slot a token stored by afterFormat unlocks. */
const FORMAT_KEYSLOT = 0;

export function create(config: Tpm2Config, ctx: ProviderContext): KeyProvider {
  const device = ctx.device ?? lvMapperPath(ctx.volume);
  const policy = { bank: config.pcrBank, pcrs: config.pcrs, pin: config.pin };
  const tcti = resolveTcti(config.tcti);
  const mayFormat = ctx.freshKey === "allowed";
  // A key generated for a fresh volume, returned again until afterFormat stored it.
  let fresh: { key: Uint8Array; sealed: SealedKey } | undefined;
  // The last key handed out: the sealed object afterFormat writes into the new header (none for
  // a systemd token, which afterFormat cannot reuse), and the keyslot it opens (none for a
  // fresh key: nothing opens yet).
  let last: { sealed?: SealedKey; keySlot?: number } = {};

  const fail = (err: unknown): KeyProviderError => {
    if (err instanceof KeyProviderError) return err;
    const message = err instanceof Error ? err.message : String(err);
    return new KeyProviderError("tpm2", `volume ${ctx.volume} (${device}): ${message}`, {
      cause: err,
      hint: err instanceof FdeError ? err.hint : undefined,
    });
  };

  async function sealFresh(): Promise<Uint8Array> {
    if (!fresh) {
      log.info(`tpm2: ${device} is not initialised yet: sealing a new key for volume ${ctx.volume}`);
      const key = crypto.getRandomValues(new Uint8Array(NEW_KEY_BYTES));
      fresh = { key, sealed: await withTpm(tcti, (esys) => sealKey(esys, key, policy)) };
    }
    last = { sealed: fresh.sealed };
    return fresh.key.slice();
  }

  async function getKey(): Promise<Uint8Array> {
    if (!existsSync(device)) {
      throw new FdeError(`the volume's device ${device} does not exist`, {
        hint: "the sealed key is read from the volume's LUKS2 header; check the device path",
      });
    }
    const subsystem = await readSubsystem(device);
    if (subsystem === undefined) {
      if (!mayFormat) throw new FdeError(`${device} is not a LUKS2 volume`);
      return sealFresh();
    }
    const tokens = await findTokens(device);
    const newest = tokens.filter((t) => t.type === TOKEN_TYPE).at(-1);
    const systemd = tokens.filter((t) => t.type === SYSTEMD_TOKEN_TYPE).at(-1);
    if (newest) {
      const sealed = sealedFromToken(newest.token, `${device} token ${newest.id}`);
      const key = await withTpm(tcti, (esys) => unsealKey(esys, sealed, config.pin));
      last = { sealed, keySlot: tokenKeySlot(newest.token) };
      log.info(
        `  tpm2: unsealed ${TOKEN_TYPE} token ${newest.id} of ${device}${last.keySlot === undefined ? "" : ` (keyslot ${last.keySlot})`}`,
      );
      return key;
    }
    if (systemd) {
      // Enrolled with systemd-cryptenroll: its keyslot takes the unsealed secret in base64.
      const sealed = sealedFromSystemdToken(systemd.token, `${device} token ${systemd.id}`);
      const secret = await withTpm(tcti, (esys) => unsealKey(esys, sealed));
      last = { keySlot: tokenKeySlot(systemd.token) };
      try {
        return systemdPassphrase(secret);
      } finally {
        secret.fill(0);
      }
    }
    // A first-boot format interrupted before the token was stored: the boot code formats again.
    if (mayFormat && subsystem === SUBSYSTEM_INITIALIZING) return sealFresh();
    throw new FdeError(`the LUKS2 header has no ${TOKEN_TYPE} (or ${SYSTEMD_TOKEN_TYPE}) token`, {
      hint: `enroll the volume first: cryptpilot-fde tpm2 enroll --volume ${ctx.volume} --device ${device} < key`,
    });
  }

  return {
    name: "tpm2",
    temporary: false,
    describe: () =>
      `tpm2 PCRs ${config.pcrBank}:${config.pcrs.join(",")}${config.pin === undefined ? "" : " + PIN"}, token in ${device}`,
    async getKey() {
      try {
        return await getKey();
      } catch (err) {
        throw fail(err);
      }
    },
    keySlot: () => last.keySlot,
    async afterFormat(formatted: string) {
      if (!mayFormat) {
        // A caller bug, not a host's doing: it formatted a volume it said it never formats.
        throw fail(new FdeError(`afterFormat(${formatted}) on a provider created with freshKey "never"`));
      }
      const sealed = last.sealed;
      if (!sealed) return;
      try {
        const id = await storeToken(formatted, tokenFromSealed(sealed, FORMAT_KEYSLOT));
        log.info(`tpm2: stored the sealed key of volume ${ctx.volume} as LUKS2 token ${id} of ${formatted}`);
        fresh?.key.fill(0);
        fresh = undefined;
      } catch (err) {
        throw fail(err);
      }
    },
  };
}
