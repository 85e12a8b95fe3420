/**
 * tpm2: the volume key sealed to this machine's TPM under a PCR policy (optionally with a PIN),
 * kept as a "cryptpilot-tpm2" token in the volume's own LUKS2 header.
 *
 * - Enrolled volumes (rootfs, or any volume after `cryptpilot-fde tpm2 enroll`): read the token
 *   and unseal through a salted, encrypted policy session. Without one, a systemd-tpm2 token
 *   (systemd-cryptenroll --tpm2-pcrs, no PIN) is unsealed the same way.
 * - A volume the boot code is about to format (delta on first boot: no LUKS header, or a
 *   "cryptpilot-initializing" header without a token): generate a random key and seal it to the
 *   current PCRs. After every format the boot code calls afterFormat, which writes the sealed
 *   key into the new header (a re-format wipes the old token).
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
  // A key generated for a fresh volume, returned again until the volume is formatted.
  let fresh: { key: Uint8Array; sealed: SealedKey } | undefined;
  // The sealed object behind the last key handed out: afterFormat writes it into the new header.
  let lastSealed: SealedKey | undefined;
  // The keyslot the last key opens, from its token (undefined for a fresh key: nothing opens yet).
  let lastKeySlot: number | undefined;

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
    lastSealed = fresh.sealed;
    lastKeySlot = undefined;
    return fresh.key.slice();
  }

  async function getKey(): Promise<Uint8Array> {
    if (!existsSync(device)) {
      throw new FdeError(`the volume's device ${device} does not exist`, {
        hint: "the sealed key is read from the volume's LUKS2 header; check the device path",
      });
    }
    const subsystem = await readSubsystem(device);
    // The rootfs is converted with its key on the build host and never formatted at boot.
    const formattable = ctx.volume !== "rootfs";
    if (subsystem === undefined) {
      if (!formattable) throw new FdeError(`${device} is not a LUKS2 volume`);
      return sealFresh();
    }
    const tokens = await findTokens(device);
    const newest = tokens.filter((t) => t.type === TOKEN_TYPE).at(-1);
    const systemd = tokens.filter((t) => t.type === SYSTEMD_TOKEN_TYPE).at(-1);
    if (newest) {
      const sealed = sealedFromToken(newest.token, `${device} token ${newest.id}`);
      const key = await withTpm(tcti, (esys) => unsealKey(esys, sealed, config.pin));
      lastSealed = sealed;
      lastKeySlot = tokenKeySlot(newest.token);
      log.info(
        `  tpm2: unsealed ${TOKEN_TYPE} token ${newest.id} of ${device}${lastKeySlot === undefined ? "" : ` (keyslot ${lastKeySlot})`}`,
      );
      return key;
    }
    if (systemd) {
      // Enrolled with systemd-cryptenroll: its keyslot takes the unsealed secret in base64.
      const sealed = sealedFromSystemdToken(systemd.token, `${device} token ${systemd.id}`);
      const secret = await withTpm(tcti, (esys) => unsealKey(esys, sealed));
      lastKeySlot = tokenKeySlot(systemd.token);
      try {
        return systemdPassphrase(secret);
      } finally {
        secret.fill(0);
      }
    }
    // A first-boot format interrupted before the token was stored: the boot code formats again.
    if (formattable && subsystem === SUBSYSTEM_INITIALIZING) return sealFresh();
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
    keySlot: () => lastKeySlot,
    async afterFormat(formatted: string) {
      if (!lastSealed) return;
      try {
        const id = await storeToken(formatted, tokenFromSealed(lastSealed, FORMAT_KEYSLOT));
        log.info(`tpm2: stored the sealed key of volume ${ctx.volume} as LUKS2 token ${id} of ${formatted}`);
        fresh?.key.fill(0);
        fresh = undefined;
      } catch (err) {
        throw fail(err);
      }
    },
  };
}
